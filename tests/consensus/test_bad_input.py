"""Bad input at a running ledger replica (the issue's security item 3): forged messages, replays,
wrong-chain messages, oversized payloads. Each is refused, counted in `status()["stats"]` and logged, and
the replicas go on finalising the same chain.

Real replicas (`ChainReplica` over LevelDB) on the seeded in-memory network; the attacker's messages are
handed straight to one replica, as if it came off the broker.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from peergrid_ledger import codec, keys
from peergrid_ledger.consensus.ledger_net import LedgerNet
from peergrid_ledger.consensus.messages import PREPARE, ConsensusMessage, encode_wire, sign_vote
from peergrid_ledger.consensus.transport import (
    CONSENSUS,
    MAX_ENVELOPE_BYTES,
    TX,
    encode_tx_batch,
    seal_envelope,
)
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.tx import sign_tx
from peergrid_ledger.verify import verify_store

T0 = 1_767_225_600_000


def key(name: str) -> keys.Keypair:
    return keys.Keypair.from_seed(hashlib.sha256(b"bad-input/" + name.encode()).digest())


AUTHORITIES = [key(f"authority-{i}") for i in range(4)]
CLIENT, STRANGER = key("client"), key("stranger")
CHAIN = "bad-input"


def genesis() -> Genesis:
    return Genesis(
        chain=CHAIN,
        time=T0,
        authorities=tuple(k.public for k in AUTHORITIES),
        accounts=(Account(CLIENT.public, ("anonym",), "client"),),
    )


def test_forged_replayed_wrong_chain_and_oversized_messages_are_refused_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    net = LedgerNet(tmp_path, genesis(), AUTHORITIES, seed=9)
    body = {"interval": 1, "injection": 500, "revision": 0}
    txid, _ = net.submit("n1", CLIENT, "equivalent_injection", body)
    net.run(1500)
    assert net.replicas["n0"].store.locate_tx(txid) is not None
    target, now = net.replicas["n0"], net.now
    height = target.app.tip.height
    honest, other = AUTHORITIES[1], AUTHORITIES[2]

    def vote(chain: str, author: keys.Keypair, signer: keys.Keypair, at_height: int) -> bytes:
        v = sign_vote(chain, signer.sign, author.public, PREPARE, at_height, 0, b"\x07" * 32)
        return encode_wire(chain, ConsensusMessage(v))

    envelope = seal_envelope(CHAIN, CONSENSUS, honest, vote(CHAIN, honest, honest, height + 1))
    forged = codec.decode(envelope)
    forged[3] = vote(
        CHAIN, honest, honest, height + 2
    )  # body swapped: the envelope signature no longer holds
    impostor = codec.decode(envelope)
    impostor[4] = STRANGER.sign(b"anything" * 4)  # claims to be an authority, signed by someone else
    committed = sign_tx(CLIENT, CHAIN, "equivalent_injection", 1, now, body)  # nonce 1 is already on chain
    pending = sign_tx(CLIENT, CHAIN, "equivalent_injection", 2, now, {**body, "revision": 1})
    attacks = [
        (CONSENSUS, codec.encode(forged)),  # forged envelope
        (CONSENSUS, codec.encode(impostor)),  # forged sender
        (CONSENSUS, seal_envelope(CHAIN, CONSENSUS, STRANGER, vote(CHAIN, STRANGER, STRANGER, height + 1))),
        # a vote in an authority's name signed with another authority's key, in a validly signed envelope
        (CONSENSUS, seal_envelope(CHAIN, CONSENSUS, honest, vote(CHAIN, honest, other, height + 1))),
        (CONSENSUS, seal_envelope(CHAIN, CONSENSUS, honest, vote(CHAIN, honest, honest, 1))),  # replay, height 1
        (CONSENSUS, seal_envelope(CHAIN, CONSENSUS, honest, vote("other-chain", honest, honest, height + 1))),
        (CONSENSUS, seal_envelope("other-chain", CONSENSUS, honest, vote(CHAIN, honest, honest, height + 1))),
        (CONSENSUS, b"\x00" * (MAX_ENVELOPE_BYTES + 1)),  # oversized
        (TX, seal_envelope(CHAIN, TX, CLIENT, encode_tx_batch([committed.raw]))),  # replayed transaction
        (TX, seal_envelope(CHAIN, TX, CLIENT, encode_tx_batch([pending.raw, pending.raw]))),  # replayed in batch
        (TX, seal_envelope(CHAIN, TX, CLIENT, encode_tx_batch([sign_tx(CLIENT, "other-chain", "x", 3, now, {}).raw]))),
    ]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="peergrid_ledger.node"):
        for kind, data in attacks:
            target.receive(kind, data, now)
    stats = net.stats("n0")
    assert stats["dropped_unsigned"] == 2
    assert stats["dropped_unknown-sender"] == 1
    assert stats["dropped_signature"] == 1
    assert stats["stale"] >= 1
    assert stats["dropped_malformed"] >= 1  # another chain's vote inside our envelope
    assert stats["dropped_wrong-chain"] == 1
    assert stats["dropped_oversized"] == 1
    assert stats["tx_rejected"] == 2  # the replayed nonce and the other chain's transaction
    assert stats["tx_duplicate"] == 1  # the repeated copy: a duplicate it already holds is not a refusal (L5)
    logged = caplog.text
    for counter in ("dropped_unsigned", "dropped_unknown-sender", "dropped_signature", "dropped_malformed",
                    "dropped_wrong-chain", "dropped_oversized", "tx_rejected"):  # fmt: skip
        assert f"{counter} refused" in logged, counter
    assert "already used" in logged and "other-chain" in logged  # the duplicate is counted, not logged
    net.run(1500)  # and nothing of it disturbed the chain
    top = min(r.app.tip.height for r in net.replicas.values())
    assert top >= height + 5
    assert len({r.store.block(top).hash for r in net.replicas.values()}) == 1
    assert net.replicas["n2"].store.locate_tx(pending.txid) is not None  # the genuine one landed once
    assert verify_store(target.store).ok


def test_a_flood_of_one_kind_is_counted_exactly_but_logged_sparingly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    net = LedgerNet(tmp_path, genesis(), AUTHORITIES[:1], seed=1)
    replica = net.replicas["n0"]
    with caplog.at_level(logging.WARNING, logger="peergrid_ledger.node"):
        for _ in range(1000):
            replica.receive(CONSENSUS, b"\xff garbage", net.now)
    assert net.stats("n0")["dropped_malformed"] == 1000
    assert len([r for r in caplog.records if "dropped_malformed" in r.getMessage()]) == 10  # 1, 2, 4 ... 512
