"""A make-whole claim retried in the idle that ends "not final" or is cut leaves its transaction pending on the
anonym's next nonce (review19 F5). Before, the interval's first move signed the same nonce, the pool refused it
as "pending", `Replicas.submit` waited on it, and once the claim landed the move came back NONCE_TAKEN and the
MG sat the interval out, unheard. Now the rest of the idle waits for the claim to land or be evicted
(`agent_day.claim_in_idle` -> `own_nonce.nonce_free`), a move signed while it is still pending waits for it first
(`MarketAgent._submit_outcome`), and a move lost all the same is signed again once.

On a real single-authority MGMC chain (EdgeLedger, its own mempool and consensus): the chain is halted so the
claim is not final within its submit timeout, and the halt is lifted a few blocks after it (in the idle), or
once the interval's offer is on its way, so the claim lands then (the "claim" is a transaction of the anonym sent
as the real one is, `exchange_io.submit_final`). The halt is lifted by the test, not by a timer racing the slot,
where the order matters."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path
from types import MethodType, SimpleNamespace
from typing import Any

import pytest

from peergrid_edge import agent_day, chain_bargaining, day_stages, own_nonce
from peergrid_edge.exchange_io import NotFinal, submit_final
from peergrid_edge.link import MqttLink
from peergrid_edge.replicas import NONCE_TAKEN, ChainSpec, EdgeLedger, Submission
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.consensus.app import Accepted
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.tx import decode_tx

SUBMIT_S = 1.0  # the claim's submit timeout
PHASE_S = 5.0  # the agent's phase: what its move waits at most for the claim (a margin on a loaded machine)
BLOCK_S = 0.05
CHAIN = "mgmc-nonce"


def seeded(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(f"edge-nonce/{name}".encode()).digest())


ANONYM, AUTHORITY = seeded("anonym"), seeded("authority")


def ledger(tmp_path: Path) -> EdgeLedger:
    genesis = Genesis(
        chain=CHAIN, time=0, authorities=(AUTHORITY.public,),
        accounts=(Account(AUTHORITY.public, ("mgmc",)), Account(ANONYM.public, ("anonym",), "mg")),
        contracts=("market",), params=Params(),
    )  # fmt: skip
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(genesis.to_json()))
    spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=int(BLOCK_S * 1000),
                     round_timeout_ms=500, wal_fsync=False)  # fmt: skip
    return EdgeLedger(AUTHORITY, MqttLink("test", "127.0.0.1", 9), "feeder", [spec])


def offer(t: int) -> dict[str, Any]:
    return {"interval": t, "round": 1, "price": 100_000, "quantity": 1000, "clean": False}


def agent_on(chain: EdgeLedger, sent: list[tuple[int, Submission]]) -> Any:
    """A trading agent as the idle and the bargaining's join see it, sending through `MarketAgent`'s own
    `_submit_outcome` on the real replica (each outcome the replica gave noted in `sent` by the offer's
    interval: 0 the claim, 1 the interval's first move)."""
    real = chain.submit

    async def noted(role: str, raw: bytes, timeout_s: float) -> Submission:
        outcome = await real(role, raw, timeout_s)
        sent.append((decode_tx(raw).body["interval"], outcome))
        return outcome

    chain.submit = noted  # type: ignore[method-assign]
    agent = SimpleNamespace(
        ledger=chain, anonym=ANONYM, s=SimpleNamespace(phase_timeout_s=PHASE_S), claim_needs_s=0.1,
        d=SimpleNamespace(stopping=asyncio.Event()), phase="", cfg=None,
    )  # fmt: skip
    for name in ("_submit", "_submit_outcome", "_stopped"):
        setattr(agent, name, MethodType(getattr(MarketAgent, name), agent))
    return agent


def late_claim(monkeypatch: pytest.MonkeyPatch, chain: EdgeLedger) -> None:
    """The claim's retry: sent as the real one (`submit_final`, the anonym's next nonce), here not final in time
    (`NotFinal`, which `run_uplift_claim` records and `retry_uplift_claim` returns)."""
    monkeypatch.setattr(day_stages, "claim_missing", lambda agent: True)

    async def retry(agent: Any) -> Any:
        with contextlib.suppress(NotFinal):
            await submit_final(chain, ANONYM, "offer", offer(0), SUBMIT_S, lambda: None)

    monkeypatch.setattr(day_stages, "retry_uplift_claim", retry)


def run(chain: EdgeLedger, play: Any) -> Any:
    async def main() -> Any:
        chain.start()
        try:
            await chain.wait_for("mgmc", lambda state: chain.replicas["mgmc"].app.head().height >= 2, 10.0)
            return await asyncio.wait_for(play(), 30.0)
        finally:
            chain.close()

    return asyncio.run(main())


def halt(chain: EdgeLedger) -> None:
    """Finalise nothing from now on (the claim is not final within its submit timeout) until `chain.halt_at({})`."""
    chain.halt_at({CHAIN: chain.replicas["mgmc"].app.head().height})


@pytest.mark.parametrize(
    ("idle_s", "lands"),
    [(3 * SUBMIT_S, "in the idle"), (1.5 * SUBMIT_S, "after the slot"), (0.5 * SUBMIT_S, "after the slot")],
)
def test_the_intervals_first_move_lands_after_a_claim_that_was_not_final_in_the_idle(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    idle_s: float,
    lands: str,
) -> None:
    """The claim's attempt ends "not final" after its submit timeout (idle 3 s or 1.5 s), or is cut at the slot's
    start while it waits (0.5 s); the chain finalises it a few blocks after its timeout, in the idle (the idle
    then ends its wait: the slot's first move signs the next nonce), or only once the interval's offer was sent
    (the offer waits for it). The offer lands at its first try and the claim with it (before, where the claim
    lands after the slot: refused as pending, waited on, then NONCE_TAKEN, and the MG sat the interval out)."""
    chain = ledger(tmp_path)
    sent: list[tuple[int, Submission]] = []
    late_claim(monkeypatch, chain)
    agent = agent_on(chain, sent)

    async def play() -> tuple[int, int | None, bool]:
        nonce = chain.next_nonce("mgmc", ANONYM.public)
        halt(chain)
        if lands == "in the idle":
            asyncio.get_running_loop().call_later(SUBMIT_S + 4 * BLOCK_S, chain.halt_at, {})
        start = time.time() + idle_s
        await agent_day.claim_in_idle(agent, start)
        at_slot, early = own_nonce.own_pending(chain, "mgmc", ANONYM.public), time.time() < start
        with caplog.at_level(logging.WARNING, "peergrid.edge.trader"):
            join = asyncio.ensure_future(chain_bargaining._join(agent, 1, "offer", offer(1)))
            await asyncio.sleep(4 * BLOCK_S)  # the offer is on its way while the claim still holds the nonce
            chain.halt_at({})
            await join
        return nonce, at_slot, early

    nonce, at_slot, early = run(chain, play)
    if lands == "in the idle":  # landed in the idle, which stopped waiting for it then
        assert at_slot is None and early
    else:
        assert at_slot == nonce
    assert chain.next_nonce("mgmc", ANONYM.public) == nonce + 2
    state = chain.state("mgmc")
    assert contract.offer(state, 0, ANONYM.public) is not None  # the claim landed (late)
    assert contract.offer(state, 1, ANONYM.public) is not None  # and the interval's offer after it
    assert [outcome for interval, outcome in sent if interval == 1] == [Submission(True)], sent  # first try
    assert all(not outcome.landed for interval, outcome in sent if interval == 0)  # the claim: not final
    assert not [r for r in caplog.records if "did not land" in r.getMessage()]


def test_a_move_lost_to_another_transaction_of_the_mg_is_signed_again_and_a_lost_first_move_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the pool check misses it (here hidden), the interval's offer still collides with the pending claim: it comes back NONCE_TAKEN and is signed again once with the next nonce, and lands.
    A first move that does not land is logged by name (before: ignored)."""
    chain = ledger(tmp_path)
    sent: list[tuple[int, Submission]] = []
    agent = agent_on(chain, sent)

    async def play() -> None:
        halt(chain)
        asyncio.get_running_loop().call_later(SUBMIT_S, chain.halt_at, {})
        other = chain.sign("mgmc", ANONYM, "offer", offer(0), chain.next_nonce("mgmc", ANONYM.public))
        assert isinstance(chain.replicas["mgmc"].submit(other, chain.clock()), Accepted)
        with monkeypatch.context() as patched:
            patched.setattr(own_nonce, "own_pending", lambda *args: None)  # the pool seen as empty
            await chain_bargaining._join(agent, 1, "offer", offer(1))
        with caplog.at_level(logging.WARNING, "peergrid.edge.trader"):
            await chain_bargaining._join(agent, 1, "offer", offer(1))  # already on the chain: refused

    run(chain, play)
    first, again = sent[0][1], sent[1][1]
    assert not first.landed and first.reason.startswith(NONCE_TAKEN) and again.landed, sent
    assert contract.offer(chain.state("mgmc"), 1, ANONYM.public) is not None
    named = [r.getMessage() for r in caplog.records if "its first move" in r.getMessage()]
    assert named == ["interval 1: this MG's offer (its first move) did not land: unless it lands late it sits "
                     "the interval out"]  # fmt: skip
