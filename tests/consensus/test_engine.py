"""The QBFT engine driven by hand: commits, round-change justification, evidence, restarts, time, sync."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from peergrid_ledger import codec
from peergrid_ledger.consensus.actions import Broadcast, Committed, EvidenceFound, Send, SetTimer, Timer
from peergrid_ledger.consensus.app import MemoryWal
from peergrid_ledger.consensus.engine import Engine, EngineConfig
from peergrid_ledger.consensus.messages import (
    COMMIT,
    PREPARE,
    PROPOSAL,
    ROUND_CHANGE,
    Certificate,
    ConsensusMessage,
    SyncResponse,
    decode_wire,
    encode_wire,
    make_certificate,
    quorum,
    sign_vote,
    verify_certificate,
)
from peergrid_ledger.consensus.sim_app import GOV, SimApp, SimGenesis, SimKeys, SimStore, make_tx

CHAIN = "engine-chain"
CONFIG = EngineConfig(block_period_ms=100, round_timeout_ms=1000, max_future_drift_ms=500, sync_batch=32)
Filter = Callable[[int, int, bytes], bool]


class Cluster:
    """n authorities (+ observers) wired by a hand-cranked queue: tests decide what arrives."""

    def __init__(self, n: int, observers: int = 0) -> None:
        self.ring = SimKeys()
        self.keys = [self.ring.key(f"v{i}") for i in range(n + observers)]
        self.admin = self.ring.key("admin")
        self.genesis = SimGenesis(
            CHAIN,
            tuple(k.public for k in self.keys[:n]),
            self.admin.public,
            tuple(k.public for k in self.keys),
        )
        self.stores = [SimStore() for _ in self.keys]
        self.wals = [MemoryWal() for _ in self.keys]
        self.now = 0
        self.queue: deque[tuple[int, int, bytes]] = deque()
        self.timers: list[tuple[int, int, Timer]] = []
        self.committed: list[list[Committed]] = [[] for _ in self.keys]
        self.evidence: list[EvidenceFound] = []
        self.sent: list[list[bytes]] = [[] for _ in self.keys]
        self.apps: list[SimApp] = []
        self.engines: list[Engine] = []
        for i in range(len(self.keys)):
            self.apps.append(SimApp(self.genesis, self.stores[i], self.keys[i], self.ring.verify))
            self.engines.append(Engine(self.apps[i], CONFIG, self.keys[i], self.ring.verify, self.wals[i]))
        for i, engine in enumerate(self.engines):
            self.do(i, engine.start(self.now))

    def restart(self, i: int) -> None:
        self.apps[i] = SimApp(self.genesis, self.stores[i], self.keys[i], self.ring.verify)
        self.engines[i] = Engine(self.apps[i], CONFIG, self.keys[i], self.ring.verify, self.wals[i])
        self.timers = [t for t in self.timers if t[1] != i]
        self.do(i, self.engines[i].start(self.now))

    def do(self, i: int, actions: list) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                self.sent[i].append(action.data)
                for j in range(len(self.keys)):
                    if j != i:
                        self.queue.append((i, j, action.data))
            elif isinstance(action, Send):
                j = next(j for j, k in enumerate(self.keys) if k.public == action.to)
                self.queue.append((i, j, action.data))
            elif isinstance(action, SetTimer):
                self.timers.append((action.at_ms, i, action.timer))
            elif isinstance(action, Committed):
                self.committed[i].append(action)
            elif isinstance(action, EvidenceFound):
                self.evidence.append(action)

    def deliver(self, keep: Filter = lambda i, j, d: True) -> None:
        while self.queue:
            i, j, data = self.queue.popleft()
            if keep(i, j, data):
                self.do(j, self.engines[j].on_message(data, self.now, self.keys[i].public))

    def advance(self, ms: int, keep: Filter = lambda i, j, d: True) -> None:
        """Move time forward in small steps, firing due timers and delivering what they send."""
        end = self.now + ms
        while self.now < end:
            self.now += 10
            due = [t for t in self.timers if t[0] <= self.now]
            self.timers = [t for t in self.timers if t[0] > self.now]
            for _, i, timer in sorted(due, key=lambda t: (t[0], t[1])):
                self.do(i, self.engines[i].on_timer(timer, self.now))
            self.deliver(keep)

    def heights(self) -> list[int]:
        return [app.head().height for app in self.apps]


def kind_of(data: bytes) -> str:
    message = decode_wire(CHAIN, data)
    return message.vote.kind if isinstance(message, ConsensusMessage) else type(message).__name__


def test_honest_authorities_finalise_the_same_blocks_with_certificates() -> None:
    cluster = Cluster(4, observers=1)
    cluster.advance(2000)
    assert min(cluster.heights()) >= 5
    for i, commits in enumerate(cluster.committed):
        for c in commits:
            assert c.block_hash == cluster.committed[0][c.height - 1].block_hash
            assert verify_certificate(
                CHAIN, c.height, c.block_hash, c.certificate, cluster.genesis.validators, cluster.ring.verify
            )
            assert len(c.certificate.seals) >= quorum(4)
            assert cluster.stores[i].certificates[c.height - 1] == c.certificate
    assert {c.proposer for c in cluster.committed[0][:4]} == set(cluster.genesis.validators)  # rotation


def test_prepared_block_is_reproposed_after_round_change() -> None:
    cluster = Cluster(4)
    cluster.advance(200, keep=lambda i, j, d: kind_of(d) != COMMIT)  # everyone prepares, no one decides
    assert cluster.heights() == [0, 0, 0, 0]
    prepared = {e.s.prepared_digest for e in cluster.engines}
    assert len(prepared) == 1 and b"" not in prepared
    cluster.advance(3000)  # round 0 times out; round 1's proposer must carry the prepared block
    assert min(cluster.heights()) >= 1
    first = cluster.committed[0][0]
    assert first.block_hash in prepared
    assert first.certificate.round == 0  # seals sign the header's round: the block is unchanged
    assert all(e.stats["round_timeouts"] > 0 for e in cluster.engines)
    assert first.proposer == cluster.genesis.validators[1]  # built by round 0's proposer, not re-built


def _round_change(cluster: Cluster, i: int, round_: int, height: int = 1):
    key = cluster.keys[i]
    return sign_vote(CHAIN, key.sign, key.public, ROUND_CHANGE, height, round_, b"", -1)


def test_round_change_proposal_without_justification_is_refused() -> None:
    cluster = Cluster(4)
    proposer = 2  # proposer of height 1 round 1
    app = cluster.apps[proposer]
    block = app.build_block(1, 1, 200, cluster.keys[proposer].public)
    digest = app.inspect(block).block_hash  # type: ignore[union-attr]
    key = cluster.keys[proposer]
    vote = sign_vote(CHAIN, key.sign, key.public, PROPOSAL, 1, 1, digest)
    target = cluster.engines[0]
    too_few = tuple(_round_change(cluster, i, 1) for i in (1, 2))
    cluster.now = 250
    for justification in ((), too_few):
        out = target.on_message(
            encode_wire(CHAIN, ConsensusMessage(vote, block, justification)), 250, key.public
        )
        assert not any(isinstance(a, Broadcast) and kind_of(a.data) == PREPARE for a in out)
    assert target.stats["unjustified_proposal"] == 2
    enough = tuple(_round_change(cluster, i, 1) for i in (1, 2, 3))
    out = target.on_message(encode_wire(CHAIN, ConsensusMessage(vote, block, enough)), 250, key.public)
    assert any(isinstance(a, Broadcast) and kind_of(a.data) == PREPARE for a in out)


def test_justification_with_a_prepared_value_forces_that_block() -> None:
    cluster = Cluster(4)
    cluster.advance(200, keep=lambda i, j, d: kind_of(d) != COMMIT)
    prepared = cluster.engines[0].s.prepared_digest
    prepares = cluster.engines[0].s.prepared_cert
    proposer, key = 2, cluster.keys[2]
    changes = [_round_change(cluster, 3, 1)] + [
        sign_vote(CHAIN, cluster.keys[i].sign, cluster.keys[i].public, ROUND_CHANGE, 1, 1, prepared, 0)
        for i in (1, 2)
    ]
    other = cluster.apps[proposer].build_block(1, 1, 250, key.public)
    other_digest = cluster.apps[proposer].inspect(other).block_hash  # type: ignore[union-attr]
    assert other_digest != prepared
    vote = sign_vote(CHAIN, key.sign, key.public, PROPOSAL, 1, 1, other_digest)
    message = ConsensusMessage(vote, other, tuple(changes), prepares)
    out = cluster.engines[0].on_message(encode_wire(CHAIN, message), 250, key.public)
    assert cluster.engines[0].stats["unjustified_proposal"] == 1
    assert not any(isinstance(a, Broadcast) for a in out)


def test_equivocation_is_detected_as_evidence() -> None:
    cluster = Cluster(4)
    liar = cluster.keys[3]
    a = sign_vote(CHAIN, liar.sign, liar.public, PREPARE, 1, 0, b"\x01" * 32)
    b = sign_vote(CHAIN, liar.sign, liar.public, PREPARE, 1, 0, b"\x02" * 32)
    engine = cluster.engines[0]
    engine.on_message(encode_wire(CHAIN, ConsensusMessage(a)), 0, liar.public)
    out = engine.on_message(encode_wire(CHAIN, ConsensusMessage(b)), 0, liar.public)
    found = [x for x in out if isinstance(x, EvidenceFound)]
    assert len(found) == 1 and {found[0].evidence.first, found[0].evidence.second} == {a, b}
    again = engine.on_message(encode_wire(CHAIN, ConsensusMessage(b)), 0, liar.public)
    assert not any(isinstance(x, EvidenceFound) for x in again)
    assert engine.stats["equivocations"] == 2  # counted again, reported once


def test_garbage_wrong_chain_and_outsiders_are_dropped_and_counted() -> None:
    cluster = Cluster(4)
    engine = cluster.engines[0]
    outsider = cluster.ring.key("outsider")
    for data in (b"", b"\xff" * 40, codec.encode({"c": CHAIN, "t": "vote"}), codec.encode([1, 2])):
        assert engine.on_message(data, 0) == []
    foreign = sign_vote("other", cluster.keys[1].sign, cluster.keys[1].public, PREPARE, 1, 0, b"\x01" * 32)
    assert engine.on_message(encode_wire("other", ConsensusMessage(foreign)), 0) == []
    assert engine.stats["dropped_malformed"] == 5
    forged = sign_vote(CHAIN, outsider.sign, outsider.public, PREPARE, 1, 0, b"\x01" * 32)
    engine.on_message(encode_wire(CHAIN, ConsensusMessage(forged)), 0)
    assert engine.stats["dropped_author"] == 1
    bad = sign_vote(CHAIN, outsider.sign, cluster.keys[1].public, PREPARE, 1, 0, b"\x01" * 32)
    engine.on_message(encode_wire(CHAIN, ConsensusMessage(bad)), 0)
    assert engine.stats["dropped_signature"] == 1


def test_restart_resumes_the_round_and_never_votes_differently() -> None:
    cluster = Cluster(4)
    cluster.advance(150, keep=lambda i, j, d: kind_of(d) == PROPOSAL)  # everyone prepares B; nothing more
    before = cluster.engines[0].s.sent[(PREPARE, 0)]
    cluster.restart(0)
    assert cluster.engines[0].s.sent[(PREPARE, 0)] == before
    assert before.digest.hex() in [
        decode_wire(CHAIN, d).vote.digest.hex() for d in cluster.sent[0][-1:]
    ]  # said again
    proposer = cluster.keys[1]  # the proposer of height 1 round 0 equivocates after the restart
    twin = cluster.apps[1].build_block(1, 0, 777, proposer.public)
    digest = cluster.apps[1].inspect(twin).block_hash  # type: ignore[union-attr]
    vote = sign_vote(CHAIN, proposer.sign, proposer.public, PROPOSAL, 1, 0, digest)
    out = cluster.engines[0].on_message(
        encode_wire(CHAIN, ConsensusMessage(vote, twin)), 200, proposer.public
    )
    assert not any(isinstance(a, Broadcast) and kind_of(a.data) == PREPARE for a in out)
    cluster.advance(2000)
    assert min(cluster.heights()) >= 3
    assert (
        len({c[0].block_hash for c in cluster.committed}) == 1
        and cluster.committed[0][0].block_hash != digest
    )


def test_block_time_is_checked_against_bounds() -> None:
    cluster = Cluster(4)
    proposer, key = 1, cluster.keys[1]
    engine = cluster.engines[0]
    for timestamp in (50, 10_000):  # before parent + period; beyond now + drift
        block = cluster.apps[proposer].build_block(1, 0, timestamp, key.public)
        digest = cluster.apps[proposer].inspect(block).block_hash  # type: ignore[union-attr]
        vote = sign_vote(CHAIN, key.sign, key.public, PROPOSAL, 1, 0, digest)
        engine.on_message(encode_wire(CHAIN, ConsensusMessage(vote, block)), 200, key.public)
        engine.s.seen.clear()
    assert engine.stats["invalid_proposal"] == 2


def test_authority_added_by_governance_votes_from_the_next_height() -> None:
    cluster = Cluster(4, observers=1)
    newcomer = cluster.keys[4].public
    tx = make_tx(CHAIN, cluster.admin, GOV, 0, ["add", newcomer])
    for app in cluster.apps:
        app.mempool.add(tx, 0)
    cluster.advance(3000)
    with_tx = next(c for c in cluster.committed[0] if tx in codec.decode(c.block)["txs"])
    later = [c for c in cluster.committed[0] if c.height > with_tx.height]
    assert later and all(newcomer in cluster.apps[0].validators(c.height) for c in later)
    assert newcomer not in cluster.apps[0].validators(with_tx.height)
    assert any(newcomer in [a for a, _ in c.certificate.seals] for c in later)
    assert all(len(c.certificate.seals) >= quorum(5) for c in later)


def _chain(cluster: Cluster, blocks: int) -> SimStore:
    """A store of `blocks` blocks sealed directly by the genesis authorities (no network needed)."""
    store = SimStore()
    app = SimApp(cluster.genesis, store, cluster.keys[0], cluster.ring.verify)
    for height in range(1, blocks + 1):
        block = app.build_block(height, 0, height * 100, cluster.keys[0].public)
        digest = app.inspect(block).block_hash  # type: ignore[union-attr]
        votes = [sign_vote(CHAIN, k.sign, k.public, COMMIT, height, 0, digest) for k in cluster.keys[:3]]
        app.commit(block, make_certificate(0, votes))
    return store


def test_fresh_node_catches_up_10000_blocks_by_sync_and_refuses_bad_certificates() -> None:
    cluster = Cluster(4, observers=1)
    source = SimApp(cluster.genesis, _chain(cluster, 10_000), cluster.keys[0], cluster.ring.verify)
    server = Engine(source, CONFIG, cluster.keys[0], cluster.ring.verify)
    fresh = cluster.engines[4]
    key = cluster.keys[0]
    ahead = sign_vote(CHAIN, key.sign, key.public, PREPARE, 10_001, 0, b"\x01" * 32)
    out = fresh.on_message(encode_wire(CHAIN, ConsensusMessage(ahead)), 0, key.public)
    trips = 0
    while True:
        requests = [a for a in out if isinstance(a, Send)]
        if not requests:
            break
        replies = [r for q in requests for r in server.on_message(q.data, 0, cluster.keys[4].public)]
        out = [a for r in replies if isinstance(r, Send) for a in fresh.on_message(r.data, 0, key.public)]
        trips += 1
    assert cluster.apps[4].head().height == 10_000
    assert trips == 10_000 // CONFIG.sync_batch + 1
    tampered = SimApp(cluster.genesis, _chain(cluster, 2), cluster.keys[0], cluster.ring.verify)
    block, cert = tampered.committed(1)  # type: ignore[misc]
    late = Cluster(4).engines[0]
    weak = Certificate(cert.round, cert.seals[:2])
    late.on_message(encode_wire(CHAIN, SyncResponse(((block, weak),))), 0)
    assert late.stats["sync_bad_certificate"] == 1 and late.app.head().height == 0


def test_a_byzantine_authority_cannot_make_us_store_unbounded_rounds() -> None:
    cluster = Cluster(4)
    liar = cluster.keys[3]
    engine = cluster.engines[0]
    for round_ in range(1, 400):
        change = sign_vote(CHAIN, liar.sign, liar.public, ROUND_CHANGE, 1, round_, b"", -1)
        engine.on_message(encode_wire(CHAIN, ConsensusMessage(change)), 0, liar.public)
        prepare = sign_vote(CHAIN, liar.sign, liar.public, PREPARE, 1, round_, b"\x01" * 32)
        engine.on_message(encode_wire(CHAIN, ConsensusMessage(prepare)), 0, liar.public)
    stored = sum(len(changes) for changes in engine.s.round_changes.values())
    assert stored <= 4 + 1  # the liar's highest few (and our own)
    assert len(engine.s.prepares) <= 64 + 1
    assert engine.stats["dropped_far_round"] > 300
    assert engine.s.round == 0  # one author alone (< f + 1) cannot drag us into its rounds
