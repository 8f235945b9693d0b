"""A transaction handed to a replica before it started (a daemon whose first submit races its start) waits in the
pool and lands once the replica runs: before, the engine asked who proposes at a height it had no validators for
yet and divided by zero (`admission.proposer`), found by the DSO's dispute test (D1)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from peergrid_ledger.consensus.actions import Timer
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.node import ChainReplica
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import sign_tx


class Wire:
    def __init__(self) -> None:
        self.timers: list[tuple[Timer, int]] = []

    def publish(self, *_: Any, **__: Any) -> None:
        pass

    def schedule(self, timer: Timer, at_ms: int) -> None:
        self.timers.append((timer, at_ms))


def now_ms() -> int:
    return int(time.time() * 1000)


def test_a_transaction_submitted_before_start_waits_and_lands(tmp_path: Path) -> None:
    authority, payer, payee = Keypair.generate(), Keypair.generate(), Keypair.generate()
    genesis = Genesis(
        chain="mgmc",
        time=now_ms() - 1000,
        authorities=(authority.public,),
        accounts=(Account(payer.public, ("anonym",), balance=1000), Account(payee.public, ("anonym",))),
        contracts=("market", "payments"),
    )
    wire = Wire()
    replica = ChainReplica(
        BlockStore.create(tmp_path / "chain", genesis),
        authority,
        EngineConfig(block_period_ms=50, heartbeat_ms=1000),
        wire,
        wire.schedule,
    )  # type: ignore[arg-type]
    nonce = replica.app.next_nonce(payer.public)
    tx = sign_tx(payer, "mgmc", "pay", nonce, now_ms(), {"payee": payee.public, "amount": 7, "ref": "early"})
    verdict = replica.submit(tx.raw, now_ms())
    assert verdict.__class__.__name__ == "Accepted", verdict  # raised ZeroDivisionError before
    replica.start(now_ms())
    for _ in range(5):
        if replica.app.next_nonce(payer.public) > nonce:
            break
        due, wire.timers = [(t, at) for t, at in wire.timers if t.kind == "propose"], []
        for timer, at in sorted(due, key=lambda d: d[1]):
            replica.fire(timer, max(at, now_ms()))
    assert replica.app.next_nonce(payer.public) == nonce + 1, (
        replica.app.head().height,
        replica.app.refusal(tx.txid),
        wire.timers,
    )
    assert replica.app.head().height >= 1
