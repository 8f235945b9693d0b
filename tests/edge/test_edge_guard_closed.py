"""Failing closed never gives back what a DSO change cost (review18's K-A nit): where a change the guard did not
steer (the DSO's adjustment, a changed closing) had left the day's budget below the conventional value of the MG's
state at an interval's start (`DayBudget.note_value`: `short`), a failed interval (`fail_closed_after`) leaves the
conventional rest of the day less that shortfall. Before, it set what is left to the conventional rest, giving
the shortfall back. Not `max(spent before, day - rest)`, the review's sketch: the failed interval may have been an
income (a sale), so what was spent before it is no bound - test_edge_guard_failed's real day fails so (mg001 left
83.4 where the conventional rest is 113.3). With nothing short, it is review17 K-A's rule as before."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from test_edge_guard_property import MG, N

from peergrid_controller.builder import MgState
from peergrid_edge import interval_plan
from peergrid_edge.guard import DayBudget, fail_closed_after

DT = 4.0
STATE = MgState.initial(MG)
VALUE = interval_plan.cost_to_go(MG, DT, N, 2, STATE)  # the conventional value at interval 2's start
TO_GO = interval_plan.cost_to_go(MG, DT, N, 3, STATE)  # the conventional rest from interval 3
DAY = 40.0


def failed_at_2(left_at_start: float, spent_in_2: float = 0.0) -> DayBudget:
    """The running agent's budget after its interval 2 failed: `left_at_start` when the guard judged 2 (its
    value noted), `spent_in_2` charged since (the stub of a cost booked before the raise), then the except
    branch's `fail_closed_after`."""
    budget = DayBudget("strict", 3.0, DAY, DAY - left_at_start)
    budget.note_value(VALUE)
    budget.charge(spent_in_2)
    agent = SimpleNamespace(budget=budget, state=STATE, mg=MG, dt=DT)
    fail_closed_after(agent, 2)
    return budget


@pytest.mark.parametrize("short_by", [0.5, 7.25])
def test_a_shortfall_a_dso_change_left_is_not_given_back_by_a_failed_interval(
    short_by: float, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        budget = failed_at_2(VALUE - short_by)
    assert budget.short == pytest.approx(short_by)
    assert budget.left == pytest.approx(TO_GO - short_by) and budget.day == DAY  # before: TO_GO
    assert "at most the conventional rest of the day" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("spent_in_2", [-5.0, 0.0, 5.0])
def test_with_nothing_short_the_conventional_rest_is_left_whatever_the_interval_did(
    spent_in_2: float,
) -> None:
    """Allowance left at 2's start (2.0): none after the failure, the conventional rest from 3 - whether the
    failed interval was charged a cost or an income before it raised (a max with the spend would keep 2's
    income's absence: too little left, trades that pay refused)."""
    budget = failed_at_2(VALUE + 2.0, spent_in_2)
    assert budget.short == 0.0 and budget.left == pytest.approx(TO_GO)


def test_the_shortfall_is_noted_afresh_each_interval() -> None:
    budget = DayBudget("strict", 0.0, DAY, DAY - 10.0)
    budget.note_value(12.5)
    assert budget.short == 2.5
    budget.charge(-4.0)  # savings since: 14 left
    budget.note_value(12.5)
    assert budget.short == 0.0
