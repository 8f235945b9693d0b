"""The deployed edge pays the day-ahead make-whole (uplift): each MGMC claims from its own model after the clear,
the chain's uplift contract pays once the day settled, and the money moved is the simulation's.

Independent agents, each with only its own MG and trading key, run the session with the genset phases and the
forward stage on one real single-authority `EdgeLedger` whose genesis enables the uplift contract; the day
(4 MGs × 4 six-hour intervals, seed 2) has genset MG mg003 committed at prices that do not support it: the
simulation (`simulate`, market dayahead, on `ChainVenue`) pays it 41.18 from the three others. Then each agent's
day stages post its claim (`day_stages.run_uplift_claim`), the buyers settle every forward trade, and each
agent's after-day stage (`day_stages.run_uplift`) has the chain settle the uplift: every MG's credit, charge and
balance change equal the simulation's to the micro-unit, each agent records its part, and an agent restarted
after the day posts no second claim and reads the same outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import BLOCK_MS
from test_edge_dayahead_session import CONFIG, SESSION, free_day, ledger_for, market_agent, run_on
from test_edge_forward import trading_agent

from peergrid_controller.chain_venue import ChainVenue, chain_rules, key_for
from peergrid_controller.dayahead import starting_prices
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.simrecords import SimulationConfig
from peergrid_controller.simulate import simulate
from peergrid_controller.synth import synthetic_scenario
from peergrid_controller.uplift import widest_spread
from peergrid_edge import day_stages, dayahead_uplift
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.dayahead_uplift import UpliftStage, claim_for
from peergrid_edge.exchange_io import SessionFailed, submit_final
from peergrid_edge.forward_agent import ForwardAgent, ForwardOutcome
from peergrid_edge.link import MqttLink
from peergrid_edge.replicas import ChainSpec, EdgeLedger, Submission
from peergrid_ledger import query
from peergrid_ledger.contracts import uplift
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

MICRO = 10**6


def owed_day() -> Scenario:
    scenario = synthetic_scenario(4, 4, seed=2, interval_hours=6.0)
    assert [mg.name for mg in scenario.microgrids if mg.gensets] == ["mg003"]
    return scenario


def bounded(mg: Microgrid) -> dict[str, Any]:
    rules = chain_rules(mg.rules)
    return {**rules, "max_quantity": min(int(rules["max_quantity"]), 10**9)}


def uplift_ledger(tmp_path: Path, scenario: Scenario) -> tuple[EdgeLedger, dict[str, Keypair]]:
    """A single-authority MGMC chain with the market, exchange and uplift contracts; the MGs' keys are the
    chain venue's (`key_for`), so the clear breaks ties as the simulation's does. Each MG's chain rules set a
    max_quantity (its own, or 10^9 Wh an interval: it binds nothing), without which the chain takes no gain
    claim (review17 U-C). The DSO prices no cover here, so the genesis names the chain's own spread,
    `uplift_max_spread`: the widest retail - feed-in of the day (controller `uplift.widest_spread`); without
    it the chain's bound is 0 and every gain is claimed at 0 (review18 U-1)."""
    authority = Keypair.from_seed(hashlib.sha256(b"edge-uplift/authority").digest())
    keys_ = {mg.name: key_for(scenario.name, mg.name) for mg in scenario.microgrids}
    genesis = Genesis(
        chain="mgmc-uplift", time=0, authorities=(authority.public,),
        accounts=(Account(authority.public, ("mgmc",)),
                  *(Account(keys_[mg.name].public, ("anonym",), mg.name, rules=bounded(mg))
                    for mg in scenario.microgrids)),
        contracts=("market", "exchange", "uplift"),
        params=Params(credit_limit=10**15, uplift_max_spread=widest_spread(scenario.microgrids)),
    )  # fmt: skip
    return ledger_on(genesis, authority, tmp_path), keys_


def ledger_on(genesis: Genesis, authority: Keypair, tmp_path: Path) -> EdgeLedger:
    """An edge's replica of the MGMC chain `genesis` describes (50-ms blocks, no broker: one authority)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "mgmc-genesis.json"
    path.write_text(json.dumps(genesis.to_json()))
    spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=BLOCK_MS,
                     round_timeout_ms=500, wal_fsync=False)  # fmt: skip
    return EdgeLedger(authority, MqttLink("test", "127.0.0.1", 9), "feeder", [spec])


async def session_and_forward(
    ledger: EdgeLedger, keys_: dict[str, Keypair], scenario: Scenario
) -> dict[str, ForwardOutcome]:
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    dt, opening = scenario.interval_hours, starting_prices(scenario)
    sessions = [
        DayAheadAgent(ledger, keys_[mg.name], mg, dt, members, SESSION, 0, opening, CONFIG, 10.0, phases=True)
        for mg in scenario.microgrids
    ]
    outcomes = await asyncio.wait_for(asyncio.gather(*(a.run() for a in sessions)), 180)
    assert all(o.completed for o in outcomes), [o.reason for o in outcomes]
    forward = [
        ForwardAgent(ledger, keys_[mg.name], mg, dt, SESSION, timeout_s=10.0) for mg in scenario.microgrids
    ]
    done = await asyncio.wait_for(asyncio.gather(*(a.run() for a in forward)), 300)
    assert all(f.cleared for f in done), [f.reason for f in done]
    return {mg.name: f for mg, f in zip(scenario.microgrids, done, strict=True)}


async def settle_every_trade(ledger: EdgeLedger, keys_: dict[str, Keypair], intervals: int) -> int:
    """Each buyer pays its forward trades for all of it (this chain: the first settle pays)."""
    by_key = {k.public: k for k in keys_.values()}
    state = ledger.state("mgmc")
    count = 0
    for t in range(intervals):
        for tid, tr in query.trades(state, t):
            body = {"trade": tid, "delivered": tr["quantity"]}
            await submit_final(ledger, by_key[tr["buyer"]], "settle", body, 10.0, lambda: None)
            count += 1
    return count


async def refusal(ledger: EdgeLedger, key: Keypair) -> str:
    """Why the chain refuses one more claim from `key` ("" if it took it)."""
    try:
        body = {"session": SESSION, "gain": 1, "surplus": 0}
        await submit_final(ledger, key, "uplift.claim", body, 10.0, lambda: None)
    except SessionFailed as exc:
        return str(exc)
    return ""


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def balances(ledger: EdgeLedger, keys_: dict[str, Keypair]) -> dict[str, int]:
    return {name: query.balance(ledger.state("mgmc"), k.public) for name, k in keys_.items()}


def test_the_edge_pays_the_simulations_make_whole_to_the_micro_unit_and_a_restart_pays_nothing_twice(
    tmp_path: Path,
) -> None:
    scenario = owed_day()
    reference = simulate(
        scenario,
        SimulationConfig(market="dayahead", with_central=False, dayahead=CONFIG),
        lambda s: ChainVenue(s),
    ).dayahead
    assert reference is not None and reference.uplift_funded
    credit = {n: round(v * MICRO) for n, v in reference.uplift_credit.items()}
    charge = {n: round(v * MICRO) for n, v in reference.uplift_charge.items()}
    assert set(credit) == {"mg003"} and credit["mg003"] > 40 * MICRO and len(charge) == 3
    ledger, keys_ = uplift_ledger(tmp_path / "chain", scenario)

    async def play() -> dict[str, Any]:
        ledger.start()
        try:
            forward = await session_and_forward(ledger, keys_, scenario)
            agents = {
                mg.name: trading_agent(ledger, keys_[mg.name], scenario, mg, tmp_path / f"{mg.name}.jsonl")
                for mg in scenario.microgrids
            }
            for name, agent in agents.items():
                agent.forward = forward[name]
            claims = {name: await day_stages.run_uplift_claim(agent) for name, agent in agents.items()}
            again_claim = await day_stages.run_uplift_claim(agents["mg001"])  # its stage run twice: no repost
            duplicate = await refusal(ledger, keys_["mg003"])
            # the day: nothing settled yet, so nobody's after-day stage can settle the uplift
            early = UpliftStage(ledger, keys_["mg001"], scenario.microgrids[0], 6.0, SESSION, wait_s=0.3)
            not_yet = await early.settle()
            settled = await settle_every_trade(ledger, keys_, scenario.intervals)
            before = balances(ledger, keys_)
            outcomes = await asyncio.gather(*(day_stages.run_uplift(agent) for agent in agents.values()))
            after = balances(ledger, keys_)
            # a restarted agent: no forward outcome in memory; the session read off the chain, no second claim
            nonce = ledger.next_nonce("mgmc", keys_["mg003"].public)
            again = trading_agent(
                ledger, keys_["mg003"], scenario, scenario.microgrids[2], tmp_path / "again.jsonl"
            )
            repeat = await day_stages.run_uplift(again)
            nonce_after = ledger.next_nonce("mgmc", keys_["mg003"].public)
            late = await refusal(ledger, keys_["mg003"])
            done = uplift.outcome(ledger.state("mgmc"), SESSION)
            return dict(claims=claims, not_yet=not_yet, settled=settled, before=before, after=after,
                        outcomes=dict(zip(agents, outcomes, strict=True)), repeat=repeat,
                        nonces=(nonce, nonce_after), duplicate=duplicate, late=late, done=done,
                        again_claim=again_claim)  # fmt: skip
        finally:
            ledger.close()

    r = asyncio.run(play())
    claims = r["claims"]
    assert all(c.posted and not c.reason for c in claims.values())
    assert (
        claims["mg003"].gain == credit["mg003"]
    )  # the payee's claim is its credit: ceil(gain) in micro-units
    assert all(c.gain == 0 for name, c in claims.items() if name != "mg003")
    assert not r["not_yet"].settled and "12 of the 12 trades" in r["not_yet"].reason
    assert "retried at the trading agent's next start" in r["not_yet"].reason
    assert r["settled"] > 0
    moved = {name: r["after"][name] - r["before"][name] for name in keys_}
    assert moved == {name: credit.get(name, 0) - charge.get(name, 0) for name in keys_}
    for name, outcome in r["outcomes"].items():
        assert outcome is not None and outcome.settled and outcome.funded, outcome
        assert (outcome.credit, outcome.charge, outcome.withheld, outcome.owed) == (
            credit.get(name, 0),
            charge.get(name, 0),
            0,
            0,
        )
    assert sum(o.by_us for o in r["outcomes"].values()) == 1  # one settle landed, the others read it
    assert r["repeat"] == r["outcomes"]["mg003"].__class__(
        **{**r["outcomes"]["mg003"].__dict__, "by_us": False}
    )
    assert r["nonces"][0] == r["nonces"][1]  # the restart sent nothing
    assert "duplicate" in r["duplicate"] and "already claimed" in r["duplicate"]
    assert "closed: late" in r["late"] and "is settled" in r["late"]
    earlier = r["again_claim"]
    assert not earlier.posted and not earlier.reason and earlier.gain == 0 == claims["mg001"].gain
    assert earlier.surplus == claims["mg001"].surplus
    assert r["done"] is not None and r["done"]["funded"]
    # each agent's record file holds its claim and its part, with the stage's times
    for name in keys_:
        docs = read_records(tmp_path / f"{name}.jsonl")
        claim_doc = next(d["uplift_claim"] for d in docs if "uplift_claim" in d)
        part = next(d["uplift"] for d in docs if "uplift" in d)
        assert claim_doc["gain"] == claims[name].gain and claim_doc["surplus"] == claims[name].surplus
        assert part["credit"] == credit.get(name, 0) and part["charge"] == charge.get(name, 0)


def test_a_chain_without_the_contract_skips_the_stage_and_an_unknown_session_is_a_clear_error(
    tmp_path: Path,
) -> None:
    scenario = owed_day()
    plain, plain_keys = ledger_for(tmp_path / "plain", scenario)  # genesis: market and exchange only
    genset = scenario.microgrids[2]

    async def skipped() -> Any:
        plain.start()
        try:
            stage = UpliftStage(plain, plain_keys["mg003"], genset, 6.0, SESSION, wait_s=0.5)
            nonce = plain.next_nonce("mgmc", plain_keys["mg003"].public)
            claim, outcome = await stage.claim(), await stage.settle()
            assert plain.next_nonce("mgmc", plain_keys["mg003"].public) == nonce  # nothing was sent
            with pytest.raises(ValueError, match="no exchange session 'nope'"):
                claim_for(genset, 6.0, plain.state("mgmc"), "nope", plain_keys["mg003"].public)
            return claim, outcome
        finally:
            plain.close()

    claim, outcome = asyncio.run(skipped())
    assert not claim.posted and "does not enable the uplift contract" in claim.reason
    assert not outcome.settled and "does not enable the uplift contract" in outcome.reason


def test_the_trading_agents_forward_stage_posts_each_mgs_claim_after_the_clear_and_records_it(
    tmp_path: Path,
) -> None:
    scenario = free_day(3, 4)
    ledger, keys_ = uplift_ledger(tmp_path / "chain", scenario)
    agents = {n: market_agent(ledger, k, scenario, n, tmp_path / f"{n}.jsonl") for n, k in keys_.items()}

    async def play() -> list[ForwardOutcome]:
        sessions = await asyncio.gather(*(a.run_dayahead() for a in agents.values()))
        assert all(o.completed for o in sessions)
        return await asyncio.gather(*(a.run_forward() for a in agents.values()))

    outcomes = run_on(ledger, play)
    state = ledger.state("mgmc")
    for (name, key), outcome in zip(keys_.items(), outcomes, strict=True):
        assert outcome.cleared
        docs = read_records(tmp_path / f"{name}.jsonl")
        # each line's stage (a `day` stamp beside it is the record file's, review18 K-1)
        assert [next(k for k in doc if k != "day") for doc in docs] == ["dayahead", "forward", "uplift_claim"]
        recorded = docs[2]["uplift_claim"]
        on_chain = uplift.claim(state, outcome.session, key.public)
        assert on_chain is not None and recorded["posted"] and recorded["reason"] == ""
        assert (on_chain["gain"], on_chain["surplus"]) == (recorded["gain"], recorded["surplus"])
        # its surplus is its conventional day less its committed one, as its forward stage measured them
        assert recorded["surplus"] == max(
            0, math.floor(round((outcome.conventional - outcome.day_cost) * MICRO, 3))
        )
        assert set(docs[2]["stage_times"]) == {"start", "end"}


def test_a_solver_error_leaves_no_claim_and_is_the_stages_reason_never_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = owed_day()
    ledger, keys_ = uplift_ledger(tmp_path / "chain", scenario)

    windows: list[Any] = []

    def figures(*args: Any) -> Any:
        windows.append(args[4])  # (state, session, me, name, window, max_spread)
        loop_threads.append(threading.get_ident())
        return args

    threads: list[int] = []
    loop_threads: list[int] = []

    def infeasible(*_args: Any) -> Any:
        threads.append(threading.get_ident())
        raise RuntimeError("the MG's day MILP is infeasible")

    monkeypatch.setattr(dayahead_uplift, "chain_figures", figures)
    monkeypatch.setattr(dayahead_uplift, "claim_from", infeasible)

    async def play() -> Any:
        stage = UpliftStage(ledger, keys_["mg003"], scenario.microgrids[2], 6.0, SESSION, wait_s=0.3,
                            window=range(1, 3))  # fmt: skip
        return await stage.claim(), await stage.settle()

    claim, outcome = run_on(ledger, play)
    assert windows == [range(1, 3)]  # the stage claims over its own window (test_edge_uplift_window.py)
    # its MILPs ran in a thread, never on the event loop's (review18 C-3; the chain figures are read there)
    assert len(threads) == 1 and loop_threads and threads[0] != loop_threads[0]
    assert not claim.posted and claim.reason == "RuntimeError: the MG's day MILP is infeasible"
    assert not outcome.settled and outcome.reason == f"no exchange session {SESSION!r} on this replica"


class NeverFinal:
    """A replica whose `uplift.settle` lands but is reported not final in time (it may still land)."""

    def __init__(self, ledger: EdgeLedger) -> None:
        self.inner = ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def submit(self, role: str, raw: bytes, timeout_s: float) -> Submission:
        landed = await self.inner.submit(role, raw, timeout_s)
        return Submission(False, "not final within 0.1 s", final=False) if landed.landed else landed


async def hand_day(ledger: EdgeLedger, keys_: dict[str, Keypair], delivered: int) -> None:
    """mg001 sells mg002 1000 Wh at 100 micro-units per Wh in chain intervals 0 and 1 (the exchange, by hand);
    mg001 claims a gain of 50,000, mg002 a surplus of 80,000; mg002 settles both trades for `delivered`."""
    seller, buyer = keys_["mg001"], keys_["mg002"]

    async def send(key: Keypair, kind: str, body: dict[str, Any]) -> None:
        await submit_final(ledger, key, kind, body, 10.0, lambda: None)

    opener = min((seller, buyer), key=lambda k: k.public)
    members = sorted(k.public for k in (seller, buyer))
    prices = [100_000_000, 100_000_000]
    opening = {
        "session": SESSION,
        "first_interval": 0,
        "members": members,
        "prices": prices,
        "rho": 5_000_000,
    }
    await send(opener, "exchange.open", opening)
    for key, q in ((seller, 1000), (buyer, -1000)):
        await send(key, "exchange.position", {"session": SESSION, "iteration": 0, "positions": [q, q]})
    await send(opener, "exchange.step", {"session": SESSION, "iteration": 0, "rho": 5_000_000})
    await send(opener, "exchange.close", {"session": SESSION, "iteration": 1})
    for key, q in ((seller, 1000), (buyer, -1000)):
        await send(key, "exchange.accept", {"session": SESSION, "positions": [q, q], "clean": False})
    await send(opener, "exchange.clear", {"session": SESSION})
    await send(seller, "uplift.claim", {"session": SESSION, "gain": 50_000, "surplus": 0})
    await send(buyer, "uplift.claim", {"session": SESSION, "gain": 0, "surplus": 80_000})
    for t in (0, 1):
        for tid, _ in query.trades(ledger.state("mgmc"), t):
            await send(buyer, "settle", {"trade": tid, "delivered": delivered})


@pytest.mark.parametrize("delivered", [1000, 999])
def test_a_settle_not_final_in_time_is_read_off_the_chain_and_a_short_delivery_withholds_the_credit(
    tmp_path: Path, delivered: int
) -> None:
    scenario = free_day(2, 2)
    ledger, keys_ = uplift_ledger(tmp_path / "chain", scenario)
    slow = NeverFinal(ledger)

    async def play() -> Any:
        await hand_day(ledger, keys_, delivered)
        before = balances(ledger, keys_)
        stages = [UpliftStage(slow, keys_[n], mg, 12.0, SESSION, wait_s=5.0, grace_s=0.2)  # type: ignore[arg-type]
                  for n, mg in zip(("mg001", "mg002"), scenario.microgrids, strict=True)]  # fmt: skip
        outcomes = await asyncio.gather(*(stage.settle() for stage in stages))
        return before, balances(ledger, keys_), outcomes

    before, after, (payee, payer) = run_on(ledger, play)
    assert payee.settled and payer.settled and not payee.by_us and not payer.by_us  # landed, never "final"
    if delivered == 1000:
        assert (payee.credit, payee.withheld, payer.charge) == (50_000, 0, 50_000)
        assert after["mg001"] - before["mg001"] == 50_000 == before["mg002"] - after["mg002"]
    else:  # one Wh short on a chain without cover prices: counted against both, so mg001's credit is withheld
        assert (payee.credit, payee.withheld, payer.charge) == (0, 50_000, 0)
        assert after == before
