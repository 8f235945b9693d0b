"""One MG's side of the DSO's re-bargaining (design step 6) against real chain state, without a network: two
`LocalChain`s (the MGMC chain and the DSO chain) stand in for the replicas, sealing a block per transaction;
a wait either sees its condition at once or lets a scripted "peer" act, like a final block arriving.

Review M2: an interval whose closer is gone (or whose sellers all dropped out) is still closed, a timed-out
wait never counts as closed, and the trades an MG answers with are those of the closing it saw closed.
Review M3: the addressed MG opens the contract of the DSO's iteration it answers, waiting for its replica to
hold it, never the newest one it happens to hold.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from edge_helpers import pv_battery_schedule

from peergrid_controller.model import Microgrid
from peergrid_controller.moves import BargainingConfig, Participant
from peergrid_controller.schedule import MgSchedule
from peergrid_edge import chain_bargaining, dso_answers
from peergrid_edge.chain_closing import close_interval
from peergrid_edge.dso_answers import DsoAnswers, Market, answer_iteration
from peergrid_edge.trader import MarketAgent
from peergrid_ledger import keyspace as ks
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair, seal
from peergrid_ledger.state import read_obj

T = 5
FAR = 2**62  # a reopening's deadline far off


class Chains:
    """Both chains of one MGMC's node; `wait_for` runs the next scripted peer action when the condition does
    not hold yet (one per wait, as if a block arrived), then looks again."""

    def __init__(self) -> None:
        self.authority, self.dso, self.node = Keypair.generate(), Keypair.generate(), Keypair.generate()
        self.me, self.peer, self.buyer = Keypair.generate(), Keypair.generate(), Keypair.generate()
        anonyms = [Account(k.public, ("anonym",), balance=10**9) for k in (self.me, self.peer, self.buyer)]
        self.mgmc = LocalChain(Genesis(
            chain="mgmc", time=0, authorities=(self.authority.public,),
            accounts=(Account(self.dso.public, ("dso",)), *anonyms), contracts=("market",),
            params=Params(credit_limit=10**12, max_reopens=3),
        ), self.authority)  # fmt: skip
        self.dso_chain = LocalChain(Genesis(
            chain="dso", time=0, authorities=(self.authority.public,),
            accounts=(Account(self.dso.public, ("dso",)), Account(self.node.public, ("mgmc",))), contracts=(),
        ), self.authority)  # fmt: skip
        self.peers: list[Callable[[], None]] = []
        self.waits: list[float] = []
        self.submitted: list[tuple[str, str]] = []

    def chain(self, role: str) -> LocalChain:
        return self.mgmc if role == "mgmc" else self.dso_chain

    def state(self, role: str) -> Any:
        return self.chain(role).state

    def do(self, role: str, key: Keypair, kind: str, body: dict[str, Any]) -> bool:
        result = self.chain(role).sign_and_submit(key, kind, body)
        self.chain(role).seal()
        return result.ok

    async def wait_for(self, role: str, predicate: Callable[[Any], bool], timeout_s: float) -> bool:
        self.waits.append(timeout_s)
        if predicate(self.state(role)):
            return True
        if self.peers:
            self.peers.pop(0)()
        return predicate(self.state(role))


def agent_on(chains: Chains) -> MarketAgent:
    agent = object.__new__(MarketAgent)
    agent.s = SimpleNamespace(phase_timeout_s=0.5)  # type: ignore[assignment]
    agent.d = SimpleNamespace(keypair=chains.node, ledger=chains)  # type: ignore[assignment]
    agent.anonym = chains.me
    agent.cfg = BargainingConfig(max_rounds=3)
    agent.phase = ""

    async def submit(role: str, key: Keypair, kind: str, body: dict[str, Any]) -> bool:
        chains.submitted.append((role, kind))
        return chains.do(role, key, kind, body)

    agent._submit = submit  # type: ignore[method-assign]
    return agent


def offer(chains: Chains, who: Keypair, quantity: int = 4000) -> None:
    body = {"interval": T, "round": 1, "price": 200, "quantity": quantity, "clean": True}
    assert chains.do("mgmc", who, "offer", body)


def bought(chains: Chains, quantity: int) -> None:
    demands = [{"seller": chains.me.public, "quantity": quantity}]
    assert chains.do("mgmc", chains.buyer, "bid", {"interval": T, "round": 1, "demands": demands})


def test_an_open_interval_is_closed_by_a_backup_closer_and_a_timed_out_wait_is_not_closed() -> None:
    chains = Chains()
    agent = agent_on(chains)
    # no offer at all: nothing to close, said plainly, nothing submitted
    assert asyncio.run(close_interval(agent, T, None)) is False and chains.submitted == []
    offer(chains, chains.me)
    bought(chains, 1500)
    # the designated closer (the peer) is gone: after a phase timeout this MG closes it itself
    assert asyncio.run(close_interval(agent, T, chains.peer.public)) is True
    assert chains.submitted == [("mgmc", "trade")] and chains.waits == [0.5, 0.5]  # bounded waits
    assert [tr["quantity"] for _, tr in query.trades(chains.state("mgmc"), T)] == [1500]
    # already closed: nothing more
    assert asyncio.run(close_interval(agent, T, None)) is True and len(chains.submitted) == 1
    # an MG that cannot close (not a participant of the interval) reports it open, never closed
    other = Chains()
    offer(other, other.peer)
    outsider = agent_on(other)
    assert asyncio.run(close_interval(outsider, T, None)) is False
    assert not contract.closed(other.state("mgmc"), T)


def test_an_interval_whose_sellers_all_dropped_out_still_closes() -> None:
    """The barrier left every seller out (they missed a phase): the lowest buyer closes the interval, so no
    MG dispatches with no trades while the others later close with trades that include it."""
    chains = Chains()
    agent = agent_on(chains)
    offer(chains, chains.peer)
    assert chains.do("mgmc", chains.me, "bid", {"interval": T, "round": 0, "demands": []})
    me = Participant(chains.me.public.hex(), None, None, clean=True)  # type: ignore[arg-type]
    rounds = chain_bargaining._rounds(agent, T, me, None, set(), {chains.me.public}, 1)
    assert asyncio.run(rounds) == []
    assert contract.closed(chains.state("mgmc"), T) and chains.submitted == [("mgmc", "trade")]


def small_mg() -> tuple[Microgrid, MgSchedule, Market, DsoAnswers]:
    mg, sched = pv_battery_schedule(8)
    plan = sched.dispatch(1.5)
    market = Market(
        Participant("me", sched.response_curve(0.05, 0.25), mg.rules, clean=True), 0.05, 0.25, 0.0
    )
    return mg, sched, market, DsoAnswers(plan, plan.p2p_net_export[0] + plan.dso_net_export[0], 1.5)


def test_after_the_dso_reopened_the_mg_answers_with_the_closing_it_saw_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The DSO reopened the interval; this MG's re-bargaining ends without a closing (its closer died). The
    MG closes it as backup and answers with that closing's trades, not with the empty trades of an open
    interval (the old code read them after a timed-out wait)."""
    chains = Chains()
    agent = agent_on(chains)
    mg, sched, market, answers = small_mg()
    agent.mg, agent.dt = mg, 1.0
    offer(chains, chains.me)
    bought(chains, 1500)
    assert chains.do("mgmc", chains.buyer, "trade", {"interval": T})
    reopen = {"interval": T, "iteration": 1, "ref": bytes(32), "until": FAR}
    assert chains.do("mgmc", chains.dso, "market.reopen", reopen)
    played: list[int] = []

    async def rounds_without_a_closing(agent: Any, t: int, *_: Any) -> list[dict[str, Any]]:
        played.append(t)  # the buyer asks for more in the new round; nobody closes
        demands = [{"seller": chains.me.public, "quantity": 2500}]
        assert chains.do("mgmc", chains.buyer, "move", {"interval": T, "round": 2, "demands": demands})
        return [{"round": 2}]

    monkeypatch.setattr(dso_answers, "rebargain", rounds_without_a_closing)
    asyncio.run(answer_iteration(agent, T, 1, False, sched, market, answers, reopen=1))
    [entry] = answers.rebargains
    assert played == [T] and entry["reopened"] and entry["closed"] is True
    [(tid, latest)] = query.trades(chains.state("mgmc"), T)
    assert entry["trades"][0]["id"] == tid.hex() and latest["quantity"] == 2500
    assert answers.p2p_net_kw == pytest.approx(2.5) and entry["net_p2p_kwh"] == pytest.approx(2.5)
    assert chains.submitted == [("mgmc", "trade"), ("dso", "equivalent_injection")]


def test_no_reopening_by_the_dso_means_no_rebargaining_and_no_wait() -> None:
    chains = Chains()
    agent = agent_on(chains)
    mg, sched, market, answers = small_mg()
    agent.mg, agent.dt = mg, 1.0
    asyncio.run(answer_iteration(agent, T, 1, False, sched, market, answers, reopen=None))
    assert answers.rebargains[0]["reopened"] is False and chains.waits == []
    assert chains.submitted == [("dso", "equivalent_injection")]
    assert answers.plan.p2p_net_export[0] == pytest.approx(1.5)  # the trades it holds stand


def contract_doc(iteration: int, max_w: int) -> dict[str, Any]:
    return {"mg": "mg", "interval": T, "min_injection_w": None, "max_injection_w": max_w, "reason": "v",
            "iteration": iteration}  # fmt: skip


def seal_contract(chains: Chains, doc: dict[str, Any]) -> None:
    ciphertext = seal(chains.node.public, json.dumps(doc).encode())
    body = {"interval": T, "to": chains.node.public, "ciphertext": ciphertext}
    assert chains.do("dso", chains.dso, "adjustment_contract", body)


def test_the_addressed_mg_opens_the_contract_of_the_iteration_it_answers() -> None:
    chains = Chains()
    agent = agent_on(chains)
    seal_contract(chains, contract_doc(1, 9000))
    seal_contract(chains, contract_doc(2, 8000))
    # iteration 1 is answered with iteration 1's contract, not the newest one the replica holds
    opened = asyncio.run(agent._open_contract(T, 1))
    assert opened is not None and opened[0]["max_injection_w"] == 9000
    assert opened[1] == read_obj(chains.state("dso"), ks.adjustment_index(chains.node.public, T))[0]
    # iteration 3's contract is not in this (lagging) replica yet: it waits until a block brings it
    chains.peers.append(lambda: seal_contract(chains, contract_doc(3, 7000)))
    opened = asyncio.run(agent._open_contract(T, 3))
    assert opened is not None and opened[0]["iteration"] == 3 and opened[0]["max_injection_w"] == 7000
    # never sealed: a bounded wait, then nothing (never the previous iteration's)
    assert asyncio.run(agent._open_contract(T, 4)) is None
    assert chains.waits[-1] == 3 * 0.5
