"""`peergrid-market simulate` on the chain's settlement rules: --settle, --silent, --meter-error.

The JSON is the same day whichever rule settles it (only the chain's transaction count differs); stderr counts
the trades settled per basis; options the run cannot take are one line and exit 2.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from helpers_ctl import AllocationTape

from peergrid_controller import simulate as simulate_module
from peergrid_controller.cli import main

DAY = [
    "simulate",
    "--synthetic",
    "4",
    "--seed",
    "2",
    "--intervals",
    "48",
    "--no-central",
    "--market",
    "dayahead",
]
INTRADAY = ["--market", "intraday", "--intervals", "30"]  # the last given wins; 8 trades from 06:00 on
# the day-ahead runs here are the one seeded day on venues with other settling options (which act after the
# allocation): its allocation is solved once and its moves played onto each later run's chain, every answer
# checked
TAPE = AllocationTape()


@pytest.fixture(autouse=True)
def taped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulate_module, "allocate", TAPE)


PLAIN: list[tuple[str, str]] = []


def run(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The JSON printed, and the chain's settlements per basis from stderr. DAY as given is run once for the
    module (three tests set their day beside it; the CLI prints the same bytes each run) and parsed anew."""
    if extra or not PLAIN:
        assert main([*DAY, "--json", *extra]) == 0
        out, err = capsys.readouterr()
        if not extra:
            PLAIN.append((out, err))
    else:
        out, err = PLAIN[0]
    (line,) = [line for line in err.splitlines() if "chain settlements by basis" in line]
    counts = {basis: int(n) for basis, n in re.findall(r"(\w+) (\d+)", line.split(": ", 2)[2])}
    return json.loads(out), counts


def trades(doc: dict[str, Any]) -> int:
    return sum(len(interval["trades"]) for interval in doc["intervals"])


def test_an_intraday_day_is_the_same_on_either_rule_and_stderr_says_how_each_trade_settled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    both, by_both = run(capsys, *INTRADAY)
    first, by_first = run(capsys, *INTRADAY, "--settle", "first")
    assert both == first and trades(both) > 0
    assert by_both == {"agreed": trades(both)} and by_first == {"first": trades(both)}


def test_a_day_ahead_day_differs_only_in_the_chains_transaction_count_whatever_the_meters_say(
    capsys: pytest.CaptureFixture[str],
) -> None:
    both, by_both = run(capsys)
    first, by_first = run(capsys, "--settle", "first")
    quiet, by_quiet = run(capsys, "--silent", "mg002")
    skewed, by_skew = run(capsys, "--meter-error", "mg002:-3")
    n = trades(both)
    assert n > 0 and by_both == {"agreed": n} and by_first == {"first": n}
    assert by_quiet.get("lapsed", 0) > 0 and sum(by_quiet.values()) == n
    assert by_skew.get("dso", 0) > 0 and sum(by_skew.values()) == n
    chain = {name: doc["total"].pop("chain") for name, doc in (("both", both), ("first", first))}
    for doc in (quiet, skewed):
        doc["total"].pop("chain")
    assert both == first == quiet == skewed
    cleared = chain["both"]["forward_trades_cleared"]
    # both: each trade's seller states too, and the DSO prices the 4 MGs' cover (the chain computes the
    # compensation; none on this day without faults, so no `pay` on either)
    assert cleared == n and chain["both"]["transactions"] == chain["first"]["transactions"] + n + 4


def test_sealed_statements_settle_the_same_day_with_two_more_transactions_a_trade(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--sealed: each party commits, then reveals (genesis sealed_statements); the day and how each trade
    settled are the same, the chain carries one commitment more per statement."""
    both, by_both = run(capsys)
    sealed, by_sealed = run(capsys, "--sealed")
    n = trades(both)
    assert n > 0 and by_sealed == by_both == {"agreed": n}
    chain = {name: doc["total"].pop("chain") for name, doc in (("both", both), ("sealed", sealed))}
    assert both == sealed
    assert chain["sealed"]["transactions"] == chain["both"]["transactions"] + 2 * n


def test_both_parties_silent_is_one_line_naming_the_trade_and_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc, _ = run(capsys)
    trade = next(t for interval in doc["intervals"] for t in interval["trades"])
    assert main([*DAY, "--silent", trade["seller"], "--silent", trade["buyer"]]) == 3
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"{trade['seller']} to {trade['buyer']}): neither party states" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--silent", "mg9"], "--silent mg9: no microgrid named 'mg9'"),
        (["--meter-error", "mg9:3"], "no microgrid named 'mg9'"),
        (["--meter-error", "mg001:x"], "'x' is not a whole number of Wh"),
        (["--meter-error", "mg001"], "'' is not a whole number of Wh"),
        (["--meter-error", "mg001:1", "--meter-error", "mg001:2"], "mg001's meter is given twice"),
        (["--venue", "memory", "--settle", "first"], "need the chain venue"),
        (["--venue", "memory", "--sealed"], "need the chain venue"),
        (
            ["--settle", "first", "--sealed"],
            "--sealed: the parties seal their statements only with --settle both",
        ),
    ],
)
def test_options_the_run_cannot_take_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main([*DAY, *extra]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message in err
