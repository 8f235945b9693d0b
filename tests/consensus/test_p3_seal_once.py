"""A proposal's block seal costs one Ed25519 check per node, and a forged seal is still refused everywhere.

The engine checks a proposal's vote through the node's signature cache; the vote signs the same triple as the
block's seal, so `LedgerApp.validate` (given that cache by `ChainReplica`) finds it there. The cache remembers
successes only: a forged seal misses it and is refused, as the plain `keys.verify` refuses it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from peergrid_ledger import keys
from peergrid_ledger.block import Block, InvalidBlock, Tip, propose, validate_block
from peergrid_ledger.consensus.actions import Committed, Timer
from peergrid_ledger.consensus.app import Rejected
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.labnet import lab_key
from peergrid_ledger.consensus.messages import (
    COMMIT,
    PREPARE,
    PROPOSAL,
    ConsensusMessage,
    encode_wire,
    sign_vote,
)
from peergrid_ledger.consensus.node import ChainReplica
from peergrid_ledger.consensus.sigcache import SignatureCache
from peergrid_ledger.consensus.transport import CONSENSUS, seal_envelope
from peergrid_ledger.genesis import Genesis
from peergrid_ledger.store import BlockStore
from peergrid_ledger.votes import vote_digest

CHAIN = "p3-seal"
T0 = 1_767_225_600_000
PERIOD_MS = 100
AUTHORITIES = [lab_key(f"p3-authority-{i}") for i in range(4)]
BY_PUBLIC = {k.public: k for k in AUTHORITIES}


class Recorder:
    def publish(self, chain: str, kind: str, data: bytes, to: bytes | None = None) -> None:
        pass


@pytest.fixture
def ed25519_checks(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[bytes, bytes, bytes]]:
    """Every Ed25519 verification made, by (key, message, signature): below `keys.verify`, so a check made
    through any function object (a cache, a default argument bound at import) is counted."""
    checks: Counter[tuple[bytes, bytes, bytes]] = Counter()
    real = keys.nacl.bindings.crypto_sign_open

    def counting(signed: bytes, public: bytes) -> bytes:
        checks[(public, signed[64:], signed[:64])] += 1
        return real(signed, public)

    monkeypatch.setattr(keys.nacl.bindings, "crypto_sign_open", counting)
    return checks


def genesis() -> Genesis:
    return Genesis(chain=CHAIN, time=T0, authorities=tuple(k.public for k in AUTHORITIES), accounts=())


def replica_of_first(tmp_path: Path) -> ChainReplica:
    store = BlockStore.create(tmp_path / "db", genesis())
    config = EngineConfig(block_period_ms=PERIOD_MS, round_timeout_ms=1000, max_future_drift_ms=5000)
    timers: list[tuple[Timer, int]] = []
    replica = ChainReplica(store, AUTHORITIES[0], config, Recorder(), lambda t, at: timers.append((t, at)))
    replica.start(T0)
    return replica


def sealed_block(proposer: keys.Keypair, forged_seal: bool = False) -> Block:
    """Height 1, round 0, empty; with `forged_seal` its seal is the proposer's signature of round 1's digest
    (a real signature by the right key, of another message)."""
    g = genesis()
    block, _ = propose(g.initial_state(), Tip.of_genesis(g), g, [], T0 + PERIOD_MS, proposer)
    if not forged_seal:
        return block
    other = proposer.sign(vote_digest(CHAIN, 1, 1, PROPOSAL, block.hash))
    return Block(block.header, other, block.txs)


def send(
    replica: ChainReplica, author: keys.Keypair, kind: str, block: Block, *, with_block: bool = False
) -> None:
    vote = sign_vote(CHAIN, author.sign, author.public, kind, 1, 0, block.hash)
    message = ConsensusMessage(vote, block.encode() if with_block else None)
    data = seal_envelope(CHAIN, CONSENSUS, author, encode_wire(CHAIN, message))
    replica.receive(CONSENSUS, data, T0 + PERIOD_MS)


def seal_triple(block: Block) -> tuple[bytes, bytes, bytes]:
    h = block.header
    return h.proposer, vote_digest(CHAIN, h.height, h.round, PROPOSAL, h.hash), block.seal


def test_a_proposal_seal_is_checked_once_from_its_vote_to_its_commit(
    tmp_path: Path, ed25519_checks: Counter[tuple[bytes, bytes, bytes]]
) -> None:
    replica = replica_of_first(tmp_path)
    proposer = BY_PUBLIC[replica.engine.proposer(0)]
    assert proposer is not AUTHORITIES[0]
    block = sealed_block(proposer)
    committed: list[Committed] = []
    replica.on_commit.append(committed.append)

    send(replica, proposer, PROPOSAL, block, with_block=True)  # the vote, then validate_block on its block
    assert block.hash in replica.engine.s.valid
    assert ed25519_checks[seal_triple(block)] == 1
    for kind in (PREPARE, COMMIT):
        for author in AUTHORITIES[1:]:
            send(replica, author, kind, block)

    assert replica.app.head().height == 1 and [c.block_hash for c in committed] == [block.hash]
    assert ed25519_checks[seal_triple(block)] == 1  # vote, validation and commit: one Ed25519 check
    assert replica.engine.stats["dropped_signature"] == 0 and replica.engine.stats["invalid_proposal"] == 0
    assert replica.app.verify is replica.engine.verify is replica.verify  # one cache per node


def test_a_forged_seal_under_a_good_proposal_vote_is_refused(
    tmp_path: Path, ed25519_checks: Counter[tuple[bytes, bytes, bytes]]
) -> None:
    replica = replica_of_first(tmp_path)
    proposer = BY_PUBLIC[replica.engine.proposer(0)]
    forged = sealed_block(proposer, forged_seal=True)

    send(replica, proposer, PROPOSAL, forged, with_block=True)

    assert replica.engine.stats["invalid_proposal"] == 1 and forged.hash not in replica.engine.s.valid
    assert ed25519_checks[seal_triple(forged)] == 1  # the forged triple missed the cache and was checked
    verdict = replica.app.validate(forged.encode())  # asked again: checked again, refused again
    assert isinstance(verdict, Rejected) and verdict.reason == "seal signature does not verify"
    assert ed25519_checks[seal_triple(forged)] == 2
    assert replica.app.head().height == 0


def test_a_forged_proposal_vote_is_dropped_before_its_block_is_validated(
    tmp_path: Path, ed25519_checks: Counter[tuple[bytes, bytes, bytes]]
) -> None:
    replica = replica_of_first(tmp_path)
    proposer = BY_PUBLIC[replica.engine.proposer(0)]
    block = sealed_block(proposer)
    impostor = AUTHORITIES[2]  # signs the proposer's vote: the author field still names the proposer
    vote = sign_vote(CHAIN, impostor.sign, proposer.public, PROPOSAL, 1, 0, block.hash)
    data = seal_envelope(
        CHAIN, CONSENSUS, proposer, encode_wire(CHAIN, ConsensusMessage(vote, block.encode()))
    )

    replica.receive(CONSENSUS, data, T0 + PERIOD_MS)

    assert replica.engine.stats["dropped_signature"] == 1 and block.hash not in replica.engine.s.valid
    assert ed25519_checks[seal_triple(block)] == 0


@pytest.mark.parametrize("checker", ["plain", "cache holding the good seal"])
def test_validate_block_refuses_a_forged_seal_with_either_verify(checker: str) -> None:
    g = genesis()
    proposer = AUTHORITIES[1]
    good, forged = sealed_block(proposer), sealed_block(proposer, forged_seal=True)
    verify = keys.verify
    if checker != "plain":
        verify = SignatureCache(keys.verify)
        assert verify(*seal_triple(good))  # the cache now remembers the good seal of this very header
    state, tip = g.initial_state(), Tip.of_genesis(g)

    assert validate_block(state, tip, g, good, verify=verify).writes is not None
    with pytest.raises(InvalidBlock, match="seal signature does not verify"):
        validate_block(state, tip, g, forged, verify=verify)
    with pytest.raises(InvalidBlock, match="seal signature does not verify"):
        validate_block(state, tip, g, forged)  # the default: keys.verify
