"""A transaction handed to a replica before it started (a daemon whose first submit races its start) waits in the
pool and lands once the replica runs: before, the engine asked who proposes at a height it had no validators for
yet and divided by zero (`admission.proposer`), found by the DSO's dispute test (D1)."""

from __future__ import annotations

from pathlib import Path

from helpers_replica import Wire, pump, wall_ms

from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.node import ChainReplica
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import sign_tx


def test_a_transaction_submitted_before_start_waits_and_lands(tmp_path: Path) -> None:
    authority, payer, payee = Keypair.generate(), Keypair.generate(), Keypair.generate()
    genesis = Genesis(
        chain="mgmc",
        time=wall_ms() - 1000,
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
    tx = sign_tx(payer, "mgmc", "pay", nonce, wall_ms(), {"payee": payee.public, "amount": 7, "ref": "early"})
    verdict = replica.submit(tx.raw, wall_ms())
    assert verdict.__class__.__name__ == "Accepted", verdict  # raised ZeroDivisionError before
    replica.start(wall_ms())
    for _ in range(5):
        if replica.app.next_nonce(payer.public) > nonce:
            break
        pump(replica, wire, due_only=False)
    assert replica.app.next_nonce(payer.public) == nonce + 1, (
        replica.app.head().height,
        replica.app.refusal(tx.txid),
        wire.timers,
    )
    assert replica.app.head().height >= 1
