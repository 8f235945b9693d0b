"""E10's small truths in the edge. The guard's word on a budget that lost what the day cost is a WARNING only
where the budget steers the dispatch (strict); with the guard off (U6 drill 3: a restart in a lab run with
`rationality: off` warned "the guard resumes with no allowance left") or per trade it is information, the
budget itself the same. The first interval of t's day is one function, `interval_plan.day_start`, beside
`day_end`; the record stamp's first interval is read back beside its writer (`resume.record_day_first`)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_edge_guard_property import MG, N
from test_trader import traded_chain

from peergrid_controller.builder import MgState
from peergrid_edge import day_summary, interval_plan
from peergrid_edge.guard import DayBudget, fail_closed_after, start_budget
from peergrid_edge.resume import record_day, record_day_first
from peergrid_edge.resume_spend import recorded_spend
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.keys import Keypair

DT = 4.0
STATE = MgState.initial(MG)
TRADER = "peergrid.edge.trader"


@pytest.fixture(scope="module")
def chain() -> tuple[LocalChain, Keypair]:
    return traded_chain(0)  # its buyer took part in interval 0


def restarted_at_1(path: Path, mode: str, chain: LocalChain, me: Keypair) -> DayBudget:
    """A restarted agent's budget at interval 1 in `mode`, its record file empty: interval 0, in which the
    chain shows it took part, has no recorded cost."""
    agent = SimpleNamespace(
        s=SimpleNamespace(rationality=mode, risk_allowance=0.0, first_interval=0, record_file=path),
        mg=MG, dt=DT, state=STATE, anonym=me, ledger=SimpleNamespace(state=lambda role: chain.state),
    )  # fmt: skip
    return start_budget(agent, 1, recorded_spend(path, 1))


def budget_words(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == TRADER]


@pytest.mark.parametrize(
    ("mode", "level"), [("off", logging.INFO), ("trades", logging.INFO), ("strict", logging.WARNING)]
)
def test_a_lost_cost_is_a_warning_only_where_the_guard_steers(
    tmp_path: Path, chain: tuple[LocalChain, Keypair], caplog: pytest.LogCaptureFixture, mode: str, level: int
) -> None:
    path = tmp_path / "market.jsonl"
    path.write_text("")
    with caplog.at_level(logging.INFO, logger=TRADER):
        budget = restarted_at_1(path, mode, *chain)
    ((seen, words),) = budget_words(caplog)
    assert seen == level
    assert "interval 1: " in words and "interval 0 has no recorded cost" in words and f"({mode})" in words
    # the budget is the same whatever the mode: only how loud its word is changed
    assert budget.left == pytest.approx(interval_plan.cost_to_go(MG, DT, N, 1, STATE))


@pytest.mark.parametrize(("mode", "level"), [("off", logging.INFO), ("strict", logging.WARNING)])
def test_a_failed_interval_is_a_warning_only_where_the_guard_steers(
    caplog: pytest.LogCaptureFixture, mode: str, level: int
) -> None:
    budget = DayBudget(mode, 0.0, 40.0, 1.0)
    with caplog.at_level(logging.INFO, logger=TRADER):
        fail_closed_after(SimpleNamespace(budget=budget, state=STATE, mg=MG, dt=DT), 2)
    ((seen, words),) = budget_words(caplog)
    assert seen == level and "interval 2 failed" in words and f"({mode})" in words
    assert budget.left == pytest.approx(interval_plan.cost_to_go(MG, DT, N, 3, STATE))


@pytest.mark.parametrize("n", [1, 24, 96])
def test_day_start_is_the_first_interval_of_the_day_day_end_closes(n: int) -> None:
    for t in range(-2 * n, 3 * n + 1):
        first = interval_plan.day_start(t, n)
        assert first == t // n * n == interval_plan.day_end(t, n) - n
        assert interval_plan.profile_index(first, n) == 0 and first <= t < first + n


def test_day_start_of_a_day_of_no_intervals_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="a day of 0 intervals"):
        interval_plan.day_start(5, 0)


@pytest.mark.parametrize(("t0", "first"), [(1764000000.0, 0), (1764000000.7, 96000), (0.0, 7)])
def test_a_record_stamp_reads_back_its_first_interval(t0: float, first: int) -> None:
    stamp = record_day(t0, first)
    assert record_day_first(stamp) == first
    assert day_summary._first_of(stamp) == first


@pytest.mark.parametrize("stamp", [None, "", "1764000000", "1764000000/", "1764000000/x", 7])
def test_what_is_no_record_stamp_names_no_first_interval(stamp: object) -> None:
    assert record_day_first(stamp) is None
    assert day_summary._first_of(stamp) == -1  # type: ignore[arg-type]  # no interval is before it
