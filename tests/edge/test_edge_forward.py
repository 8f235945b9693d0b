"""The MGMCs turn their closed day-ahead session into forward trades on the chain, and trade by them.

Independent agents, each holding only its own MG model and trading key, run the session (`DayAheadAgent`) and
then the forward stage (`ForwardAgent`: each accepts alone, then re-checks the clear's cut in the accept
rounds, the coordinator clears once they settle) on one real single-authority `EdgeLedger`: every accept and
the clear are signed transactions the real exchange contract judges, and the trades are the ones it computes.
The keys are the chain venue's (`key_for`), so that ties break alike: the cleared trades are then the
simulation's `forward.commit` + `forward.clear` on the same day, pair for pair, Wh for Wh, at the same price,
also with a member absent (the rounds then run after the deadline). An MG whose position does not pay
declines; a member that never accepts is cleared without; a member that stalls in the rounds holds the clear
only until the coordinator's hard stop after the deadline; the trader does not bargain a cleared interval,
plans with its forward trades fixed and settles them once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_edge_dayahead_session import CONFIG, SESSION, T0, free_day, ledger_for, market_agent, run_on

from peergrid_controller import baselines
from peergrid_controller.builder import MgState
from peergrid_controller.chain_venue import ChainVenue, key_for
from peergrid_controller.dayahead import allocate, starting_prices
from peergrid_controller.forward import Acceptance, accept_alone, clear, commit
from peergrid_controller.market import micro_per_wh, wh
from peergrid_controller.matching import accepted_wh, match
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.schedule import MgSchedule, ScheduleError
from peergrid_controller.venues import forward_clearing
from peergrid_edge import agent_interval
from peergrid_edge import trader as trader_module
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.exchange_io import Deadline, SessionOutcome
from peergrid_edge.forward_agent import ForwardAgent, ForwardOutcome, forward_plan, forward_session
from peergrid_edge.pcc_readings import MgMetering
from peergrid_edge.replicas import EdgeLedger
from peergrid_edge.resume import resume_interval
from peergrid_edge.settle_book import Settlements
from peergrid_edge.settlement import Settler
from peergrid_edge.trader import MarketAgent
from peergrid_ledger import query
from peergrid_ledger.contracts import exchange_clearing
from peergrid_ledger.contracts.exchange_state import reserved_name, trading_window
from peergrid_ledger.genesis import Params
from peergrid_ledger.keys import Keypair

Trades = set[tuple[int, str, str, int, int]]  # (interval, seller, buyer, Wh, micro-units per Wh)


def venue_keys(scenario: Scenario) -> Callable[[str], Keypair]:
    return lambda name: key_for(scenario.name, name)


async def session_then_forward(
    ledger: EdgeLedger,
    keys_: dict[str, Keypair],
    scenario: Scenario,
    accepting: set[str] | None = None,
    models: dict[str, Microgrid] | None = None,
    timeout_s: float = 10.0,
    make: dict[str, type[ForwardAgent]] | None = None,
    clear_in_s: float | None = None,
    clear_wait_s: float | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[list[SessionOutcome], dict[str, ForwardOutcome]]:
    """Every MG runs the session; then those in `accepting` (all by default) the forward stage, each with its
    own MG model (`models` replaces some: an MG whose situation changed after the session). `clear_in_s`:
    the session's clear deadline, that long after the session starts (None: none); `timings` gets the
    session's and the forward stage's wall s and when the stage ended (wall clock)."""
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    opening = starting_prices(scenario)
    dt = scenario.interval_hours
    now, now_perf = time.time(), time.perf_counter()
    deadline = (
        None if clear_in_s is None else Deadline(close_s=now + 120, clear_ms=int((now + clear_in_s) * 1000))
    )
    sessions = [
        DayAheadAgent(
            ledger, keys_[mg.name], mg, dt, members, SESSION, 0, opening, CONFIG, timeout_s, deadline=deadline
        )
        for mg in scenario.microgrids
    ]
    outcomes = await asyncio.wait_for(asyncio.gather(*(a.run() for a in sessions)), 180)
    print(f"\nsession: {time.time() - now:.2f} s wall")
    forward = {
        mg.name: (make or {}).get(mg.name, ForwardAgent)(
            ledger,
            keys_[mg.name],
            (models or {}).get(mg.name, mg),
            dt,
            SESSION,
            timeout_s=timeout_s,
            clear_wait_s=clear_wait_s,
        )
        for mg in scenario.microgrids
        if accepting is None or mg.name in accepting
    }
    started = time.perf_counter()
    done = await asyncio.wait_for(asyncio.gather(*(a.run() for a in forward.values())), 300)
    wall = time.perf_counter() - started
    print(f"\nforward stage ({len(forward)} accepting of {len(sessions)}): {wall:.2f} s wall")
    if timings is not None:
        timings.update(session=started - now_perf, forward=wall, ended=time.time())
    return outcomes, dict(zip(forward, done, strict=True))


def on_chain(ledger: EdgeLedger, keys_: dict[str, Keypair], intervals: int) -> Trades:
    names = {k.public: name for name, k in keys_.items()}
    state = ledger.state("mgmc")
    return {
        (t, names[tr["seller"]], names[tr["buyer"]], tr["quantity"], tr["price"])
        for t in range(intervals)
        for _, tr in query.trades(state, t)
    }


def simulated(scenario: Scenario) -> tuple[Trades, dict[str, tuple[int, ...]]]:
    """The simulation's forward trades on the same day (allocate on ChainVenue, commit, the contract's clear)
    and each MG's accepted positions; asserts that no MG reduced or declined there."""
    venue = ChainVenue(scenario)
    allocation = allocate(scenario, CONFIG, recorder=venue.exchange)
    committed = commit(scenario, allocation, baselines.conventional(scenario))
    assert committed.declined == () and committed.accepted == accepted_wh(scenario, allocation)
    clearing = forward_clearing(venue)
    assert clearing is not None
    clean = {mg.name: not mg.gensets for mg in scenario.microgrids}
    cleared = clear(clearing, scenario, committed, clean)
    trades = {
        (t, tr.seller, tr.buyer, wh(tr.quantity_kwh), micro_per_wh(tr.price))
        for t, day in enumerate(cleared)
        for tr in day
    }
    return trades, committed.accepted


def test_accepts_and_the_clear_give_the_simulations_forward_trades_to_the_wh_and_the_price(
    tmp_path: Path,
) -> None:
    scenario = free_day(4, 8)
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    sessions, forward = run_on(ledger, lambda: session_then_forward(ledger, keys_, scenario))
    assert all(o.completed for o in sessions)
    expected, accepted = simulated(scenario)
    assert len(expected) > 10
    ledger, _ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))  # what the agents left final
    try:
        assert on_chain(ledger, keys_, scenario.intervals) == expected
        summary = exchange_clearing.cleared(ledger.state("mgmc"), SESSION)
        assert summary is not None and summary["accepted"] == 4 and summary["trades"] == len(expected)
    finally:
        ledger.close()
    closed = tuple(sorted({t for t, *_ in expected}))
    for name, outcome in forward.items():
        assert outcome.cleared and outcome.reason == "" and outcome.decision == "whole"
        assert outcome.rounds == 2  # round 2 re-checked the clear's cut of the whole positions: all kept
        assert outcome.accepted == accepted[name]  # what the simulation's MG accepts, to the Wh
        assert outcome.day_cost <= outcome.conventional + 1e-6
        assert outcome.members_accepted == 4 and outcome.intervals == closed
        net = [0] * scenario.intervals
        for t, seller, buyer, q, _ in expected:
            net[t] += q if seller == name else -q if buyer == name else 0
        assert list(outcome.net_wh) == net


def cheap_grid(mg: Microgrid) -> Microgrid:
    """The MG after its DSO energy became free (retail and feed-in 0): buying from a peer at λ > 0 never pays."""
    free = tuple(0.0 for _ in mg.tariff.retail)
    return dataclasses.replace(mg, tariff=dataclasses.replace(mg.tariff, retail=free, feed_in=free))


def test_an_mg_whose_position_does_not_pay_declines_with_zeros_and_trades_nothing(tmp_path: Path) -> None:
    scenario = free_day(3, 4)
    buyer = scenario.microgrids[2]  # buys in every interval (test_accept_alone... below pins that)
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    models = {buyer.name: cheap_grid(buyer)}
    sessions, forward = run_on(ledger, lambda: session_then_forward(ledger, keys_, scenario, models=models))
    assert all(o.completed for o in sessions)
    venue = ChainVenue(scenario)
    allocation = allocate(scenario, CONFIG, recorder=venue.exchange)
    declined = forward[buyer.name]
    assert declined.cleared and declined.decision == "declined"
    assert declined.accepted == (0,) * 4 and declined.net_wh == (0,) * 4
    ledger, _ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    try:
        state = ledger.state("mgmc")
        record = exchange_clearing.accepted(state, SESSION, keys_[buyer.name].public)
        assert record is not None and record["positions"] == [0, 0, 0, 0]  # it posted its zeros
        traded = on_chain(ledger, keys_, 4)
    finally:
        ledger.close()
    # the others' accepts alone, matched as the simulation matches with it declined
    without = {
        (t, tr.seller, tr.buyer, wh(tr.quantity_kwh), micro_per_wh(tr.price))
        for t, day in enumerate(match(scenario, allocation, [buyer.name]))
        for tr in day
    }
    assert traded == without and traded
    assert all(buyer.name not in (seller, b) for _, seller, b, _, _ in traded)


def test_a_member_that_never_accepts_is_cleared_without_at_the_timeout(tmp_path: Path) -> None:
    scenario = free_day(4, 8)
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    absent = next(n for n in ("mg002", "mg004", "mg001") if n != coordinator)
    accepting = set(keys_) - {absent}
    sessions, forward = run_on(
        ledger, lambda: session_then_forward(ledger, keys_, scenario, accepting, timeout_s=1.0)
    )
    assert all(o.completed for o in sessions) and set(forward) == accepting
    assert all(o.cleared and o.members_accepted == 3 for o in forward.values())
    ledger, _ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    try:
        traded = on_chain(ledger, keys_, scenario.intervals)
        assert exchange_clearing.accepted(ledger.state("mgmc"), SESSION, keys_[absent].public) is None
    finally:
        ledger.close()
    assert traded and all(absent not in (seller, buyer) for _, seller, buyer, _, _ in traded)


class SolverGivesUp(ForwardAgent):
    """A coordinator whose own check fails with an unexpected error (its solver gave up)."""

    def _decide(self, record: dict[str, Any]) -> Acceptance:
        raise RuntimeError("the solver gave up")


def test_a_coordinator_whose_own_accept_fails_still_clears_the_others(tmp_path: Path) -> None:
    scenario = free_day(4, 8)
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    made: dict[str, type[ForwardAgent]] = {coordinator: SolverGivesUp}
    sessions, forward = run_on(ledger, lambda: session_then_forward(ledger, keys_, scenario, make=made))
    assert all(o.completed for o in sessions)
    lead = forward[coordinator]
    # it declines with zeros (review8 F4), so the clear counts every member and need not wait for the deadline
    assert lead.cleared
    assert lead.reason == "its accept failed: RuntimeError: the solver gave up; declined with zeros"
    assert lead.decision == "declined" and lead.accepted == (0,) * 8 and not any(lead.net_wh)
    others = [o for name, o in forward.items() if name != coordinator]
    assert all(o.cleared and o.reason == "" and o.members_accepted == 4 for o in others)
    assert any(any(o.net_wh) for o in others)  # the others trade among themselves


def test_accept_alone_is_commits_rule_for_one_mg() -> None:
    scenario = free_day(3, 4)
    venue = ChainVenue(scenario)
    allocation = allocate(scenario, CONFIG, recorder=venue.exchange)
    raw = accepted_wh(scenario, allocation)
    for mg in scenario.microgrids:
        whole = accept_alone(mg, scenario.interval_hours, allocation.prices, allocation.positions[mg.name])
        assert whole.decision == "whole" and whole.positions == raw[mg.name]
    buyer = scenario.microgrids[2]
    assert all(q < 0 for q in raw[buyer.name])  # buys in every interval
    gone = accept_alone(cheap_grid(buyer), 6.0, allocation.prices, allocation.positions[buyer.name])
    assert gone.decision == "declined" and gone.positions == (0, 0, 0, 0)
    nothing = accept_alone(buyer, 6.0, allocation.prices, (0.0, 0.0, 0.0, 0.0))
    assert nothing.decision == "nothing" and nothing.checks == 0
    # a seller whose sale in interval 2 would fetch far more from the DSO than λ: its whole position no longer
    # pays, the largest part that does is kept (its other sales), and that part pays
    seller = scenario.microgrids[0]
    assert all(q > 0 for q in raw[seller.name])
    dear = tuple(1.0 if t == 2 else p for t, p in enumerate(seller.tariff.feed_in))
    high = tuple(max(1.0, p) if t == 2 else p for t, p in enumerate(seller.tariff.retail))
    dearer = dataclasses.replace(seller, tariff=dataclasses.replace(seller.tariff, feed_in=dear, retail=high))
    part = accept_alone(dearer, 6.0, allocation.prices, allocation.positions[seller.name])
    assert part.decision == "reduced" and part.day_cost <= part.conventional + 1e-6
    assert part.positions[2] == 0 and any(part.positions)  # it sells at break-even: interval 2 goes whole
    assert all(0 <= q <= full for q, full in zip(part.positions, raw[seller.name], strict=True))


# --- the trader in a cleared interval --------------------------------------------------------------------


class FakeDso:
    """The DSO chain of a ledger that has only the MGMC chain: every injection lands (and is kept)."""

    def __init__(self, ledger: EdgeLedger) -> None:
        self.ledger, self.injections = ledger, []  # type: ignore[var-annotated]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)

    def next_nonce(self, role: str, sender: bytes) -> int:
        return 0 if role == "dso" else self.ledger.next_nonce(role, sender)

    def sign(self, role: str, keypair: Keypair, kind: str, body: dict[str, Any], nonce: int) -> bytes:
        if role == "dso":
            self.injections.append(body)
            return b""
        return self.ledger.sign(role, keypair, kind, body, nonce)

    async def submit(self, role: str, raw: bytes, timeout_s: float) -> Any:
        if role == "dso":
            return SimpleNamespace(landed=True, reason="")
        return await self.ledger.submit(role, raw, timeout_s)


def trading_agent(ledger: Any, key: Keypair, scenario: Scenario, mg: Microgrid, record: Path) -> MarketAgent:
    agent = object.__new__(MarketAgent)
    agent.s = SimpleNamespace(  # type: ignore[assignment]
        t0=1_700_000_000.0, first_interval=0, intervals=None, phase_timeout_s=1.0, interval_s=60.0,
        record_file=record, max_rounds=None, dayahead_clean=False,
    )  # fmt: skip
    agent.d = SimpleNamespace(  # type: ignore[assignment]
        ledger=ledger, stopping=asyncio.Event(), keypair=Keypair.generate(), states={}
    )
    agent.scenario, agent.dt, agent.mg = scenario, scenario.interval_hours, mg
    agent.anonym, agent.name = key, key.public.hex()
    agent.interval, agent.phase, agent.done, agent.last = None, "starting", 0, {}
    agent.dayahead, agent.forward, agent.forward_traded = None, None, []
    agent.state = agent.conv_state = MgState.initial(mg)
    agent.settler = Settler(
        lambda body: agent._submit_outcome("mgmc", key, "settle", body),
        lambda tid: query.settlement(ledger.state("mgmc"), tid),
        lambda: 0.0, asyncio.sleep, agent.d.stopping.is_set, agent._record, Settlements(1.0, 60.0),
    )  # fmt: skip
    # no PCC meter (poll 0): its statements would be the agreed quantities; a buyer's settle as before
    agent.metering = MgMetering(
        SimpleNamespace(), 0.0, 1.0,
        lambda t: (round(agent._start_of(t) * 1000), round(agent._start_of(t + 1) * 1000)),
        lambda t: query.trades(ledger.state("mgmc"), t), key.public, agent.d.keypair.public, None,
    )  # fmt: skip
    return agent


@pytest.mark.parametrize("later_infeasible", [False, True])
def test_the_trader_does_not_bargain_a_cleared_interval_and_settles_its_forward_trades_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, later_infeasible: bool
) -> None:
    scenario = free_day(3, 4)
    credit = Params(credit_limit=10**12)  # the buyer pays before any income of its own
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario), params=credit)
    buyer = scenario.microgrids[2]
    wrapped = FakeDso(ledger)
    agent = trading_agent(wrapped, keys_[buyer.name], scenario, buyer, tmp_path / "buyer.jsonl")

    async def never(*_args: Any) -> Any:
        raise AssertionError("a cleared interval was bargained")

    async def no_verdict(*_args: Any) -> None:
        return None

    async def dispatched(*_args: Any) -> int:
        return 0

    monkeypatch.setattr(agent_interval, "bargain", never)
    monkeypatch.setattr(agent, "_await_dso", no_verdict)
    monkeypatch.setattr(agent, "_dispatch", dispatched)
    planned: list[Any] = []

    class Recorded(MgSchedule):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            planned.append(kwargs.get("p2p_fixed"))
            super().__init__(*args, **kwargs)

        def solve(self) -> Any:
            # review8 F2: from the state the MG is in, its later forward trades cannot all be met
            held = planned[-1]
            if later_infeasible and held is not None and any(held[1:]):
                raise ScheduleError("infeasible", "a later forward trade cannot be met from this state")
            return super().solve()

    monkeypatch.setattr(trader_module, "MgSchedule", Recorded)

    async def play() -> tuple[dict[str, ForwardOutcome], list[str]]:
        _, forward = await session_then_forward(ledger, keys_, scenario)
        state = ledger.state("mgmc")
        plan = forward_plan(state, keys_[buyer.name].public, range(4), scenario.interval_hours)
        assert plan == pytest.approx([q / 1000 / scenario.interval_hours for q in forward[buyer.name].net_wh])
        assert forward_session(state, 1) == SESSION
        # a restarted agent resumes at the first forward-traded interval whose slot is not over, not after
        # every interval the clear closed ahead of time (it must still dispatch and inject them)
        cleared_ahead = set(forward[buyer.name].intervals)
        assert cleared_ahead == {0, 1, 2, 3}
        assert resume_interval(state, 0, lambda t: t < 2) == 2
        assert resume_interval(state, 0, lambda t: False) == 0
        assert resume_interval(state, 0) == 4  # every slot over: the next interval nobody traded
        await agent.run_interval(1)
        mine = [
            tid
            for tid, tr in query.trades(ledger.state("mgmc"), 1)
            if tr["buyer"] == keys_[buyer.name].public
        ]
        again = [await agent._submit_outcome("mgmc", keys_[buyer.name], "settle",
                                             {"trade": tid, "delivered": 1}) for tid in mine]  # fmt: skip
        return forward, [o.reason for o in again]

    forward, refused = run_on(ledger, play)
    assert forward[buyer.name].net_wh[1] < 0  # it bought forward in interval 1
    (line,) = (tmp_path / "buyer.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["forward"] == SESSION and record["rounds"] == [] and record["closed"] is True
    assert record["net_p2p_kwh"] == pytest.approx(forward[buyer.name].net_wh[1] / 1000)
    assert record["settled"] == len(record["trades"]) > 0  # every forward purchase settled
    assert refused and all(reason.startswith("already-settled") for reason in refused)  # once only
    assert wrapped.injections[0]["interval"] == 1  # its injection went to the DSO as usual
    assert agent.forward_traded == [1]
    # its day from interval 1 on was planned with every forward trade of intervals 1-3 fixed (kW); where that
    # is infeasible, with interval 1's alone, and the interval still injected, dispatched and settled
    net = forward[buyer.name].net_wh
    assert planned[0] == pytest.approx([q / 1000 / scenario.interval_hours for q in net[1:]])
    if later_infeasible:
        assert any(planned[0][1:])  # there were later forward trades to let go
        assert planned[1] == pytest.approx([net[1] / 1000 / scenario.interval_hours, 0.0, 0.0])


def test_a_forward_sale_the_mg_cannot_meet_from_its_state_is_delivered_as_far_as_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # review8 F2, the interval's own trade: mg001 sold forward in interval 3 (no PV, its battery to cover
    # the sale); it comes to that interval with its battery at its minimum and its DSO import limited to 43 kW
    # (critical load 42.7 kW): the sale cannot be met. The interval is still dispatched with what it can
    # deliver, its injection goes to the DSO and the shortfall is recorded: the trader does not fail it
    scenario = free_day(3, 4)
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    seller = scenario.microgrids[0]
    limited = dataclasses.replace(seller, tariff=dataclasses.replace(seller.tariff, max_import_kw=43.0))
    wrapped = FakeDso(ledger)
    agent = trading_agent(wrapped, keys_[seller.name], scenario, limited, tmp_path / "seller.jsonl")
    lowest = tuple(b.soc_min * b.capacity_kwh for b in limited.batteries)  # as low as its model allows
    agent.state = dataclasses.replace(MgState.initial(limited), soc_kwh=lowest)

    async def no_verdict(*_args: Any) -> None:
        return None

    dispatched: list[Any] = []

    async def dispatch_plan(_t: int, plan: Any) -> int:
        dispatched.append(plan)
        return 1

    monkeypatch.setattr(agent, "_await_dso", no_verdict)
    monkeypatch.setattr(agent, "_dispatch", dispatch_plan)

    async def play() -> ForwardOutcome:
        _, forward = await session_then_forward(ledger, keys_, scenario)
        sold_kw = forward[seller.name].net_wh[3] / 1000 / scenario.interval_hours
        with pytest.raises(ScheduleError):  # the sale held: no plan (what failed the interval before)
            MgSchedule(limited, 6.0, start=3, horizon=1, state=agent.state, p2p_fixed=[sold_kw]).solve()
        await agent.run_interval(3)
        return forward[seller.name]

    forward = run_on(ledger, play)
    sold_kwh = forward.net_wh[3] / 1000
    assert sold_kwh > 1.0  # it sold forward in interval 3
    (line,) = (tmp_path / "seller.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["forward"] == SESSION and record["net_p2p_kwh"] == pytest.approx(sold_kwh)
    (plan,) = dispatched
    delivered_kwh = plan.p2p_net_export[0] * scenario.interval_hours
    # what it can deliver: its import limit less its critical load (all sheddable load shed), to a watt
    assert delivered_kwh == pytest.approx((43.0 - 42.674) * 6.0, abs=0.01)
    assert record["shortfall_kwh"] == pytest.approx(sold_kwh - delivered_kwh)
    assert plan.dso_net_export[0] == pytest.approx(-43.0)
    assert wrapped.injections[0]["interval"] == 3  # its injection went to the DSO: what it really exports
    assert wrapped.injections[0]["injection"] == round((plan.p2p_net_export[0] - 43.0) * 1000)
    assert record["dispatch_confirmed"] == 1 and agent.state.soc_kwh == pytest.approx(lowest)


def test_the_trading_agent_accepts_after_a_completed_session_and_records_the_clear(tmp_path: Path) -> None:
    scenario = free_day(3, 4)
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    agents = {n: market_agent(ledger, k, scenario, n, tmp_path / f"{n}.jsonl") for n, k in keys_.items()}
    for agent in agents.values():
        agent.s.intervals = 3  # type: ignore[attr-defined]  # it trades chain intervals 0-2: 3 is declined

    async def play() -> list[ForwardOutcome]:
        sessions = await asyncio.gather(*(a.run_dayahead() for a in agents.values()))
        assert all(o.completed for o in sessions)
        return await asyncio.gather(*(a.run_forward() for a in agents.values()))

    outcomes = run_on(ledger, play)
    for (name, agent), outcome in zip(agents.items(), outcomes, strict=True):
        assert outcome.cleared and outcome.session == reserved_name(
            min(keys_.values(), key=lambda k: k.public).public, f"dayahead/{int(T0)}/0"
        )
        assert outcome.accepted[3] == 0 and 3 not in outcome.intervals  # outside what it trades
        lines = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        kinds = [next(k for k in doc if k != "day") for doc in lines]  # each line stamped with its day
        assert kinds == ["dayahead", "forward"]
        assert lines[1]["forward"]["accepted"] == list(outcome.accepted)
        status = agent.status()["forward"]
        assert status["cleared"] and status["intervals"] == list(outcome.intervals) and status["traded"] == []
        # its first accept stated the chain intervals it trades: the chain bounds its make-whole gain there
        assert trading_window(ledger.state("mgmc"), outcome.session, agent.anonym.public) == range(0, 3)
    # the clear closed exactly the traded intervals where the accepts pair a sale with a purchase (with the
    # trader's default value stop this day's interval 1 has none: it stays intraday)
    pairs = {
        t
        for t in range(3)
        if any(o.accepted[t] > 0 for o in outcomes) and any(o.accepted[t] < 0 for o in outcomes)
    }
    assert {t for o in outcomes for t in o.intervals} == pairs and pairs


def one_shot(scenario: Scenario) -> dict[str, Any]:
    """What the edge's one-shot accepts give on a day, in-process (no chain: the same functions the agents
    and the contract run): each MG's `accept_alone`, the clear's matching of the accepts, then each MG's
    exact check with the trades it got (what the simulation's `commit` would re-check and the edge does not).
    """
    from peergrid_controller.forward import _check  # the exact check, for the measurement only

    venue = ChainVenue(scenario)
    allocation = allocate(scenario, CONFIG, recorder=venue.exchange)
    conv = baselines.conventional(scenario)
    dt = scenario.interval_hours
    accepts = {
        mg.name: accept_alone(mg, dt, allocation.prices, allocation.positions[mg.name])
        for mg in scenario.microgrids
    }
    positions = {name: tuple(q / 1000 for q in a.positions) for name, a in accepts.items()}
    trades = match(scenario, dataclasses.replace(allocation, positions=positions))
    checked = _check(scenario, trades, conv)
    committed = commit(scenario, allocation, conv)
    over = {
        name: sum(checked.physical[name]) - sum(checked.payments[name]) - sum(conv.per_interval[name])
        for name in checked.refused
    }
    # each member absent in turn (never accepts): who then ends above its conventional day, by how much
    absent = {}
    for gone in positions:
        cut = _check(
            scenario, match(scenario, dataclasses.replace(allocation, positions=positions), [gone]), conv
        )
        for name in cut.refused:
            above = sum(cut.physical[name]) - sum(cut.payments[name]) - sum(conv.per_interval[name])
            absent[f"{name} ({gone} absent)"] = round(above, 4)
    central = conv.total() - baselines.central(scenario).total()
    gain = conv.total() - sum(sum(v) for v in checked.physical.values())
    gain_commit = conv.total() - sum(sum(v) for v in committed.physical_cost.values())
    return {
        "decisions": {
            d: [a.decision for a in accepts.values()].count(d) for d in ("whole", "reduced", "declined")
        },
        "above_conventional": {n: round(v, 4) for n, v in over.items()},
        "share_edge": round(gain / central, 4),
        "share_commit": round(gain_commit / central, 4),
        "commit_declined": len(committed.declined),
        "above_with_one_absent": absent,
    }


if __name__ == "__main__":  # python tests/edge/test_edge_forward.py [4x8 ...]: the one-shot accept's gap
    import sys

    from peergrid_controller.synth import synthetic_scenario

    for n, intervals, seed in [
        (4, 8, 0),
        (5, 4, 1),
        (4, 4, 2),
        (6, 24, 1),
        (6, 24, 2),
        (10, 24, 3),
        (20, 96, 1),
    ]:
        for gensets in (False, True):
            label = f"{n}x{intervals}" + ("g" if gensets else "")
            if len(sys.argv) > 1 and label not in sys.argv[1:]:
                continue
            day = (
                synthetic_scenario(n, intervals, seed=seed, interval_hours=24 / intervals)
                if gensets
                else free_day(n, intervals, seed)
            )
            print(f"{label} seed {seed}:", one_shot(day), flush=True)
