"""One record file across days (review18 K-1): each record carries its day (`resume.stamped`, `record_day`: the
agent's t0 and first interval) and a restarted agent reads back only its own day's lines. Before, every line with
an interval below t was today's: yesterday's line of a lost interval supplied its cost, day 2's first start
resumed yesterday's budget and spend, and a failed interval yesterday left today with no allowance. R18's three
rows (/work/notes/r18/budget_across_days.py) on the readers and through `guard.start_budget`; lines without a
stamp are another day's; the counterfactual and the dispatch verdicts are read by day too."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_edge_guard_property import MG, N
from test_guard_lost_record import COSTS, DAY, DT, STATES, lines_of

from peergrid_controller.builder import MgState
from peergrid_edge import interval_plan
from peergrid_edge.guard import start_budget
from peergrid_edge.resume import (
    DAY as STAMP,
)
from peergrid_edge.resume import (
    PLAN_CONFIRMED,
    counterfactual_of,
    record_day,
    resumed_counterfactual,
    stamped,
    verdicts_of,
)
from peergrid_edge.resume_spend import recorded_spend, spend_of

YESTERDAY, TODAY = record_day(1764000000.0, 0), record_day(1764086400.0, 0)
LATER = record_day(1764086400.0, 4)  # a long-lived chain: tomorrow on chain intervals from 4


def of_day(lines: list[str], day: str) -> list[str]:
    """The trader's lines as it writes them on `day` (`MarketAgent._record` -> `stamped`)."""
    return [json.dumps(stamped(json.loads(line), day)) for line in lines]


def today_lost_interval_1() -> list[str]:
    """Today (a new chain, the same interval numbers): another budget, interval 0 cost 5.0 (say a DSO change),
    and a crash between interval 1's close on the chain and its record: no line for interval 1."""
    return of_day(
        [json.dumps(json.loads(lines_of(1)[0]) | {"budget_day": DAY + 7.0, "cost_p2p": 5.0})], TODAY
    )


def read(lines: list[str], t: int, first: int, day: str, traded: Any) -> tuple[Any, str | None]:
    spend = spend_of(lines, t, day)[0]
    return spend.resumed, spend.unknown(first, traded)


def test_yesterdays_line_of_a_lost_interval_supplies_no_cost_today() -> None:
    """R18 row (a): with yesterday's lines in the file the lost interval 1 is still noticed, and the budget is
    today's (5.0 spent) - before, yesterday's interval 1 (-0.6) was resumed as today's (4.4, nothing unknown)."""
    today = today_lost_interval_1()
    traded = lambda k: k in (0, 1)  # noqa: E731 - the chain shows today's MG in 0 and 1
    alone = read(today, 2, 0, TODAY, traded)
    both = read(of_day(lines_of(4), YESTERDAY) + today, 2, 0, TODAY, traded)
    assert (
        both
        == alone
        == ((DAY + 7.0, 5.0), "interval 1 has no recorded cost (the day's budget started at interval 0)")
    )


def test_day_twos_first_start_on_later_intervals_starts_a_fresh_budget(tmp_path: Path) -> None:
    """R18 row (b): a long-lived chain, tomorrow from interval 4, the same file: at day 2's first start nothing of
    yesterday is resumed (before: yesterday's budget_day and its spend, -6.36), so the guard starts today's
    conventional day plus the allowance."""
    records = tmp_path / "market.jsonl"
    records.write_text("\n".join(of_day(lines_of(4), YESTERDAY)) + "\n")
    assert read(records.read_text().splitlines(), 4, 4, LATER, lambda k: False) == (None, None)
    agent = stand_in(records, 1764086400.0, 4, STATES[4])
    budget = start_budget(agent, 4, recorded_spend(records, 4, LATER))
    assert budget.spent == 0.0
    assert budget.day == pytest.approx(interval_plan.cost_to_go(MG, DT, N, 4, STATES[4]) + 3.0)
    # the same day's restart at 4 does resume it (the stamp is the day's, not the run's)
    same = start_budget(stand_in(records, 1764000000.0, 0, STATES[4]), 4, None)
    assert (same.day, same.spent) == (pytest.approx(DAY), pytest.approx(sum(COSTS[:4])))


def test_a_failed_interval_yesterday_leaves_today_its_allowance() -> None:
    """R18 row (c): yesterday's interval 2 failed (no cost): at day 2's first start that is not today's unknown
    (before: "interval 2 has no recorded cost", no allowance all day)."""
    yesterday = lines_of(4)
    yesterday[2] = json.dumps({"interval": 2, "error": "failed; see the log"})
    assert read(of_day(yesterday, YESTERDAY), 4, 4, LATER, lambda k: False) == (None, None)


def test_lines_without_a_stamp_are_another_days() -> None:
    """A line written before the stamp is never resumed: a restart across the upgrade goes by the chain alone
    (the intervals the MG took part in fail closed), and with no part on it starts afresh."""
    old = lines_of(3)
    assert read(old, 3, 0, TODAY, lambda k: False) == (None, None)
    assert read(old, 3, 0, TODAY, lambda k: k == 1)[1] == (
        "interval 1 has no recorded cost (the chain shows this MG took part in it)"
    )
    assert spend_of(old, 3)[0].resumed == (
        DAY,
        sum(COSTS[:3]),
    )  # no day asked for: every line (a test's file)


def test_a_torn_line_is_todays_unless_what_is_legible_names_another_day() -> None:
    """A crash tears the last line written. One whose stamp is legible and another day's charges today nothing;
    one torn before its stamp (or an old one without) may be today's: unknown, as before."""
    today = of_day(lines_of(2), TODAY)
    yesterdays = of_day(lines_of(3), YESTERDAY)[2]
    cut = yesterdays[: yesterdays.index("cost_p2p")]  # interval and day legible
    assert read([*today, cut], 2, 0, TODAY, lambda k: True) == ((DAY, sum(COSTS[:2])), None)
    todays = of_day(lines_of(3), TODAY)[2]
    for torn in (todays[: todays.index("cost_p2p")], todays[:25], lines_of(3)[2][:30]):
        why = read([*today, torn], 3, 0, TODAY, lambda k: True)[1]
        assert why is not None and "(line 3) cannot be read" in why, torn


def stage_line(day: str) -> str:
    """A stage record as `day_stages` writes it last of a day: no interval, its day first."""
    return json.dumps(
        stamped({"uplift": {"gain": 0, "surplus": 0}, "stage_times": {"start": 0, "end": 1}}, day)
    )


def test_yesterdays_torn_stage_line_or_an_unstamped_torn_line_charges_today_nothing() -> None:
    """R19 F4's rows (/work/notes/r19/torn_stage_line.py): a stage record (no interval) torn at yesterday's end,
    and a torn line written before the stamp, were today's torn line on every later day, so each mid-day
    restart failed closed ("... (line 3) cannot be read"); both now read as the file without them."""
    yesterday = of_day(lines_of(3), YESTERDAY)
    today = of_day(lines_of(2), TODAY)
    clean = read([*yesterday, *today], 2, 0, TODAY, lambda k: True)
    assert clean == ((DAY, sum(COSTS[:2])), None)
    stage = stage_line(YESTERDAY)
    assert stage.startswith('{"day": ')
    unstamped = lines_of(3)[1][:30]
    for lines in ([*yesterday, stage[:60], *today], [unstamped, *today], [*lines_of(3), unstamped, *today]):
        assert read(lines, 2, 0, TODAY, lambda k: True) == clean, lines


def test_todays_own_torn_line_is_still_caught() -> None:
    """Today's torn line is the day's where its stamp is legible (an interval or a stage record), or, torn
    before it, where the last whole line before it is today's; today's first record torn before its stamp
    follows yesterday's lines and is not read as today's, but the chain's `traded` names the interval."""
    yesterday = [*of_day(lines_of(3), YESTERDAY), stage_line(YESTERDAY)]
    today = of_day(lines_of(3), TODAY)
    cut = {"stamp legible": today[2][: today[2].index("cost_p2p")], "before it": today[2][:20]}
    for name, torn in (*cut.items(), ("a stage line", stage_line(TODAY)[:40])):
        why = read([*yesterday, *today[:2], torn], 2, 0, TODAY, lambda k: True)[1]
        assert why is not None and "(line 7) cannot be read" in why, name
    why = read([*yesterday, today[0][:10], *today[1:]], 3, 0, TODAY, lambda k: True)[1]
    assert why == "interval 0 has no recorded cost (the chain shows this MG took part in it)"
    assert read([*yesterday, today[0][:10], *today[1:]], 3, 0, TODAY, lambda k: k > 0)[1] is None


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 3), st.floats(0.0, 1.0), st.integers(0, 3), st.floats(0.0, 1.0))
def test_a_torn_line_belongs_to_the_day_of_the_lines_it_follows(
    ys: int, ycut: float, ts: int, tcut: float
) -> None:
    """Any line of yesterday (its stage record last) torn anywhere changes nothing today; any line of today
    torn anywhere after its first is today's unknown, and its first is noticed by the chain where it traded."""
    yesterday = [*of_day(lines_of(3), YESTERDAY), stage_line(YESTERDAY)]
    today = of_day(lines_of(4), TODAY)
    clean = read([*yesterday, *today], 4, 0, TODAY, lambda k: True)
    assert clean == ((DAY, sum(COSTS[:4])), None)
    yesterday[ys] = yesterday[ys][: 1 + int(ycut * (len(yesterday[ys]) - 2))]
    assert read([*yesterday, *today], 4, 0, TODAY, lambda k: True) == clean
    today[ts] = today[ts][: 1 + int(tcut * (len(today[ts]) - 2))]
    assert read([*yesterday, *today], 4, 0, TODAY, lambda k: True)[1] is not None


def test_the_counterfactual_and_the_verdicts_are_read_by_day(tmp_path: Path) -> None:
    """Yesterday's conv_state and plan_confirmed of the same interval numbers are not today's."""
    state = {"soc_kwh": [42.0], "genset_on": [], "genset_kw": [], "genset_intervals_in_state": []}
    yesterday = of_day([json.dumps({"interval": 1, "conv_state": state, PLAN_CONFIRMED: True})], YESTERDAY)
    today = of_day([json.dumps({"interval": 0, "conv_state": state | {"soc_kwh": [7.0]},
                                PLAN_CONFIRMED: False})], TODAY)  # fmt: skip
    lines = yesterday + today
    assert counterfactual_of(lines, 2, MG, TODAY)[0] == (0, MgState((7.0,), (), (), ()))
    # today's first run crashed before its first record: yesterday's interval 1 is no start for today's 2
    assert counterfactual_of(yesterday, 2, MG, TODAY)[0] is None
    assert counterfactual_of(yesterday, 2, MG)[0] == (1, MgState((42.0,), (), (), ()))  # every line: it was
    assert verdicts_of(lines, range(0, 2), TODAY) == ({0: False}, [])
    records = tmp_path / "market.jsonl"
    records.write_text("\n".join(yesterday) + "\n")
    assert resumed_counterfactual(records, MG, DT, N, 2, TODAY) is None  # nothing of today: start afresh


def test_a_record_says_its_interval_first_and_its_day_next() -> None:
    line = json.dumps(stamped({"mg": "mg", "cost_p2p": 1.0, "interval": 3}, TODAY))
    assert line.startswith('{"interval": 3, "day": "1764086400/0", ')
    assert json.loads(line)[STAMP] == TODAY
    assert json.dumps(stamped({"dayahead": {}}, TODAY)).startswith('{"day": "1764086400/0"')


def stand_in(records: Path, t0: float, first: int, state: MgState) -> Any:
    """A trading agent as `guard.start_budget` sees it: strict, allowance 3, its day by t0 and first interval."""
    return SimpleNamespace(
        s=SimpleNamespace(rationality="strict", risk_allowance=3.0, first_interval=first, t0=t0, record_file=records),
        mg=MG, dt=DT, state=state, anonym=SimpleNamespace(public=b"\x01" * 32),
        ledger=SimpleNamespace(state=lambda role: None),
    )  # fmt: skip
