"""A restarted agent whose records lost what an interval cost resumes with no allowance left (review17 K-A):
the line a crash tears is the last one written (the interval just dispatched and paid), a crash between the
interval's close on the chain and its record leaves no line at all, and either may be the day's only record.
Before, each gave the restarted agent that interval's cost back, or a fresh allowance mid-day. Through
`guard.start_budget` on R17's three rows (a real MG's conventional day as the recorded costs, a real chain for
the MG's part) and `RecordedSpend.unknown` on its own, with a property: losing any line of a day it ran, or
tearing one anywhere, is always noticed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_edge_guard_property import MG, N
from test_trader import traded_chain

from peergrid_controller.builder import MgState
from peergrid_edge import interval_plan
from peergrid_edge.guard import DayBudget, start_budget
from peergrid_edge.resume_spend import recorded_spend, spend_of, took_part
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.keys import Keypair

DT, ALLOW = 4.0, 3.0


def unknown_spend(lines: list[Any], t: int, first: int, traded: Any) -> str | None:
    """Why the records' lines cannot say what the day cost before t (`RecordedSpend.unknown` of one pass)."""
    return spend_of(lines, t)[0].unknown(first, traded)


def conventional_day() -> tuple[list[float], list[MgState], float]:
    """The MG's conventional day interval by interval as its records would hold it: each interval's cost,
    the state before each interval (and after the last), and the day's budget at its start."""
    state = MgState.initial(MG)
    day = interval_plan.cost_to_go(MG, DT, N, 0, state) + ALLOW
    costs, states = [], [state]
    for k in range(N):
        cost, state, _ = interval_plan.counterfactual(MG, DT, N, k, state, None)
        costs.append(cost)
        states.append(state)
    return costs, states, day


COSTS, STATES, DAY = conventional_day()


def lines_of(upto: int) -> list[str]:
    """The trader's record lines of intervals 0 .. upto - 1 (interval first, as it writes them)."""
    left = DAY
    out = []
    for k in range(upto):
        left -= COSTS[k]
        out.append(json.dumps({"interval": k, "mg": "mg", "cost_p2p": COSTS[k], "budget_day": DAY,
                               "budget_left": left}))  # fmt: skip
    return out


def restarted(path: Path, t: int, chain: LocalChain, me: Keypair, read_at: int | None = None) -> DayBudget:
    """A restarted agent's budget at interval t, as `MarketAgent.run` and `run_interval` start it, its records
    read at its start for interval `read_at` (t unless given)."""
    agent = SimpleNamespace(
        s=SimpleNamespace(rationality="strict", risk_allowance=ALLOW, first_interval=0, record_file=path),
        mg=MG, dt=DT, state=STATES[t], anonym=me, ledger=SimpleNamespace(state=lambda role: chain.state),
    )  # fmt: skip
    return start_budget(agent, t, recorded_spend(path, t if read_at is None else read_at))


def true_left(t: int) -> float:
    return DAY - sum(COSTS[:t])


@pytest.fixture(scope="module")
def chain() -> tuple[LocalChain, Keypair]:
    return traded_chain(0)  # its buyer took part in interval 0 (and bought there)


def unknown_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "peergrid.edge.trader" and "unknown" in r.getMessage()
    ]


def test_intact_records_resume_the_budget_they_left(tmp_path: Path, chain: tuple[LocalChain, Keypair],
                                                     caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    path = tmp_path / "market.jsonl"
    path.write_text("\n".join(lines_of(3)) + "\n")
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        budget = restarted(path, 3, *chain)
    assert budget.day == pytest.approx(DAY) and budget.left == pytest.approx(true_left(3))
    assert budget.left == pytest.approx(interval_plan.cost_to_go(MG, DT, N, 3, STATES[3]) + ALLOW)  # as run
    assert unknown_warnings(caplog) == []


@pytest.mark.parametrize(
    ("body", "t", "named"),
    [
        ("\n".join([*lines_of(2), lines_of(3)[2][:37]]), 3, "interval 2's record (line 3) cannot be read"),
        (
            "\n".join(lines_of(2)) + "\n",
            3,
            "interval 2 has no recorded cost (the day's budget started at interval 0)",
        ),
        (lines_of(1)[0][:37], 1, "interval 0's record (line 1) cannot be read"),
        ("", 1, "interval 0 has no recorded cost (the chain shows this MG took part in it)"),
        (
            "\n".join(
                [*lines_of(1), json.dumps({"interval": 1, "error": "failed; see the log"}), *lines_of(3)[2:]]
            ),
            3,
            "interval 1 has no recorded cost",
        ),
    ],
    ids=["torn-last", "missing-last", "only-record-torn", "only-record-missing", "failed-interval"],
)
def test_a_lost_cost_resumes_with_no_allowance_left_logged_once_naming_the_interval(
    tmp_path: Path, chain: tuple[LocalChain, Keypair], caplog: pytest.LogCaptureFixture, body: str, t: int,
    named: str,
) -> None:  # fmt: skip
    path = tmp_path / "market.jsonl"
    path.write_text(body)
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        budget = restarted(path, t, *chain)
    to_go = interval_plan.cost_to_go(MG, DT, N, t, STATES[t])
    # the conventional rest of the day and nothing more: never above what the day truly has left
    assert budget.left == pytest.approx(to_go) and budget.left <= true_left(t) - ALLOW + 1e-9
    if t > 1:  # the records' day budget kept (every record of the day carries the same budget_day)
        assert budget.day == pytest.approx(DAY)
    (warning,) = unknown_warnings(caplog)
    assert f"interval {t}: " in warning and named in warning and "no allowance left" in warning


def test_records_read_for_an_earlier_interval_are_read_again_where_the_budget_starts_later(
    tmp_path: Path, chain: tuple[LocalChain, Keypair], caplog: pytest.LogCaptureFixture
) -> None:
    """The agent reads its records at its start (interval 2 here); its first interval fails before the budget
    starts and records the failure, so the budget starts at 3: `start_budget` reads them again for 3 (one
    pass), and the failed interval's missing cost leaves no allowance, as a restart at 3 does. Reading at 2
    alone would resume the intact budget."""
    path = tmp_path / "market.jsonl"
    path.write_text("\n".join(lines_of(2)) + "\n")
    early = recorded_spend(path, 2)
    with path.open("a") as records:
        records.write(json.dumps({"interval": 2, "error": "failed; see the log"}) + "\n")
    assert early.unknown(0, lambda k: True) is None and early.resumed == (DAY, sum(COSTS[:2]))
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        budget = restarted(path, 3, *chain, read_at=2)
    (warning,) = unknown_warnings(caplog)
    assert "interval 2 has no recorded cost" in warning
    assert budget.left == pytest.approx(interval_plan.cost_to_go(MG, DT, N, 3, STATES[3]))
    assert budget == restarted(path, 3, *chain)


def test_an_agent_that_starts_late_and_took_no_part_before_gets_the_whole_allowance(
    tmp_path: Path, chain: tuple[LocalChain, Keypair], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        budget = restarted(tmp_path / "none.jsonl", 1, chain[0], Keypair.generate())
    assert budget.left == pytest.approx(interval_plan.cost_to_go(MG, DT, N, 1, STATES[1]) + ALLOW)
    assert unknown_warnings(caplog) == []


def test_the_chain_shows_who_took_part(chain: tuple[LocalChain, Keypair]) -> None:
    state, buyer = chain[0].state, chain[1]
    assert took_part(state, 0, buyer.public)
    assert not took_part(state, 1, buyer.public)  # interval 1 is open with nobody in it
    assert not took_part(state, 0, Keypair.generate().public)


@given(
    n=st.integers(1, 8),
    data=st.data(),
)
def test_losing_or_tearing_any_line_of_a_day_it_ran_is_noticed(n: int, data: st.DataObject) -> None:
    day = [json.dumps({"interval": k, "cost_p2p": 1.5 * k - 2, "budget_day": 40.0, "budget_left": 0.0})
           for k in range(n)]  # fmt: skip
    t = data.draw(st.integers(n, n + 2))  # resumed at the next interval, or later (a few missed)
    ran = lambda k: k < n  # noqa: E731 - the chain shows every interval the agent ran
    assert unknown_spend(day, n, 0, ran) is None
    lost = data.draw(st.integers(0, n - 1))
    if data.draw(st.booleans()):
        damaged = day[:lost] + day[lost + 1 :]
    else:
        cut = data.draw(st.integers(0, len(day[lost]) - 1))
        damaged = [*day[:lost], day[lost][:cut], *day[lost + 1 :]]
    why = unknown_spend(damaged, t, 0, ran)
    assert why is not None and (f"interval {lost}" in why or "unknown interval" in why)
    if t > n:  # an interval the agent missed since holds no cost either: also unknown after a gap
        assert unknown_spend(day, t, 0, ran) is not None


def test_records_of_other_keys_or_blank_lines_change_nothing() -> None:
    day: list[Any] = [*lines_of(2), "", json.dumps({"dayahead": {"completed": True}})]
    assert unknown_spend(day, 2, 0, lambda k: True) is None
    assert unknown_spend([], 2, 0, lambda k: False) is None  # the agent never ran before interval 2


def test_a_torn_line_of_an_earlier_day_costs_the_days_first_start_nothing() -> None:
    """At the day's first interval no record before it carries a budget: a damaged line there is an earlier
    day's (the same file), and the day starts with its whole allowance; once the day started it counts."""
    earlier = [lines_of(3)[0], lines_of(3)[1][:30]]
    assert unknown_spend(earlier, 0, 0, lambda k: False) is None
    # the agent's records before interval 2 carry this day's budget: the torn line counts
    assert unknown_spend(earlier, 2, 2, lambda k: False) is not None
