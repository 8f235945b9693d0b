"""A transaction gossiped again (by its sender's re-gossip or a relay) is a duplicate, not a refusal.

A receiving replica that already holds it, in its pool or in a block, counts it under `tx_duplicate` and
logs nothing; before, every re-published copy went under `tx_rejected` and was logged as refused at powers
of two, so re-gossip made those counts grow though nothing was rejected. A different transaction on a nonce
already taken, or one that does not decode, is still refused and logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers_replica import Wire, pump, wall_ms

from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.node import ChainReplica
from peergrid_ledger.consensus.transport import TX, encode_tx_batch, seal_envelope
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import Tx, sign_tx

CHAIN = "mgmc"


def _replica(tmp_path: Path, authority: bool) -> tuple[ChainReplica, Wire, Keypair]:
    me, other, relay = Keypair.generate(), Keypair.generate(), Keypair.generate()
    genesis = Genesis(
        chain=CHAIN, time=wall_ms() - 1000, authorities=((me if authority else other).public,),
        accounts=(Account(relay.public, ("dso",)),),
    )  # fmt: skip
    wire = Wire()
    replica = ChainReplica(
        BlockStore.create(tmp_path / "chain", genesis),
        me,
        EngineConfig(block_period_ms=50, heartbeat_ms=60_000),
        wire,
        wire.schedule,
    )  # type: ignore[arg-type]
    replica.start(wall_ms())
    return replica, wire, relay


def _action(relay: Keypair, nonce: int, text: str) -> Tx:
    return sign_tx(
        relay, CHAIN, "operator_action", nonce, wall_ms(), {"operator": "o", "action": text, "txs": []}
    )


def _deliver(replica: ChainReplica, relay: Keypair, *raws: bytes) -> None:
    replica.receive(TX, seal_envelope(CHAIN, TX, relay, encode_tx_batch(list(raws))), wall_ms())


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]


def test_a_copy_of_a_pooled_transaction_is_a_duplicate_not_a_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    replica, _wire, relay = _replica(tmp_path, authority=False)  # an observer: nothing lands here
    tx = _action(relay, replica.app.next_nonce(relay.public), "switch 7")
    caplog.set_level(logging.WARNING, logger="peergrid_ledger.node")
    _deliver(replica, relay, tx.raw)
    for _ in range(5):  # gossiped again, by its sender and by a relay
        _deliver(replica, relay, tx.raw)
    assert replica.stats["tx_accepted"] == 1
    assert replica.stats["tx_duplicate"] == 5
    assert replica.stats["tx_rejected"] == 0  # (before: 5, and logged as refused)
    assert _refusals(caplog) == []
    assert len(replica.app.mempool) == 1

    # another transaction on the pending nonce, and garbage: refused, and said
    _deliver(replica, relay, _action(relay, tx.nonce, "switch 8").raw, b"not a transaction")
    assert replica.stats["tx_rejected"] == 2 and replica.stats["tx_duplicate"] == 5
    assert len(_refusals(caplog)) == 2
    assert replica.status()["stats"]["tx_duplicate"] == 5


def test_a_copy_of_a_transaction_in_a_block_is_a_duplicate_not_a_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    replica, wire, relay = _replica(tmp_path, authority=True)  # the lone authority: it lands here
    tx = _action(relay, replica.app.next_nonce(relay.public), "switch 7")
    _deliver(replica, relay, tx.raw)
    for _ in range(5):
        if replica.store.locate_tx(tx.txid) is not None:
            break
        pump(replica, wire, due_only=False)
    assert replica.store.locate_tx(tx.txid) is not None
    assert tx.txid not in replica.app.mempool
    caplog.set_level(logging.WARNING, logger="peergrid_ledger.node")
    _deliver(replica, relay, tx.raw)
    _deliver(replica, relay, tx.raw)
    assert replica.stats["tx_duplicate"] == 2
    assert replica.stats["tx_rejected"] == 0  # (before: 2, "nonce already used", logged as refused)
    assert _refusals(caplog) == []

    # a different transaction on the nonce the block used: refused (it never lands), and said
    _deliver(replica, relay, _action(relay, tx.nonce, "switch 8").raw)
    assert replica.stats["tx_rejected"] == 1 and replica.stats["tx_duplicate"] == 2
    assert len(_refusals(caplog)) == 1
