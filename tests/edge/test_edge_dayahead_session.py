"""The day-ahead exchange session run by independent MGMC agents, each from its own MG and the chain alone.

Several `DayAheadAgent`s, each holding only its own MG model and trading key, run concurrently on one real
single-authority `EdgeLedger` (its node key the only authority, so it finalises alone; no broker), and in
the last test each on its own replica over a real Mosquitto: every
open, position, step and close is a signed transaction the real exchange contract judges. The session's
final prices and positions are those of the simulation's `dayahead.allocate` posting to `ChainVenue`'s
exchange on the same day (kWh stops), to the nano and the Wh; a day with a floor runs; a silent member, a
member with gensets, a tampered replica and a refusal by the chain each end the stage with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Concatenate, ParamSpec, TypeVar

import pytest
from edge_helpers import BLOCK_MS

from peergrid_controller.chain_venue import ChainVenue, chain_rules
from peergrid_controller.dayahead import Allocation, allocate, starting_prices
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.model import ContractRules, Scenario
from peergrid_controller.synth import synthetic_scenario
from peergrid_edge.config import MarketSettings
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.exchange_io import SessionFailed, SessionOutcome
from peergrid_edge.link import MqttLink
from peergrid_edge.replicas import ChainSpec, EdgeLedger, Submission
from peergrid_edge.trader import MarketAgent
from peergrid_ledger import codec, keys
from peergrid_ledger.contracts import exchange as contract
from peergrid_ledger.contracts.exchange_state import reserved_name
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

CONFIG = DayAheadConfig(value_per_kwh=0.0)  # the kWh stops (the value stop: test_edge_dayahead_value.py)
SESSION = "dayahead/edge-test"


def free_day(n: int = 4, intervals: int = 8, seed: int = 0) -> Scenario:
    """A synthetic day without gensets (the edge session refuses them) and without owner rules."""
    sc = synthetic_scenario(n, intervals, seed=seed, interval_hours=24 / intervals)
    return Scenario(
        sc.name, sc.interval_hours, tuple(dataclasses.replace(m, gensets=()) for m in sc.microgrids)
    )


def trading_key(mg: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(f"edge-dayahead/{mg}".encode()).digest())


def ledger_for(
    tmp_path: Path,
    scenario: Scenario,
    rules: dict[str, ContractRules] | None = None,
    key_of: Callable[[str], Keypair] = trading_key,
    params: Params | None = None,
    dso: Keypair | None = None,
    block_ms: int = BLOCK_MS,
) -> tuple[EdgeLedger, dict[str, Keypair]]:
    """A single-authority MGMC chain whose accounts are the MGs' trading keys (`key_of` each MG's name), each
    with its owner's rules (`rules` overrides some, as a genesis that disagrees with the MGMC's own config);
    with `dso` also that key's account, role dso (it posts the connection capacities)."""
    chain = {mg.name: (rules or {}).get(mg.name, mg.rules) for mg in scenario.microgrids}
    authority = Keypair.from_seed(hashlib.sha256(b"edge-dayahead/authority").digest())
    keys_ = {mg.name: key_of(mg.name) for mg in scenario.microgrids}
    genesis = Genesis(
        chain="mgmc-dayahead", time=0, authorities=(authority.public,),
        accounts=(Account(authority.public, ("mgmc",)),
                  *(Account(keys_[mg.name].public, ("anonym",), mg.name, rules=chain_rules(chain[mg.name]))
                    for mg in scenario.microgrids),
                  *(() if dso is None else (Account(dso.public, ("dso",), "dso"),))),
        contracts=("market", "exchange"), params=params or Params(),
    )  # fmt: skip
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "mgmc-genesis.json"
    path.write_text(json.dumps(genesis.to_json()))
    spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=block_ms,
                     round_timeout_ms=500, wal_fsync=False)  # fmt: skip
    return EdgeLedger(authority, MqttLink("test", "127.0.0.1", 9), "feeder", [spec]), keys_


AgentFactory = Callable[..., DayAheadAgent]
P = ParamSpec("P")
R = TypeVar("R")


def session_play(
    ledger: EdgeLedger,
    keys_: dict[str, Keypair],
    scenario: Scenario,
    only: set[str] | None = None,
    make: dict[str, AgentFactory] | None = None,
    replicas: dict[str, Any] | None = None,
    timeout_s: float = 10.0,
    session: str = SESSION,
    phases: bool = False,
    config: DayAheadConfig = CONFIG,
) -> Callable[[], Awaitable[dict[str, SessionOutcome]]]:
    """Every MG of `scenario` (or those in `only`) runs its own agent, with only its own MG, concurrently: the
    day as a play for `run_on` or `run_together` (each MG's outcome by its name)."""
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    opening = starting_prices(scenario)  # the coordinator's choice (public, on the chain)
    agents = {}
    for mg in scenario.microgrids:
        if only is not None and mg.name not in only:
            continue
        factory = (make or {}).get(mg.name, DayAheadAgent)
        replica = (replicas or {}).get(mg.name, ledger)
        agents[mg.name] = factory(replica, keys_[mg.name], mg, scenario.interval_hours, members, session,
                                  0, opening, config, timeout_s, phases=phases)  # fmt: skip

    async def play() -> dict[str, SessionOutcome]:
        done = await asyncio.wait_for(asyncio.gather(*(a.run() for a in agents.values())), 180)
        return dict(zip(agents, done, strict=True))

    return play


def run_on(ledger: EdgeLedger, play: Callable[[], Any]) -> Any:
    (result,) = run_together([(ledger, play)])
    return result


def run_alone(
    make_play: Callable[Concatenate[EdgeLedger, P], Callable[[], Awaitable[R]]],
) -> Callable[Concatenate[EdgeLedger, P], R]:
    """`make_play` as a run of its own: the same parameters, its play run on `ledger` (`run_on`), its result."""

    def run(ledger: EdgeLedger, /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = run_on(ledger, make_play(ledger, *args, **kwargs))
        return result

    return run


run_session = run_alone(session_play)
"""`session_play`'s day, run: each MG's outcome by its name (its parameters are `session_play`'s)."""


def run_together(runs: list[tuple[EdgeLedger, Callable[[], Any]]]) -> list[Any]:
    """Each `play` on its own started `ledger`, all at once in one event loop (independent days whose wall
    time is mostly waiting for blocks: together they take about the longest one's); their results in order.
    The agents of one play see only their own ledger; the first failure is raised once every ledger closed."""

    async def main() -> list[Any]:
        started: list[EdgeLedger] = []
        plays: list[asyncio.Task[Any]] = []
        try:
            for ledger, _ in runs:
                ledger.start()
                started.append(ledger)
            plays = [asyncio.create_task(play()) for _, play in runs]
            return list(await asyncio.gather(*plays))
        finally:
            for task in plays:  # after a failure the others stop before their ledgers close
                task.cancel()
            await asyncio.gather(*plays, return_exceptions=True)
            for ledger in started:
                ledger.close()

    return asyncio.run(main())


def simulated(
    scenario: Scenario, config: DayAheadConfig = CONFIG
) -> tuple[Allocation, dict[str, Any], dict[str, list[int]]]:
    """`allocate` on the same day, every move on ChainVenue's exchange: the allocation, the venue's closed
    session and each MG's last stepped positions (Wh: its last post, but on a value stop the one before the
    abandoned verdict round)."""
    venue = ChainVenue(scenario)
    allocation = allocate(scenario, config, recorder=venue.exchange)
    record = contract.session(venue.chain.view, venue.exchange.session)
    assert record is not None
    positions = {}
    for mg in scenario.microgrids:
        last = contract.stepped(venue.chain.view, venue.exchange.session, venue.keys[mg.name].public)
        assert last is not None
        positions[mg.name] = last["positions"]
    return allocation, record, positions


def test_independent_agents_reach_the_simulations_prices_and_positions_to_the_nano_and_the_wh(
    tmp_path: Path,
) -> None:
    scenario = free_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    started = time.perf_counter()
    outcomes = run_session(ledger, keys_, scenario)
    wall = time.perf_counter() - started
    allocation, record, positions = simulated(scenario)
    assert allocation.stop == "kwh" and allocation.converged and allocation.iterations > 5
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    for name, outcome in outcomes.items():
        assert outcome.completed, outcome.reason
        assert outcome.coordinator == (name == coordinator)
        assert outcome.stop == "kwh" and outcome.iterations == allocation.iterations
        assert outcome.prices == record["prices"]  # the chain's, to the nano
        assert list(outcome.positions) == positions[name]  # to the Wh
        assert outcome.positions == tuple(round(q * 1000) for q in allocation.positions[name])
    # the edge session on its replica is the same session as the simulation's on its own chain
    with_replica = reopen(tmp_path, scenario)
    assert with_replica["closed"] and with_replica["iteration"] == record["iteration"]
    assert with_replica["prices"] == record["prices"] and with_replica["rho"] == record["rho"]
    assert with_replica["coordinator"] == keys_[coordinator].public
    print(f"\n{len(outcomes)} agents, {allocation.iterations} iterations: {wall:.2f} s wall per session")


def reopen(tmp_path: Path, scenario: Scenario) -> dict[str, Any]:
    """The session as a fresh EdgeLedger on the same store holds it (what the agents left final)."""
    ledger, _ = ledger_for(tmp_path, scenario)
    try:
        record = contract.session(ledger.state("mgmc"), SESSION)
    finally:
        ledger.close()
    assert record is not None
    return record


def test_five_agents_on_another_day_match_too(tmp_path: Path) -> None:
    scenario = free_day(5, 4, seed=1)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    outcomes = run_session(ledger, keys_, scenario)
    allocation, record, positions = simulated(scenario)
    assert all(o.completed and o.prices == record["prices"] for o in outcomes.values())
    assert {name: list(o.positions) for name, o in outcomes.items()} == positions
    assert {o.iterations for o in outcomes.values()} == {allocation.iterations}


class GoesSilent(DayAheadAgent):
    """A member that stops posting at iteration 3 (its MGMC died)."""

    async def _post(self, k: int, positions: tuple[int, ...], says_settled: bool = False) -> None:
        if k == 3:
            raise SessionFailed("silenced by the test")
        await super()._post(k, positions, says_settled)


def test_a_member_that_stops_posting_has_the_session_closed_and_every_agent_reports_the_failure(
    tmp_path: Path,
) -> None:
    scenario = free_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    silent = next(name for name in keys_ if name != coordinator)
    outcomes = run_session(ledger, keys_, scenario, make={silent: GoesSilent}, timeout_s=1.0)
    assert not any(o.completed for o in outcomes.values())
    assert outcomes[silent].reason == "silenced by the test"
    lead = outcomes[coordinator].reason
    assert f"{keys_[silent].public.hex()[:16]}… did not post iteration 3" in lead
    assert "the coordinator closed the session at iteration 3" in lead
    for name, outcome in outcomes.items():
        if name not in (coordinator, silent):
            assert "closed the session at iteration 3 instead of stepping it" in outcome.reason
            assert outcome.iterations == 2  # what was stepped before
    record = reopen(tmp_path, scenario)
    assert record["closed"] and record["iteration"] == 3  # the half-posted iteration abandoned, not stepped


def test_a_member_that_never_joins_fails_the_stage_at_iteration_zero(tmp_path: Path) -> None:
    scenario = free_day(3, 4)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    absent = next(name for name in keys_ if name != coordinator)
    outcomes = run_session(ledger, keys_, scenario, only=set(keys_) - {absent}, timeout_s=1.0)
    assert set(outcomes) == set(keys_) - {absent}
    assert f"{keys_[absent].public.hex()[:16]}… did not post iteration 0" in outcomes[coordinator].reason
    assert all(not o.completed and o.reason for o in outcomes.values())
    assert reopen(tmp_path, scenario)["closed"]


def test_a_day_with_a_floor_in_force_runs_for_every_agent(tmp_path: Path) -> None:
    # it was refused up front until each MGMC judged its own floors and caps (dayahead_rules.py, 920463c);
    # equality with `allocate` on rules days is tests/edge/test_edge_dayahead_rules.py's
    scenario = free_day(3, 4)
    floored = scenario.microgrids[1]
    mgs = list(scenario.microgrids)
    mgs[1] = dataclasses.replace(floored, rules=ContractRules(floor_price=0.06))
    scenario = Scenario(scenario.name, scenario.interval_hours, tuple(mgs))
    ledger, keys_ = ledger_for(tmp_path, scenario)
    outcomes = run_session(ledger, keys_, scenario)
    assert all(outcome.completed for outcome in outcomes.values()), {n: o.reason for n, o in outcomes.items()}
    assert len({outcome.prices for outcome in outcomes.values()}) == 1  # one session, one set of prices


def positions_sent(
    tmp_path: Path, scenario: Scenario, sender: bytes, rules: dict[str, ContractRules] | None = None
) -> int:
    """How many exchange.position transactions of `sender` the chain's final blocks hold."""
    ledger, _ = ledger_for(tmp_path, scenario, rules)
    try:
        store = ledger.stores[0]
        return sum(
            1
            for height in range(1, ledger.height("mgmc") + 1)
            for tx in store.block(height).txs
            if tx.sender == sender and tx.kind == "exchange.position"
        )
    finally:
        ledger.close()


def test_a_genset_member_without_the_phases_and_recommits_are_refused_up_front(tmp_path: Path) -> None:
    with_genset = synthetic_scenario(3, 4, seed=0, interval_hours=6.0)
    genset_mg = next(mg for mg in with_genset.microgrids if mg.gensets)
    ledger, keys_ = ledger_for(tmp_path, with_genset)
    members = [keys_[mg.name].public for mg in with_genset.microgrids]
    other = with_genset.microgrids[0]

    async def play() -> list[SessionOutcome]:
        agents = [
            DayAheadAgent(ledger, keys_[genset_mg.name], genset_mg, 6.0, members, SESSION, config=CONFIG),
            DayAheadAgent(ledger, keys_[other.name], other, 6.0, members, SESSION, phases=True,
                          config=DayAheadConfig(value_per_kwh=0.0, recommits=2)),
        ]  # fmt: skip
        return [await agent.run() for agent in agents]

    genset, recommitting = run_on(ledger, play)
    assert not genset.completed and "has gensets" in genset.reason and "refused up front" in genset.reason
    assert not recommitting.completed and "recommits 2" in recommitting.reason


def test_with_the_phases_a_genset_day_matches_the_simulation_too(tmp_path: Path) -> None:
    # the relaxed phase, each genset MG's own commitment MILP, then ADMM with commitments fixed: each MG
    # decides from the public prices and its own data, as in `allocate`
    scenario = synthetic_scenario(4, 4, seed=2, interval_hours=6.0)
    assert sum(bool(mg.gensets) for mg in scenario.microgrids) == 1
    ledger, keys_ = ledger_for(tmp_path, scenario)
    started = time.perf_counter()
    outcomes = run_session(ledger, keys_, scenario, phases=True)
    wall = time.perf_counter() - started
    allocation, record, positions = simulated(scenario)
    assert allocation.relaxed_iterations > 0 and allocation.recommits == 1 and allocation.stop == "kwh"
    for name, outcome in outcomes.items():
        assert outcome.completed, outcome.reason
        assert outcome.iterations == allocation.iterations and outcome.stop == "kwh"
        assert outcome.prices == record["prices"] and list(outcome.positions) == positions[name]
    print(f"\n{len(outcomes)} agents with a genset, {allocation.iterations} iterations: {wall:.2f} s wall")


class TamperedState:
    """A replica's state that reports interval 0's price one nano higher once the session has stepped twice."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get(self, key: bytes) -> bytes | None:
        raw = self.inner.get(key)
        if key == contract.prices_key(SESSION) and raw is not None:
            record = contract.session(self.inner, SESSION)
            if record is not None and record["iteration"] >= 3:
                prices = list(codec.decode(raw))
                prices[0] += 1
                return codec.encode(prices)
        return raw  # type: ignore[no-any-return]


class TamperedReplica:
    def __init__(self, ledger: EdgeLedger) -> None:
        self.ledger = ledger

    def state(self, role: str) -> Any:
        return TamperedState(self.ledger.state(role))

    def next_nonce(self, role: str, sender: bytes) -> int:
        return self.ledger.next_nonce(role, sender)

    def sign(self, role: str, keypair: keys.Keypair, kind: str, body: dict[str, Any], nonce: int) -> bytes:
        return self.ledger.sign(role, keypair, kind, body, nonce)

    async def submit(self, role: str, raw: bytes, timeout_s: float) -> Submission:
        return await self.ledger.submit(role, raw, timeout_s)

    async def wait_for(self, role: str, predicate: Callable[[Any], bool], timeout_s: float) -> bool:
        return await self.ledger.wait_for(role, lambda _s: predicate(self.state(role)), timeout_s)


def test_a_replica_that_reports_another_price_stops_its_agent_with_a_clear_error(tmp_path: Path) -> None:
    scenario = free_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    fooled = next(name for name in keys_ if name != coordinator)
    outcomes = run_session(ledger, keys_, scenario, replicas={fooled: TamperedReplica(ledger)}, timeout_s=1.0)
    reason = outcomes[fooled].reason
    assert "the chain's price for interval 0 after iteration 2" in reason and "not followed" in reason
    # the others saw the real price; the fooled MGMC stopped posting, so the coordinator closed the session
    assert f"{keys_[fooled].public.hex()[:16]}… did not post iteration 3" in outcomes[coordinator].reason
    assert not any(o.completed for o in outcomes.values())


def test_a_refusal_by_the_chain_is_named_and_never_retried(tmp_path: Path) -> None:
    # the chain holds a smaller maximum quantity for one MG than its MGMC's model knows (genesis and the
    # MGMC's config disagree): the chain refuses that member's first position, the agent says so and stops
    # (no retry: one position transaction), and the coordinator closes the session when it is not posted
    scenario = free_day(3, 4)
    coordinator = min((mg.name for mg in scenario.microgrids), key=lambda name: trading_key(name).public)
    strict = next(mg.name for mg in scenario.microgrids if mg.name != coordinator)
    override = {strict: ContractRules(max_quantity_kwh=0.001)}
    ledger, keys_ = ledger_for(tmp_path, scenario, override)
    outcomes = run_session(ledger, keys_, scenario, timeout_s=1.0)
    reason = outcomes[strict].reason
    assert reason.startswith("the chain refused this MGMC's exchange.position of iteration 0: rule-violation")
    assert "beyond the maximum 1" in reason
    assert f"{keys_[strict].public.hex()[:16]}… did not post iteration 0" in outcomes[coordinator].reason
    assert not any(o.completed for o in outcomes.values())
    sent = positions_sent(tmp_path, scenario, keys_[strict].public, override)
    assert sent == 0  # refused, never landed, never retried (the refusal is not in a block)


# --- the trading agent's switch (`market.dayahead`) ------------------------------------------------------


# the first interval's start: far enough ahead that the stage's deadline (trader.dayahead_deadline) is not near
T0 = float(int(time.time()) + 3600)


def market_agent(
    ledger: EdgeLedger, key: Keypair, scenario: Scenario, mg: str, record: Path, t0: float = T0
) -> MarketAgent:
    """A MarketAgent with what `run_dayahead` uses: its settings, its daemon's ledger and stop flag, its MG."""
    agent = object.__new__(MarketAgent)
    agent.s = SimpleNamespace(  # type: ignore[assignment]
        dayahead=True,
        dayahead_gensets=False,
        dayahead_clean=False,
        t0=t0,
        first_interval=0,
        interval_s=60.0,
        phase_timeout_s=1.0,
        record_file=record,
        intervals=None,
        dayahead_tariff_wait_s=0.0,  # no DSO on these chains (tests/edge/test_edge_dayahead_tariffs.py waits)
    )
    data_dir = record.parent / f"{mg}-data"  # its daemon's own (the day-ahead checkpoint goes there)
    data_dir.mkdir(exist_ok=True)
    agent.d = SimpleNamespace(  # type: ignore[assignment]
        ledger=ledger, stopping=asyncio.Event(), settings=SimpleNamespace(data_dir=data_dir)
    )
    agent.scenario, agent.dt = scenario, scenario.interval_hours
    agent.mg = next(m for m in scenario.microgrids if m.name == mg)
    agent.anonym, agent.name = key, key.public.hex()
    agent.interval, agent.phase, agent.done, agent.last, agent.dayahead = None, "starting", 0, {}, None
    agent.forward, agent.forward_traded = None, []
    return agent


def test_the_trading_agent_runs_the_stage_once_and_records_its_outcome(tmp_path: Path) -> None:
    assert (
        MarketSettings(
            scenario=Path("s.yaml"), anonym_key_file=Path("a.key"), t0=0.0, interval_s=9.0
        ).dayahead
        is False
    )
    scenario = free_day(3, 4)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    agents = {n: market_agent(ledger, k, scenario, n, tmp_path / f"{n}.jsonl") for n, k in keys_.items()}

    async def play() -> list[SessionOutcome]:
        return await asyncio.gather(*(a.run_dayahead() for a in agents.values()))

    outcomes = run_on(ledger, play)
    # the trading agent runs the default config: the value stop where `allocate` would use it
    allocation, record, positions = simulated(scenario, DayAheadConfig())
    stepped = allocation.iterations - (allocation.stop == "value")  # less the abandoned verdict round
    for (name, agent), outcome in zip(agents.items(), outcomes, strict=True):
        assert outcome.completed and outcome.session == reserved_name(
            min(keys_.values(), key=lambda k: k.public).public, f"dayahead/{int(T0)}/0"
        )
        assert outcome.prices == record["prices"] and list(outcome.positions) == positions[name]
        (line,) = (tmp_path / f"{name}.jsonl").read_text().splitlines()
        written = json.loads(line)["dayahead"]
        assert written["completed"] and written["prices"] == list(record["prices"])
        assert written["positions"] == positions[name] and written["iterations"] == stepped
        assert agent.status()["dayahead"] == {
            "completed": True,
            "reason": "",
            "iterations": stepped,
            "stop": allocation.stop,
        }


def test_a_failed_stage_is_recorded_with_its_reason(tmp_path: Path) -> None:
    scenario = free_day(3, 4)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    absent = next(name for name in keys_ if name != coordinator)
    # the first responses are awaited until the deadline's close (MGMCs start the stage apart): a first
    # interval 12 s away puts that close about 4 s from now (four 1-s phases and 0.25 s before it)
    t0 = time.time() + 12.0
    agents = [
        market_agent(ledger, k, scenario, n, tmp_path / f"{n}.jsonl", t0)
        for n, k in keys_.items()
        if n != absent
    ]

    async def play() -> list[SessionOutcome]:
        return await asyncio.gather(*(a.run_dayahead() for a in agents))

    run_on(ledger, play)
    for agent in agents:
        written = json.loads((tmp_path / f"{agent.mg.name}.jsonl").read_text())["dayahead"]
        assert not written["completed"] and written["reason"] == agent.status()["dayahead"]["reason"] != ""


# --- one replica per MGMC, over a real broker ---------------------------------------------------------------


@pytest.mark.parametrize("config", [CONFIG, DayAheadConfig()], ids=["kwh-stops", "default-value-stop"])
def test_each_mgmc_on_its_own_replica_over_mqtt_matches_the_simulation(
    tmp_path: Path, mosquitto: Any, config: DayAheadConfig
) -> None:
    # three MGMCs, each its own node key (an authority: all three finalise together), its own LevelDB
    # replica and its own MQTT link to a real Mosquitto, each agent reading only its own replica
    scenario = free_day(3, 4)
    nodes = {mg.name: Keypair.from_seed(hashlib.sha256(f"node/{mg.name}".encode()).digest())
             for mg in scenario.microgrids}  # fmt: skip
    keys_ = {mg.name: trading_key(mg.name) for mg in scenario.microgrids}
    genesis = Genesis(
        chain="mgmc-dayahead-live", time=0, authorities=tuple(sorted(k.public for k in nodes.values())),
        accounts=(*(Account(k.public, ("mgmc",)) for k in nodes.values()),
                  *(Account(keys_[mg.name].public, ("anonym",), mg.name, rules=chain_rules(mg.rules))
                    for mg in scenario.microgrids)),
        contracts=("market", "exchange"),
    )  # fmt: skip
    path = tmp_path / "mgmc-genesis.json"
    path.write_text(json.dumps(genesis.to_json()))
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    opening = starting_prices(scenario)

    async def play() -> tuple[list[SessionOutcome], float]:
        links, ledgers = [], []
        for mg in scenario.microgrids:
            link = MqttLink(f"mgmc-{mg.name}", mosquitto.host, mosquitto.port)
            spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / f"{mg.name}.db", block_period_ms=50,
                             round_timeout_ms=1000, wal_fsync=False)  # fmt: skip
            links.append(link)
            ledgers.append(EdgeLedger(nodes[mg.name], link, "feeder", [spec]))
        try:
            for link, ledger in zip(links, ledgers, strict=True):
                link.start()
                await asyncio.wait_for(link.connected.wait(), 10)
                ledger.start()
            agents = [
                DayAheadAgent(ledger, keys_[mg.name], mg, scenario.interval_hours, members, SESSION, 0, opening,
                              config, 10.0)
                for ledger, mg in zip(ledgers, scenario.microgrids, strict=True)
            ]  # fmt: skip
            started = time.perf_counter()
            outcomes = await asyncio.wait_for(asyncio.gather(*(a.run() for a in agents)), 120)
            return outcomes, time.perf_counter() - started
        finally:
            for link, ledger in zip(links, ledgers, strict=True):
                link.stop()
                ledger.close()

    outcomes, wall = asyncio.run(play())
    allocation, record, positions = simulated(scenario, config)
    stepped = allocation.iterations - (allocation.stop == "value")  # less a value stop's verdict round
    for mg, outcome in zip(scenario.microgrids, outcomes, strict=True):
        assert outcome.completed, outcome.reason
        assert outcome.stop == allocation.stop
        assert outcome.iterations == stepped and outcome.prices == record["prices"]
        assert list(outcome.positions) == positions[mg.name]
    print(f"\n3 MGMCs on their own replicas over MQTT, {allocation.iterations} iterations: {wall:.2f} s wall")


def test_a_second_run_of_the_same_session_reads_it_and_another_of_the_same_name_is_not_joined(
    tmp_path: Path,
) -> None:
    # the same session run again (a restart after the close: test_edge_dayahead_restart.py) reads the
    # first's outcome off the chain; a session of the same name that is not the one configured (here from
    # interval 1) is not joined, by the coordinator either (it opens nothing over an existing session)
    scenario = free_day(3, 4)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    opening = starting_prices(scenario)

    def agents(first_interval: int) -> list[DayAheadAgent]:
        return [
            DayAheadAgent(ledger, keys_[mg.name], mg, scenario.interval_hours, members, SESSION, first_interval,
                          opening, CONFIG, 1.0)
            for mg in scenario.microgrids
        ]  # fmt: skip

    async def thrice() -> list[list[SessionOutcome]]:
        return [await asyncio.gather(*(a.run() for a in agents(t))) for t in (0, 0, 1)]

    first, again, other = run_on(ledger, thrice)
    assert all(o.completed for o in first) and again == first
    for outcome in other:
        assert (
            outcome.reason
            == f"session {SESSION!r} has first_interval 0 where this MGMC expects 1: not joined"
        )
    assert reopen(tmp_path, scenario)["closed"]


class CoordinatorBreaks(DayAheadAgent):
    """An agent whose own side fails with an unexpected error at iteration 2 (a solver that gave up)."""

    async def _post(self, k: int, positions: tuple[int, ...], says_settled: bool = False) -> None:
        if k == 2:
            raise RuntimeError("the solver gave up")
        await super()._post(k, positions, says_settled)


def test_an_unexpected_error_at_the_coordinator_closes_the_session_and_fails_the_stage(
    tmp_path: Path,
) -> None:
    scenario = free_day(3, 4)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    outcomes = run_session(ledger, keys_, scenario, make={coordinator: CoordinatorBreaks}, timeout_s=1.0)
    assert outcomes[coordinator].reason == (
        "RuntimeError: the solver gave up; the coordinator closed the session at iteration 2"
    )
    for name, outcome in outcomes.items():
        assert not outcome.completed
        if name != coordinator:  # whether it saw the close before its answer, before its post or after
            assert outcome.reason in (
                "the coordinator closed the session at iteration 2 before the stop",
                "the coordinator closed the session at iteration 2 instead of stepping it (its posts "
                "abandoned): the stage failed",
                "the chain refused this MGMC's exchange.position of iteration 2: closed: exchange session "
                f"{SESSION!r} is closed",
            )
    record = reopen(tmp_path, scenario)
    assert record["closed"] and record["iteration"] == 2
