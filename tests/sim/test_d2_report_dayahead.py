"""The report of a `--dayahead` lab stopped by Ctrl-C says what happened (D2, U3 run 2): its 300 forward trades
were titled 'Trades' as if bargained, an empty 'Prices per bargaining round' plot was drawn (every interval
traded forward, rounds 0), `quiesced: False` after the Ctrl-C read as a failed check, and the re-bargaining
table said nothing of an interval the MGMCs could only re-plan (forward-traded: the contract refuses to reopen
it). Now each trade says where it was agreed, a line stands in for the empty plot, the quiesce is 'not checked'
(None in report.json, `not_checked` saying why), and each iteration says how the MGMCs answered."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sim.test_u2_report_stopped_early import _bed, optimum  # noqa: F401 (a fixture)

from peergrid_sim import report

SESSION = "759d6a13798a085e/dayahead/1796633710/36"
FORWARD = "forward-traded by exchange session 'day-1'"


def _forward_day(tmp_path: Path) -> Any:
    """mg1's records of 36 and 37, both traded forward (no rounds), and the DSO's record of 36 re-planned."""
    bed = _bed(tmp_path, [], planned=60)
    trade = {"seller": "aa" * 32, "buyer": "bb" * 32, "price": 0.22, "quantity_kwh": 55.0}
    docs = [{"interval": t, "trades": [{**trade, "id": f"{t:064x}"}], "rounds": [], "forward": SESSION,
             "cost_p2p": 1.0, "cost_conventional": 2.0, "p2p_money": 0.0} for t in (36, 37)]  # fmt: skip
    (tmp_path / "records" / "mgmc-mg1.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    contract = {"mg": "mg4", "iteration": 1, "min_injection_w": 100_000, "max_injection_w": None}
    rounds = [{"iteration": 1, "reopened": None, "not_reopened": FORWARD, "answer": "re-planned, forward trades kept",
               "missing": [], "secure": False}]  # fmt: skip
    dso = {"interval": 36, "adjustments": [contract], "rebargain": rounds, "secure": False, "unmet": "bus 33"}
    (tmp_path / "records" / "dso.jsonl").write_text(json.dumps(dso) + "\n")
    return bed


def _text(page: str) -> str:
    return re.sub(r" :", ":", re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))  # '<b>k</b>: v' as 'k: v'


def test_a_forward_traded_day_stopped_by_ctrl_c_says_so(tmp_path: Path, optimum: Any) -> None:  # noqa: F811
    page = _text(report.write_report(_forward_day(tmp_path), tmp_path / "out", stopped="SIGINT").read_text())
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [tr["forward"] for tr in doc["trades"]] == [SESSION, SESSION]
    assert "Trades: 2 forward on the day-ahead exchange, 0 bargained intraday" in page
    assert f"forward, day-ahead session {SESSION}" in page
    assert (
        "Prices per bargaining round No bargaining round: every interval the run traded (2) was traded forward"
        in page
    )  # before: an empty plot
    assert doc["checks"]["quiesced"] is None  # before: False, a failed check
    said = "not checked: the lab was stopped by the user (Ctrl-C) before its coordinated halt"
    assert doc["not_checked"]["quiesced"].startswith(said) and f"quiesced: {said}" in page
    assert "36 1 mg4 ≥ 100.0 kW re-planned, forward trades kept - False bus 33" in page


def test_a_lab_that_halted_is_checked_and_an_intraday_trade_says_so(tmp_path: Path, optimum: Any) -> None:  # noqa: F811
    bed = _forward_day(tmp_path)
    (tmp_path / "records" / "quiesce.json").write_text(json.dumps({"ok": False}))
    lines = (tmp_path / "records" / "mgmc-mg1.jsonl").read_text().splitlines()
    intraday = {
        **json.loads(lines[1]),
        "forward": None,
        "rounds": [{"round": 1, "prices": {"aaaaaaaa": 0.2}}],
    }
    (tmp_path / "records" / "mgmc-mg1.jsonl").write_text(lines[0] + "\n" + json.dumps(intraday) + "\n")
    page = _text(report.write_report(bed, tmp_path / "out").read_text())
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["checks"]["quiesced"] is False and doc["not_checked"] == {} and "quiesced: False" in page
    assert (
        "Trades: 1 forward on the day-ahead exchange, 1 bargained intraday" in page and " intraday " in page
    )
    assert "No bargaining round" not in page
