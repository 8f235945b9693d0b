"""A report written after the lab was stopped early (Ctrl-C, --duration): it covers the intervals the MGMCs
traded, not the run's plan. Before, a default lab stopped after 11 of its 60 intervals reported 'intervals 36..95'
and a centralised optimum over all 60 (cost 1,918 against P2P's 259 and the conventional market's 410 over the
11), and said the optimum gained nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_sim import report
from peergrid_sim.scenario import load_scenario

LAB = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def _record(interval: int) -> dict[str, Any]:
    """An MGMC's interval record with what the report's costs read."""
    return {"interval": interval, "trades": [], "rounds": [], "cost_p2p": 1.0, "cost_conventional": 2.0,
            "p2p_money": 0.0}  # fmt: skip


def _bed(tmp_path: Path, recorded: list[int], planned: int) -> Any:
    records = tmp_path / "records"
    records.mkdir()
    lines = "".join(json.dumps(_record(t)) + "\n" for t in recorded)
    (records / "mgmc-mg1.jsonl").write_text(lines, encoding="utf-8")
    loop = SimpleNamespace(first_interval=36, intervals=planned, interval_s=6.0, timing=None)
    return SimpleNamespace(workdir=tmp_path, scenario_path=LAB, scenario=load_scenario(LAB), loop=loop)


@pytest.fixture
def optimum(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The centralised optimum's windows asked for (stood in for: its LP is not this test's), and no stores."""
    asked: list[tuple[int, int]] = []

    def central(_path: Path, first: int, count: int) -> float:
        asked.append((first, count))
        return -1.0 * count

    monkeypatch.setattr(report, "central_welfare", central)
    monkeypatch.setattr(
        report, "ledger_figures", lambda paths: ({}, {"settled": 0, "verified": 0, "failed": []})
    )
    monkeypatch.setattr(report, "verify_stores", lambda paths: {})
    return asked


def test_a_lab_stopped_after_three_of_sixty_intervals_reports_those_three(
    tmp_path: Path, optimum: list[tuple[int, int]]
) -> None:
    page = report.write_report(_bed(tmp_path, [36, 37, 38], planned=60), tmp_path / "out").read_text()
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["intervals"] == [36, 37, 38]
    assert sorted(doc["prices_per_round"]) == ["36", "37", "38"]
    assert optimum == [(36, 3)]  # the same window as the costs: 3 x 1.0 P2P, 3 x 2.0 conventional
    assert doc["welfare"] == pytest.approx(
        {"p2p": -3.0, "conventional": -6.0, "central": -3.0, "p2p_over_central": 1.0, "share_of_gain": 1.0}
    )
    assert "intervals 36..38 " in re.sub(r"\s+", " ", page)


def test_a_lab_stopped_before_its_first_interval_says_none_was_traded(
    tmp_path: Path, optimum: list[tuple[int, int]]
) -> None:
    page = report.write_report(_bed(tmp_path, [], planned=60), tmp_path / "out").read_text()
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["intervals"] == [] and doc["welfare"]["central"] is None and optimum == []
    assert "no interval traded" in page


def test_a_lab_stopped_mid_interval_reports_up_to_the_last_interval_every_mgmc_recorded(
    tmp_path: Path, optimum: list[tuple[int, int]]
) -> None:
    """R39-1: mg1 recorded 36..38, mg2 (its buyer, writing after it) only 36..37 when the lab stopped. Over 36..38
    the optimum covered both MGs and the costs lacked mg2's 38: P2P read as beating the optimum (share 1.25)."""
    bed = _bed(tmp_path, [36, 37, 38], planned=60)
    (tmp_path / "records" / "mgmc-mg2.jsonl").write_text(
        "".join(json.dumps(_record(t)) + "\n" for t in (36, 37)), encoding="utf-8"
    )
    report.write_report(bed, tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["intervals"] == [36, 37] and optimum == [(36, 2)]
    # 2 MGs x 2 intervals x 1.0: mg1's cost of 38 is left out too
    assert doc["welfare"]["p2p"] == pytest.approx(-4.0)
    assert doc["welfare"]["conventional"] == pytest.approx(-8.0)
