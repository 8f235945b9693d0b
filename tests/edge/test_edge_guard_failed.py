"""The running agent after a failed interval goes on with no allowance left, as a restart does (review17 K-A, the
running half; `guard.fail_closed_after` from `MarketAgent.run`'s except branch). The failure may come after
`guard.choose`, once the MG traded, dispatched and was paid, so what the interval cost is unknown: before, the
running agent went on with the budget uncharged for it (the interval's cost given back), while a restart over
the same records, whose line for it is the error, resumed with the conventional rest of the day.

Through `MarketAgent.run` itself (a real single-authority chain, its intervals stubbed to start and charge the
budget as `run_interval` does), and on a real traded day (every MG's real `run_interval` on one real chain,
each failing at its injection, right after the guard chose, its trades agreed and paid): each agent's next
record has budget_left = the conventional rest of the day from where it stood less that interval's cost, and a
restart over the same records at that interval starts with the same budget."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from stubbed_day import run_stubbed
from test_edge_dayahead_session import ledger_for, run_on
from test_edge_forward import venue_keys
from test_edge_guard import SCENARIO, TOLERANCE, agent_for

from peergrid_controller.builder import MgState
from peergrid_edge import guard, interval_plan
from peergrid_edge.resume import initial_state
from peergrid_edge.resume_spend import recorded_spend
from peergrid_edge.trader import MarketAgent
from peergrid_ledger import query
from peergrid_ledger.genesis import Params
from peergrid_ledger.keys import Keypair

ALLOWANCE, CHARGE = 4.0, 10.0
Interval = Callable[[MarketAgent, int], Awaitable[None]]


def run_day(tmp_path: Path, stubs: dict[int, Interval]) -> tuple[MarketAgent, list[dict[str, Any]]]:
    """A MarketAgent run from interval 5 over 3 intervals (mg4 of ieee33, strict, allowance 4.0; `stubbed_day`),
    each interval starting the budget as `run_interval` does, then `stubs[t]` (if any: it may raise), then charged
    10.0 and recorded with its budget. Returns the agent and its record lines."""
    path = tmp_path / "market.jsonl"

    def stub(agent: MarketAgent) -> None:
        async def interval(t: int) -> None:
            if t in stubs:
                await stubs[t](agent, t)
            budget = agent.budget or agent._start_budget(t, agent.resumed)
            budget.charge(CHARGE)
            agent._record(
                {"interval": t, "cost_p2p": CHARGE, "budget_day": budget.day, "budget_left": budget.left}
            )

        agent.run_interval = interval  # type: ignore[method-assign]

    agent = run_stubbed(tmp_path, stub, record_file=path, rationality="strict", forecast="market",
                        risk_allowance=ALLOWANCE)  # fmt: skip
    return agent, [json.loads(line) for line in path.read_text().splitlines()]


def moved(mg: Any, dt: float, t: int, state: MgState) -> MgState:
    """The MG's state after interval t run conventionally from `state` (where a real interval leaves it)."""
    return interval_plan.counterfactual(mg, dt, mg.intervals, t, state, None)[1]


def restart_at(agent: MarketAgent, t: int, state: MgState) -> guard.DayBudget:
    """The budget a restart at interval t over the agent's records starts with, its batteries at `state`."""
    fresh = SimpleNamespace(s=agent.s, mg=agent.mg, dt=agent.dt, state=state, anonym=agent.anonym,
                            ledger=agent.ledger)  # fmt: skip
    return guard.start_budget(fresh, t, recorded_spend(agent.s.record_file, t, agent.day))


def failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "peergrid.edge.trader" and "no allowance left" in r.getMessage()]  # fmt: skip


def test_an_interval_failing_after_its_state_moved_leaves_the_conventional_rest_of_the_day(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Interval 6 moves the MG's state on (as `run_interval` does once dispatched) and raises: interval 7
    goes on from the conventional rest of the day from 7 at that state, not from the day less 10.0."""
    seen: dict[str, Any] = {}

    async def fails_late(agent: MarketAgent, t: int) -> None:
        assert agent.state is not None
        agent.state = seen["state"] = moved(agent.mg, agent.dt, t, agent.state)
        seen["left"] = agent.budget.left if agent.budget is not None else None
        raise RuntimeError("the DSO chain went away after the guard chose")

    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        agent, lines = run_day(tmp_path, {6: fails_late})
    mg, dt = agent.mg, agent.dt
    day = interval_plan.cost_to_go(mg, dt, mg.intervals, 5, initial_state(mg, {})) + ALLOWANCE
    to_go = interval_plan.cost_to_go(mg, dt, mg.intervals, 7, seen["state"])
    assert [r["interval"] for r in lines] == [5, 6, 7] and lines[1] == {
        "interval": 6,
        "day": agent.day,
        "error": "failed; see the log",
    }
    assert [r.get("budget_day") for r in lines] == pytest.approx([day, None, day])
    assert lines[0]["budget_left"] == pytest.approx(day - CHARGE) == seen["left"]
    assert lines[2]["budget_left"] == pytest.approx(to_go - CHARGE)  # not day - 2 x 10.0
    assert to_go < day - CHARGE - ALLOWANCE / 2  # the allowance is gone, not only interval 6's cost
    (warning,) = failures(caplog)
    assert warning.startswith("interval 6 failed: what it cost is unknown") and f"{to_go:.4f}" in warning
    # a restart at interval 7 over the same records, its batteries where the agent left them, agrees
    restarted = restart_at(agent, 7, seen["state"])
    assert (restarted.day, restarted.left) == pytest.approx((day, to_go))


def test_an_interval_failing_before_its_budget_started_is_left_to_start_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Interval 5, the day's first here, raises before its budget started (`run_interval` starts it before it
    plans or bargains, so it traded nothing): nothing to close, and interval 6 starts the budget by the
    restart's rule (`start_budget`: a failed first interval the chain shows no part in charges nothing) - the
    conventional day from 6 plus the whole allowance, no warning."""

    async def fails_at_once(agent: MarketAgent, t: int) -> None:
        raise RuntimeError("the plan could not be solved")

    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        agent, lines = run_day(tmp_path, {5: fails_at_once})
    day = interval_plan.cost_to_go(agent.mg, agent.dt, agent.mg.intervals, 6, initial_state(agent.mg, {}))
    day += ALLOWANCE
    assert lines[0] == {"interval": 5, "day": agent.day, "error": "failed; see the log"}
    assert [r["budget_day"] for r in lines[1:]] == pytest.approx([day, day])
    assert [r["budget_left"] for r in lines[1:]] == pytest.approx([day - CHARGE, day - 2 * CHARGE])
    assert failures(caplog) == [] and not any("unknown" in r.getMessage() for r in caplog.records)


def test_a_rest_of_the_day_that_cannot_be_solved_is_logged_and_the_day_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fail-closed solve itself raising never ends trading: logged with its traceback, the budget as it
    was, interval 7 traded and recorded."""
    solve = interval_plan.cost_to_go

    def broken_from_7(mg: Any, dt: float, intervals: int, start: int, state: MgState) -> float:
        if start == 7:
            raise RuntimeError("solver gone")
        return solve(mg, dt, intervals, start, state)

    async def fails(agent: MarketAgent, t: int) -> None:
        raise RuntimeError("a bug after the guard chose")

    monkeypatch.setattr(interval_plan, "cost_to_go", broken_from_7)
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        agent, lines = run_day(tmp_path, {6: fails})
    assert [r["interval"] for r in lines] == [5, 6, 7] and agent.done == 3
    assert lines[2]["budget_left"] == pytest.approx(lines[0]["budget_left"] - CHARGE)
    (logged,) = [r for r in caplog.records if "could not be solved" in r.getMessage()]
    assert logged.exc_info is not None and "solver gone" in str(logged.exc_info[1])
    assert failures(caplog) == []


# ---------------------------------------------------------------------------------------------- a real day


def test_on_a_real_day_an_interval_failing_after_the_guard_chose_leaves_no_allowance(tmp_path: Path) -> None:
    """Every MG trades test_edge_guard's day (strict, allowance 3.0) on one real chain; at the first interval
    (before the last) in which it took part in a trade, each agent's injection raises, right after
    `guard.choose` (its trades closed and paid), and the agent goes on as `MarketAgent.run` does: the error
    recorded, `guard.fail_closed_after`. Each such MG's next record has budget_left = cost_to_go(next, its
    state) - cost_p2p(next), and a restart at the next interval over its records starts with the same budget."""
    credit = Params(credit_limit=10**12)
    ledger, keys_ = ledger_for(tmp_path, SCENARIO, key_of=venue_keys(SCENARIO), params=credit)
    records = {mg.name: tmp_path / f"{mg.name}.jsonl" for mg in SCENARIO.microgrids}
    agents = {mg.name: agent_for(ledger, keys_[mg.name], SCENARIO, mg.name, records[mg.name], "strict", 3.0)
              for mg in SCENARIO.microgrids}  # fmt: skip
    failed: dict[
        str, tuple[int, float]
    ] = {}  # each MG's failed interval and its budget_left once the guard chose
    states: dict[str, MgState] = {}  # and its state when the interval failed

    for name, agent in agents.items():
        submit = agent._submit

        async def failing(role: str, key: Keypair, kind: str, body: dict[str, Any], *, _a: Any = agent,
                          _n: str = name, _submit: Any = submit) -> bool:  # fmt: skip
            t = body.get("interval")
            if kind == "equivalent_injection" and _n not in failed and t < SCENARIO.intervals - 1:
                parties = {
                    p for _, tr in query.trades(ledger.state("mgmc"), t) for p in (tr["seller"], tr["buyer"])
                }
                if _a.anonym.public in parties:
                    failed[_n] = (t, _a.budget.left)
                    raise RuntimeError("the DSO chain went away after the guard chose")
            return bool(await _submit(role, key, kind, body))

        agent._submit = failing  # type: ignore[method-assign]

    async def as_run(agent: MarketAgent, name: str, t: int) -> None:
        try:
            await agent.run_interval(t)
        except RuntimeError:  # MarketAgent.run's except branch, after log.exception
            assert agent.state is not None
            states[name] = agent.state
            agent._record({"interval": t, "error": "failed; see the log"})
            guard.fail_closed_after(agent, t)

    async def play() -> None:
        for t in range(SCENARIO.intervals):
            await asyncio.wait_for(asyncio.gather(*(as_run(a, n, t) for n, a in agents.items())), 120)

    run_on(ledger, play)
    assert len(failed) >= 2, failed  # MGs that traded, failed after the guard chose, and went on
    moved_by: dict[str, float] = {}
    for name, (at, chose) in failed.items():
        agent = agents[name]
        lines = [json.loads(line) for line in records[name].read_text().splitlines()]
        assert [r["interval"] for r in lines] == list(range(SCENARIO.intervals))
        assert lines[at] == {"interval": at, "day": agent.day, "error": "failed; see the log"}
        after = lines[at + 1]
        to_go = interval_plan.cost_to_go(agent.mg, agent.dt, agent.mg.intervals, at + 1, states[name])
        assert after["budget_day"] == pytest.approx(lines[0]["budget_day"])
        assert after["budget_left"] == pytest.approx(to_go - after["cost_p2p"], abs=TOLERANCE), name
        moved_by[name] = to_go - chose  # against the uncharged budget (+: interval `at` was an income)
        restarted = restart_at(agent, at + 1, states[name])
        assert restarted.left == pytest.approx(to_go, abs=TOLERANCE)
        assert restarted.day == pytest.approx(lines[0]["budget_day"])
        # and the day goes on charging from there
        for prev, r in zip(lines[at + 1 :], lines[at + 2 :], strict=False):
            assert r["budget_left"] == pytest.approx(prev["budget_left"] - r["cost_p2p"]), name
    print({n: (failed[n][0], round(g, 4)) for n, g in moved_by.items()})
    # before, each went on with the uncharged budget: the failed interval's cost given back, or its income lost
    assert max(abs(g) for g in moved_by.values()) > 1.0
