"""peergrid-market: the JSON shape, byte-identical reruns, scenario validation and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from peergrid_controller.bargaining import Venue
from peergrid_controller.chain_venue import SealError
from peergrid_controller.cli import main
from peergrid_controller.market import Bid, Offer, Rejected, Trade, Verdict
from peergrid_controller.scenario import ScenarioError, load_scenario
from peergrid_controller.venues import VENUES, memory_venue

ROOT = Path(__file__).resolve().parents[2]
IEEE33 = ROOT / "firmware-sim/scenarios/ieee33.yaml"
TOTAL_KEYS = [
    "p2p_welfare",
    "central_welfare",
    "conventional_welfare",
    "rounds_max",
    "converged",
    "mg_cost_p2p",
    "mg_cost_conventional",
]


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["simulate", *args, "--json"]) == 0
    return capsys.readouterr().out


def test_json_shape_and_same_seed_gives_identical_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    first = run_json(capsys, "--synthetic", "4", "--seed", "3", "--intervals", "6")
    second = run_json(capsys, "--synthetic", "4", "--seed", "3", "--intervals", "6")
    assert first == second
    doc = json.loads(first)
    assert list(doc) == ["intervals", "total"]
    assert list(doc["total"]) == TOTAL_KEYS
    assert len(doc["intervals"]) == 6
    for interval in doc["intervals"]:
        assert list(interval) == ["interval", *TOTAL_KEYS, "trades"]
        for trade in interval["trades"]:
            assert list(trade) == ["seller", "buyer", "quantity_kwh", "price"]
    assert doc["total"]["central_welfare"] >= doc["total"]["p2p_welfare"] - 1e-6
    assert doc["total"]["p2p_welfare"] >= doc["total"]["conventional_welfare"] - 1e-6


def test_other_seed_gives_other_result(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_json(capsys, "--synthetic", "3", "--seed", "1", "--intervals", "2") != run_json(
        capsys, "--synthetic", "3", "--seed", "2", "--intervals", "2"
    )


@pytest.mark.skipif(not IEEE33.exists(), reason="firmware-sim's scenario not present")
def test_firmware_sim_scenario_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    scenario = load_scenario(IEEE33)
    assert len(scenario.microgrids) >= 6
    doc = json.loads(run_json(capsys, "--scenario", str(IEEE33), "--intervals", "4"))
    assert set(doc["total"]["mg_cost_p2p"]) == {mg.name for mg in scenario.microgrids}


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def two_mgs() -> dict[str, object]:
    return yaml.safe_load((ROOT / "controller/scenarios/two-mg.yaml").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_unknown_keys_are_ignored_but_used_keys_are_strict(tmp_path: Path) -> None:
    doc = two_mgs()
    doc["relays"] = [{"name": "sw1", "anything": True}]
    doc["microgrids"][0]["bus"] = 18  # type: ignore[index]
    assert len(load_scenario(write(tmp_path, doc)).microgrids) == 2
    doc["microgrids"][0]["devices"][0]["params"]["rating_w"] = "lots"  # type: ignore[index]
    with pytest.raises(ScenarioError, match=r"devices\.0\.params\.rating_w"):
        load_scenario(write(tmp_path, doc))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["microgrids"][0].__setitem__("profile", "cloudy"), "no profile named 'cloudy'"),
        (lambda d: d["microgrids"][1].__setitem__("name", "seller"), "names must be unique"),
        (lambda d: d["profiles"]["flat"].__setitem__("load", [[0, 1.0], [12, 1.0]]), "covering 0..24"),
        (lambda d: d["market"]["mg_rules"].__setitem__("ghost", {}), "unknown microgrid 'ghost'"),
        (lambda d: d["market"].__setitem__("feed_in", -1), "feed_in"),
    ],
)
def test_bad_scenarios_name_the_key(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = two_mgs()
    mutate(doc)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(write(tmp_path, doc))


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", str(tmp_path / "missing.yaml")]) == 2
    assert "scenario error" in capsys.readouterr().err
    doc = two_mgs()
    doc["market"]["retail"] = [[0, 0.02], [24, 0.02]]  # type: ignore[index]  # feed-in 0.05 above retail
    assert main(["simulate", "--scenario", str(write(tmp_path, doc)), "--intervals", "2"]) == 3
    err = capsys.readouterr().err
    assert "unbounded" in err and "feed-in price" in err
    assert main(["simulate", "--synthetic", "3", "--intervals", "0"]) == 2


def test_rationality_modes_and_no_banner(capfd: pytest.CaptureFixture[str]) -> None:
    two = str(ROOT / "controller" / "scenarios" / "two-mg.yaml")
    for mode in ("strict", "trades", "off"):
        assert main(["simulate", "--scenario", two, "--intervals", "2", "--rationality", mode, "--json"]) == 0
        out, err = capfd.readouterr()
        assert json.loads(out)["total"]["converged"] is True
        assert "HiGHS" not in out and "HiGHS" not in err  # the solver's banner never reaches the terminal
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--scenario", two, "--rationality", "maybe"])
    assert exit_info.value.code == 2


def test_a_fresh_process_prints_no_highs_banner() -> None:
    """HiGHS prints its banner when a process builds its first solver unless output is off first."""
    import subprocess
    import sys

    code = "from peergrid_controller.lp import new_highs; new_highs().run()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout == "" and "HiGHS" not in done.stderr


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


def test_a_single_microgrid_gets_one_line_and_exit_2_in_the_day_ahead_market(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = two_mgs()
    doc["microgrids"] = doc["microgrids"][:1]  # type: ignore[index]
    del doc["market"]["mg_rules"]["buyer"]  # type: ignore[index]
    path = str(write(tmp_path, doc))
    args = ["simulate", "--scenario", path, "--intervals", "2", "--no-central", "--json"]
    assert main(args) == 0  # intraday: one MG simply trades nothing
    assert json.loads(capsys.readouterr().out)["total"]["converged"] is True
    assert main([*args, "--market", "dayahead"]) == 2
    assert "day-ahead market: the day-ahead stage needs at least two microgrids" in one_line_error(capsys)


class Refusing:
    """The market contract in memory, refusing one kind of move: what the CLI must report, not crash on."""

    def __init__(self, inner: Venue, refuse: str) -> None:
        self.inner, self.refuse = inner, refuse

    def post_offer(self, offer: Offer) -> Verdict:
        return self.inner.post_offer(offer)

    def post_bid(self, bid: Bid) -> Verdict:
        return Rejected("bids closed") if self.refuse == "bid" else self.inner.post_bid(bid)

    def close_round(self) -> list[Trade]:
        return self.inner.close_round()

    def finish(self, interval: int) -> list[Trade]:
        return self.inner.finish(interval)

    def settle(self, trade: Trade, delivered_kwh: float) -> Verdict:
        if self.refuse == "seal":  # what ChainVenue raises when its block left a transaction out
            raise SealError("chain: sealing left out 1 transactions, the first settle: time-out-of-bounds")
        return (
            Rejected("ledger frozen") if self.refuse == "settle" else self.inner.settle(trade, delivered_kwh)
        )

    def flush(self) -> None:
        self.inner.flush()


@pytest.mark.parametrize(
    ("market", "refuse", "message"),
    [
        ("dayahead", "bid", "the market contract refused: interval 0: bid of buyer refused: "),
        ("dayahead", "settle", "the market contract refused: interval 0: settlement refused: "),
        ("intraday", "settle", "the market contract refused: interval 0: settlement refused: "),
        ("dayahead", "seal", "the MGMC chain did not seal a move: chain: sealing left out 1 transactions"),
    ],
)
def test_a_refused_forward_move_or_settlement_gets_one_line_and_exit_3(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    market: str,
    refuse: str,
    message: str,
) -> None:
    doc = two_mgs()
    del doc["market"]["mg_rules"]  # type: ignore[index]  # without the owners' rules day-ahead trades too
    path = str(write(tmp_path, doc))
    args = ["simulate", "--scenario", path, "--intervals", "2", "--no-central", "--venue", "memory"]
    args += ["--market", market]
    monkeypatch.setitem(VENUES, "memory", lambda s: Refusing(memory_venue(s), "nothing"))
    assert main([*args, "--json"]) == 0  # the same run with nothing refused: trades every interval
    assert all(interval["trades"] for interval in json.loads(capsys.readouterr().out)["intervals"])
    monkeypatch.setitem(VENUES, "memory", lambda s: Refusing(memory_venue(s), refuse))
    assert main(args) == 3
    assert message in one_line_error(capsys)


def test_delivery_faults_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    day = ["--synthetic", "8", "--seed", "0", "--intervals", "12", "--market", "dayahead", "--no-central"]
    doc = json.loads(run_json(capsys, *day, "--fault", "mg003:0.5:3-6"))["total"]["dayahead"]["delivery"]
    assert doc["faults"] == ["mg003:0.5:3,4,5,6"]
    assert doc["shortfall_kwh"]["mg003"] > 0 and sum(doc["covered_kwh"].values()) > 0
    first = run_json(capsys, *day, "--random-faults", "2", "--fault-seed", "1")
    assert first == run_json(capsys, *day, "--random-faults", "2", "--fault-seed", "1")  # seeded
    assert len(json.loads(first)["total"]["dayahead"]["delivery"]["faults"]) == 2
    assert main(["simulate", *day, "--fault", "mg003:0.5:2"]) == 0
    assert "delivery faults mg003:0.5:2:" in capsys.readouterr().err
    for bad, message in (
        ("mg042:0.5", "no microgrid named 'mg042'"),
        ("mg003:1.01", "fraction 1.01 is outside [0, 1]"),
        ("mg003:0.5:12", "interval 12 is outside 0..11"),
        ("mg003", "expected MG:FRACTION[:INTERVALS]"),
    ):
        assert main(["simulate", *day, "--fault", bad]) == 2
        assert message in one_line_error(capsys)
    assert main(["simulate", "--synthetic", "3", "--intervals", "2", "--fault", "mg001:0.5"]) == 2
    assert "day-ahead market's forward trades only" in one_line_error(capsys)


def test_random_faults_skip_the_mgs_given_explicitly_and_the_json_shows_what_was_delivered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # review5 F7: --random-faults drew among all trading MGs, so with as many as there are it always drew
    # mg003 again and the day, once solved, ended in "mg003's interval 3 is given twice" (exit 2)
    day = ["--synthetic", "8", "--seed", "0", "--intervals", "12", "--market", "dayahead", "--no-central"]
    doc = json.loads(run_json(capsys, *day, "--fault", "mg003:0.5:3-6", "--random-faults", "8"))
    faults = doc["total"]["dayahead"]["delivery"]["faults"]
    assert faults[0] == "mg003:0.5:3,4,5,6" and len(faults) > 1
    named = [fault.split(":")[0] for fault in faults]
    assert len(named) == len(set(named))  # mg003 once, the random ones among the others
    # each trade says what was agreed and what was delivered (the settlement's quantity)
    trades = [tr for interval in doc["intervals"] for tr in interval["trades"]]
    assert trades and all(0 <= tr["delivered_kwh"] <= tr["quantity_kwh"] for tr in trades)
    short = [tr for tr in doc["intervals"][4]["trades"] if "mg003" in (tr["seller"], tr["buyer"])]
    assert short and all(tr["delivered_kwh"] < tr["quantity_kwh"] for tr in short)
    clean = json.loads(run_json(capsys, *day))["intervals"]
    assert all(tr["delivered_kwh"] == tr["quantity_kwh"] for i in clean for tr in i["trades"])
    intraday = json.loads(run_json(capsys, "--synthetic", "3", "--intervals", "2", "--no-central"))
    assert all("delivered_kwh" not in tr for i in intraday["intervals"] for tr in i["trades"])
