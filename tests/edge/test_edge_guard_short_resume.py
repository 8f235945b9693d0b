"""A failed interval's shortfall survives a restart (session 15's closing note, K5/K6). Where a change the guard
did not steer (the DSO's) had left the day's budget below the conventional value of the MG's state
(`DayBudget.note_value`: `short`), a failed interval leaves the conventional rest of the day less that shortfall
(`fail_closed_after`, 872cfdd). The shortfall was not in the records, so a restart over them resumed with the
conventional rest of the day: the shortfall given back. Now the failed interval's record carries it
(`resume_spend.BUDGET_SHORT`, written by `agent_day.intervals` through `guard.failed_record`) and the restart reads it
back (`resume_spend.spend_of` -> `RecordedSpend.short` -> `guard.day_budget`); a failed record without it (no shortfall,
or written before the key) reads as before.

Through `MarketAgent.run` (test_edge_guard_failed's day: a real single-authority chain, its intervals stubbed),
its real record file and the real resume path (`resume_spend.recorded_spend` -> `guard.start_budget`); the readers on
lines by hand for the older, torn and damaged records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_edge_guard_failed import CHARGE, restart_at, run_day

from peergrid_edge import interval_plan
from peergrid_edge.resume import record_day, stamped
from peergrid_edge.resume_spend import BUDGET_SHORT, spend_of
from peergrid_edge.trader import MarketAgent

DSO_COST = 60.0  # what a DSO adjustment cost the MG in interval 5 beyond what the guard chose
TODAY, YESTERDAY = record_day(1764086400.0, 5), record_day(1764000000.0, 5)


def test_a_restart_after_a_failed_interval_keeps_the_shortfall_a_dso_change_left(tmp_path: Path) -> None:
    """Interval 5 is charged a DSO change beyond the allowance; interval 6's start notes the conventional value of
    the MG's state (as `run_interval` does from the guard's fallback) and raises. The running agent goes on into
    interval 7 with the conventional rest of the day less the shortfall; a restart at 7 over the same records,
    its batteries where the agent left them, starts with that same budget (before: the conventional rest, the
    shortfall given back)."""
    seen: dict[str, Any] = {}

    async def dso_change(agent: MarketAgent, t: int) -> None:
        budget = agent.budget or agent._start_budget(t, agent.resumed)  # as run_interval starts it
        budget.charge(DSO_COST)

    async def fails_after_noting(agent: MarketAgent, t: int) -> None:
        assert agent.budget is not None and agent.state is not None
        seen["value"] = interval_plan.cost_to_go(agent.mg, agent.dt, agent.mg.intervals, t, agent.state)
        seen["left"] = agent.budget.left
        agent.budget.note_value(seen["value"])
        raise RuntimeError("the DSO chain went away after the guard chose")

    agent, lines = run_day(tmp_path, {5: dso_change, 6: fails_after_noting})
    short = seen["value"] - seen["left"]
    assert short > 1.0  # the DSO's change left the budget below the state's conventional value
    assert lines[1] == {"interval": 6, "day": agent.day, "error": "failed; see the log", BUDGET_SHORT: short}
    state = agent.state
    assert state is not None
    to_go = interval_plan.cost_to_go(agent.mg, agent.dt, agent.mg.intervals, 7, state)
    running = lines[2]["budget_left"] + CHARGE  # what the running agent had left at interval 7's start
    assert running == pytest.approx(to_go - short)
    restarted = restart_at(agent, 7, state)
    assert restarted.left == pytest.approx(running) and restarted.short == pytest.approx(short)
    assert restarted.day == pytest.approx(lines[0]["budget_day"])


def lines_of(records: list[dict[str, Any]], day: str = TODAY) -> list[str]:
    return [json.dumps(stamped(r, day)) for r in records]


BEFORE = [
    {"interval": 5, "cost_p2p": 70.0, "budget_day": 120.0, "budget_left": 50.0},
    {"interval": 6, "error": "failed; see the log", BUDGET_SHORT: 12.5},
]


def test_an_older_failed_record_without_the_shortfall_reads_as_before() -> None:
    """A failed record written before the key (or with nothing short): no shortfall, review17 K-A's rule as it
    was; the failed interval still makes the spend unknown."""
    spend, errors = spend_of(lines_of([BEFORE[0], {"interval": 6, "error": "failed; see the log"}]), 7, TODAY)
    assert spend.short == 0.0 and errors == []
    assert spend.unknown(5, lambda k: False) is not None


def test_the_latest_failed_interval_of_the_day_before_t_says_the_shortfall() -> None:
    records = [*BEFORE, {"interval": 7, "cost_p2p": 1.0, "budget_day": 120.0},
               {"interval": 8, "error": "failed; see the log", BUDGET_SHORT: 3.0}]  # fmt: skip
    assert spend_of(lines_of(records), 7, TODAY)[0].short == 12.5
    assert spend_of(lines_of(records), 9, TODAY)[0].short == 3.0
    later_without = [*records, {"interval": 9, "error": "failed; see the log"}]
    assert spend_of(lines_of(later_without), 10, TODAY)[0].short == 0.0  # 9 failed with nothing short
    yesterdays = lines_of(BEFORE, YESTERDAY) + lines_of([{"interval": 5, "cost_p2p": 1.0, "budget_day": 9.0}])
    assert spend_of(yesterdays, 7, TODAY)[0].short == 0.0  # another day's shortfall is never today's


def test_a_torn_failed_record_goes_on_without_its_shortfall_and_is_named() -> None:
    """The crash tore the failed record inside its shortfall: what it held is unknown (a torn number may read
    smaller), so none is read; the line is the day's torn one, which fails closed as before."""
    first, failed = lines_of(BEFORE)
    torn = failed[: failed.index(BUDGET_SHORT) + len(BUDGET_SHORT) + 4]
    spend, errors = spend_of([first, torn], 7, TODAY)
    assert spend.short == 0.0 and spend.torn is not None and "interval 6's record (line 2)" in spend.torn
    assert len(errors) == 1


@pytest.mark.parametrize("bad", ["12.5", -1.0, None, True])
def test_a_shortfall_that_is_not_one_is_refused_by_name(bad: Any) -> None:
    spend, errors = spend_of(lines_of([BEFORE[0], {**BEFORE[1], BUDGET_SHORT: bad}]), 7, TODAY)
    assert spend.short == 0.0 and spend.torn is not None
    (error,) = errors
    assert f"interval 6's {BUDGET_SHORT} is not a shortfall" in error


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.one_of(st.none(), st.floats(0, 1e6)), st.booleans()), max_size=12
    ),
    st.integers(0, 13),
)
def test_the_shortfall_read_back_is_the_last_failed_interval_of_the_days_before_t(
    failures: list[tuple[int, float | None, bool]], t: int
) -> None:
    """Failed records (interval, shortfall or none, today's or yesterday's) in any order, with a budget line
    first: the shortfall read back is the latest of today's failed intervals before t (a later line of the same
    interval counting), 0 where that one names none or there is none."""
    records = [(TODAY, {"interval": 0, "cost_p2p": 0.0, "budget_day": 10.0})]
    for k, short, today in failures:
        doc: dict[str, Any] = {"interval": k, "error": "failed; see the log"}
        if short:
            doc[BUDGET_SHORT] = short
        records.append((TODAY if today else YESTERDAY, doc))
    lines = [json.dumps(stamped(doc, day)) for day, doc in records]
    todays = [(k, s or 0.0) for k, s, today in failures if today and k < t]
    latest = max((k for k, _ in todays), default=None)
    expected = [s for k, s in todays if k == latest][-1] if todays else 0.0
    assert spend_of(lines, t, TODAY)[0].short == expected
