"""What consensus costs per height, and that cutting it kept it safe: the vote log written once per engine event
and synced only for what a power cut must not lose (a lost prepare is withheld after a restart, never said
twice differently), each signature verified once per node (keyed by the whole signed triple, so a signature
cannot be re-labelled), and proposals only when transactions wait, with a heartbeat block when idle.

Engines over the simulation's toy chain, driven by hand (as in test_engine.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from peergrid_ledger.consensus.actions import Broadcast, Committed, Send, SetTimer, Timer
from peergrid_ledger.consensus.app import Rejected
from peergrid_ledger.consensus.engine import Engine, EngineConfig
from peergrid_ledger.consensus.messages import (
    COMMIT,
    PREPARE,
    PROPOSAL,
    ROUND_CHANGE,
    ConsensusMessage,
    Vote,
    decode_wire,
    encode_wire,
    sign_vote,
    vote_digest,
)
from peergrid_ledger.consensus.sigcache import SignatureCache
from peergrid_ledger.consensus.sim_app import PAY, SimApp, SimGenesis, SimKeys, SimStore, make_tx

CHAIN = "cost-chain"
EVERY_PERIOD = EngineConfig(block_period_ms=100, round_timeout_ms=1000, max_future_drift_ms=500)
IDLE = EngineConfig(block_period_ms=100, round_timeout_ms=1000, max_future_drift_ms=500, heartbeat_ms=1000)


class PowerCutWal:
    """A WAL on a disk that loses what was not synced when the power goes."""

    def __init__(self) -> None:
        self.latest: bytes | None = None
        self.synced: bytes | None = None
        self.writes = 0
        self.syncs = 0
        self.fail_next = False

    def load(self) -> bytes | None:
        return self.latest

    def save(self, record: bytes, sync: bool = True) -> None:
        if self.fail_next:  # the process dies in the middle of the write
            self.fail_next = False
            raise OSError("killed while writing the WAL")
        self.latest = record
        self.writes += 1
        if sync:
            self.synced = record
            self.syncs += 1

    def power_cut(self) -> None:
        self.latest = self.synced


class CountingVerify:
    def __init__(self, ring: SimKeys) -> None:
        self.ring, self.calls = ring, 0

    def __call__(self, public: bytes, message: bytes, signature: bytes) -> bool:
        self.calls += 1
        return self.ring.verify(public, message, signature)


class Net:
    """n authorities on a hand-cranked queue; `keep(i, j, data)` decides what arrives."""

    def __init__(self, n: int, config: EngineConfig = EVERY_PERIOD) -> None:
        self.config = config
        self.ring = SimKeys()
        self.keys = [self.ring.key(f"a{i}") for i in range(n)]
        self.client = self.ring.key("client")
        self.genesis = SimGenesis(
            CHAIN,
            tuple(k.public for k in self.keys),
            self.ring.key("admin").public,
            (*(k.public for k in self.keys), self.client.public),
        )
        self.stores = [SimStore() for _ in self.keys]
        self.wals = [PowerCutWal() for _ in self.keys]
        self.verifies = [CountingVerify(self.ring) for _ in self.keys]
        self.now = 0
        self.queue: deque[tuple[int, int, bytes]] = deque()
        self.timers: list[tuple[int, int, Timer, int]] = []
        self.lives = [0] * n
        self.crashes = 0
        self.sent: list[list[bytes]] = [[] for _ in self.keys]
        self.committed: list[list[Committed]] = [[] for _ in self.keys]
        self.apps: list[SimApp] = []
        self.engines: list[Engine] = []
        for i in range(n):
            self.apps.append(SimApp(self.genesis, self.stores[i], self.keys[i], self.ring.verify))
            self.engines.append(Engine(self.apps[i], config, self.keys[i], self.verifies[i], self.wals[i]))
        for i, engine in enumerate(self.engines):
            self.do(i, engine.start(self.now))

    def restart(self, i: int) -> None:
        self.apps[i] = SimApp(self.genesis, self.stores[i], self.keys[i], self.ring.verify)
        self.engines[i] = Engine(self.apps[i], self.config, self.keys[i], self.verifies[i], self.wals[i])
        self.lives[i] += 1  # its timers and what was on its way to it die with the process
        self.queue = deque(q for q in self.queue if q[1] != i)
        self.do(i, self.engines[i].start(self.now))

    def call(self, i: int, event: Callable[[Engine], list]) -> None:  # type: ignore[type-arg]
        """Run an event on node i; a node killed in the middle of it (its WAL write fails) restarts."""
        try:
            actions = event(self.engines[i])
        except OSError:
            self.crashes += 1
            self.restart(i)
            return
        self.do(i, actions)

    def do(self, i: int, actions: list) -> None:  # type: ignore[type-arg]
        for action in actions:
            if isinstance(action, Broadcast):
                self.sent[i].append(action.data)
                self.queue.extend((i, j, action.data) for j in range(len(self.keys)) if j != i)
            elif isinstance(action, Send):
                self.queue.append(
                    (i, next(j for j, k in enumerate(self.keys) if k.public == action.to), action.data)
                )
            elif isinstance(action, SetTimer):
                self.timers.append((action.at_ms, i, action.timer, self.lives[i]))
            elif isinstance(action, Committed):
                self.committed[i].append(action)

    def deliver(self, keep: Callable[[int, int, bytes], bool] = lambda i, j, d: True) -> None:
        while self.queue:
            i, j, data = self.queue.popleft()
            if keep(i, j, data):
                self.call(j, lambda e, d=data, s=self.keys[i].public: e.on_message(d, self.now, s))

    def advance(self, ms: int, keep: Callable[[int, int, bytes], bool] = lambda i, j, d: True) -> None:
        end = self.now + ms
        while self.now < end:
            self.now += 10
            due = sorted((t for t in self.timers if t[0] <= self.now), key=lambda t: (t[0], t[1]))
            self.timers = [t for t in self.timers if t[0] > self.now]
            for _, i, timer, life in due:
                if life == self.lives[i]:
                    self.call(i, lambda e, t=timer: e.on_timer(t, self.now))
            self.deliver(keep)

    def submit(self, i: int, nonce: int) -> bytes:
        tx = make_tx(CHAIN, self.client, PAY, nonce, b"pay %d" % nonce)
        for app in self.apps:
            app.mempool.add(tx, self.now)
        for j, engine in enumerate(self.engines):
            self.do(j, engine.on_pending(self.now))
        return tx

    def heights(self) -> list[int]:
        return [app.head().height for app in self.apps]


def votes_of(sent: list[bytes]) -> list[Vote]:
    return [m.vote for d in sent if isinstance(m := decode_wire(CHAIN, d), ConsensusMessage)]


def no_double_vote(sent: list[bytes]) -> bool:
    said: dict[tuple[str, int, int], bytes] = {}
    for vote in votes_of(sent):
        if said.setdefault((vote.kind, vote.height, vote.round), vote.digest) != vote.digest:
            return False
    return True


def kind_of(data: bytes) -> str:
    message = decode_wire(CHAIN, data)
    return message.vote.kind if isinstance(message, ConsensusMessage) else ""


def twin_proposal(net: Net, proposer: int, height: int, timestamp: int) -> bytes:
    """The round-0 proposer of `height` equivocates: a second block, properly sealed."""
    key = net.keys[proposer]
    block = net.apps[proposer].build_block(height, 0, timestamp, key.public, txs=[])
    digest = net.apps[proposer].inspect(block).block_hash  # type: ignore[union-attr]
    vote = sign_vote(CHAIN, key.sign, key.public, PROPOSAL, height, 0, digest)
    return encode_wire(CHAIN, ConsensusMessage(vote, block))


# ------------------------------------------------------------------------------------------ the vote log


def test_a_prepare_lost_in_a_power_cut_is_withheld_never_said_twice_differently() -> None:
    net = Net(4)
    net.advance(150, keep=lambda i, j, d: kind_of(d) == PROPOSAL)  # everyone prepares B, nothing more
    node = 0
    prepared = net.engines[node].s.sent[(PREPARE, 0)]
    assert net.wals[node].syncs == 1  # only the record of its first start was synced; the prepare was not
    net.wals[node].power_cut()
    net.restart(node)
    assert (PREPARE, 0) not in net.engines[node].s.sent  # the disk lost it
    out = net.engines[node].on_message(twin_proposal(net, 1, 1, 120), net.now, net.keys[1].public)
    net.do(node, out)
    assert not any(isinstance(a, Broadcast) and kind_of(a.data) == PREPARE for a in out)
    assert net.engines[node].stats["prepare_withheld"] == 1
    assert no_double_vote(net.sent[node])
    assert prepared.digest != votes_of([twin_proposal(net, 1, 1, 120)])[0].digest
    net.advance(3000)  # the others carry round 0 or a round change: the chain goes on
    assert min(net.heights()) >= 3 and all(no_double_vote(s) for s in net.sent)


def test_a_process_crash_keeps_the_unsynced_prepare_and_says_it_again() -> None:
    net = Net(4)
    net.advance(150, keep=lambda i, j, d: kind_of(d) == PROPOSAL)
    prepared = net.engines[0].s.sent[(PREPARE, 0)]
    net.restart(0)  # killed, not a power cut: the page cache kept the write
    assert net.engines[0].s.sent[(PREPARE, 0)] == prepared
    assert votes_of(net.sent[0][-1:]) == [prepared]


def test_a_crash_between_vote_and_log_sends_nothing_so_no_double_vote() -> None:
    net = Net(4)
    while net.crashes < 10 and net.now < 30_000:  # node 0 dies in the middle of a WAL write, again and again
        net.wals[0].fail_next = True
        net.advance(300)
    assert net.crashes == 10
    net.advance(3000)
    assert all(no_double_vote(s) for s in net.sent)
    assert min(net.heights()) >= 5


def test_a_height_costs_one_synced_write_per_authority_and_two_for_its_proposer() -> None:
    net = Net(4)
    net.advance(1000)
    heights = min(net.heights()) - 1  # whole heights after the first
    syncs = [w.syncs - 1 for w in net.wals]  # less the start record
    writes = [w.writes - 1 for w in net.wals]
    proposed = [sum(1 for c in net.committed[0] if c.proposer == k.public) for k in net.keys]
    for i in range(4):
        assert syncs[i] <= heights + 1 + proposed[i] + 1, (syncs, heights, proposed)
        assert writes[i] >= 2 * heights  # still the prepare and the commit, but one fsync
    assert sum(syncs) < 4 * 2 * heights  # was two or three synced writes per height per authority


# ------------------------------------------------------------------------------------------ signatures


def test_each_signature_is_verified_once_per_node() -> None:
    net = Net(4)
    net.advance(1000)
    heights = min(net.heights())
    verify = net.verifies[0]
    # per height: 3 others' prepares and commits and the proposal (its block seal is checked by the app)
    assert verify.calls <= heights * 7 + 14
    before = verify.calls
    for data in net.sent[1][-6:]:  # the same messages again (QoS 1 duplicates)
        net.engines[0].on_message(data, net.now, net.keys[1].public)
    assert verify.calls == before


def test_a_signature_relabelled_with_another_author_misses_the_cache_and_is_refused() -> None:
    net = Net(4)
    net.advance(150, keep=lambda i, j, d: kind_of(d) == PROPOSAL)
    engine = net.engines[0]
    genuine = votes_of([d for d in net.sent[1] if kind_of(d) == PREPARE])[0]
    assert engine.on_message(encode_wire(CHAIN, ConsensusMessage(genuine)), net.now, net.keys[1].public) == []
    for author in (net.keys[2].public, net.keys[3].public):  # its signature, claimed by someone else
        forged = Vote(PREPARE, genuine.height, genuine.round, genuine.digest, -1, author, genuine.signature)
        engine.on_message(encode_wire(CHAIN, ConsensusMessage(forged)), net.now, author)
    assert engine.stats["dropped_signature"] == 2
    assert len(engine.s.prepares[(0, genuine.digest)]) == 2  # its own and the genuine one only


def test_signature_cache_answers_as_verify_and_stays_bounded() -> None:
    ring = SimKeys()
    key = ring.key("k")
    inner = CountingVerify(ring)
    cache = SignatureCache(inner, capacity=8)
    messages = [vote_digest(CHAIN, COMMIT, h, 0, bytes(32), -1) for h in range(1, 20)]
    for m in messages:
        assert cache(key.public, m, key.sign(m))
        assert not cache(key.public, m, b"\x00" * 64)
        assert cache(key.public, m, key.sign(m))
    assert len(cache) == 8 and cache.hits == 19
    assert not cache(ring.key("other").public, messages[-1], key.sign(messages[-1]))


# ------------------------------------------------------------------------------------------ idle chains


def test_no_empty_blocks_between_heartbeats() -> None:
    net = Net(4, IDLE)
    net.advance(5500)
    blocks = net.stores[0].blocks
    assert 4 <= len(blocks) <= 6
    stamps = [info.timestamp_ms for b in blocks if not isinstance(info := net.apps[0].inspect(b), Rejected)]
    assert len(stamps) == len(blocks)
    assert all(b - a >= IDLE.heartbeat_ms for a, b in zip([0, *stamps], stamps, strict=False)), stamps


def test_a_transaction_submitted_while_idle_is_final_within_one_period() -> None:
    net = Net(4, IDLE)
    net.advance(1500)  # mid-way between heartbeats
    height = min(net.heights())
    start = net.now
    net.submit(0, 0)
    while not all(len(app.store.blocks) > height for app in net.apps) and net.now < start + 5000:
        net.advance(10)
    assert net.now - start <= IDLE.block_period_ms
    assert all(len(app.mempool) == 0 for app in net.apps)


def test_an_idle_chain_replaces_a_silent_proposer() -> None:
    net = Net(4, IDLE)
    net.advance(100)
    silent = (min(net.heights()) + 1) % 4  # the round-0 proposer of the next height
    net.advance(8000, keep=lambda i, j, d: i != silent and j != silent)
    assert min(h for i, h in enumerate(net.heights()) if i != silent) >= 3


def test_an_idle_chain_heads_for_a_coordinated_stop_at_a_block_per_period() -> None:
    net = Net(4, IDLE)
    net.advance(1200)
    halt = min(net.heights()) + 5
    for i, engine in enumerate(net.engines):  # what the daemons' halt file reading does (consensus/halt.py)
        net.do(i, engine.halt_at(halt, net.now))
    net.advance(IDLE.heartbeat_ms + 5 * IDLE.block_period_ms + 300)  # this height, then a block a period
    assert net.heights() == [halt] * 4
    net.advance(3000)
    assert net.heights() == [halt] * 4  # and no further


def test_a_round_change_lost_in_a_partition_is_said_again_before_the_next_round() -> None:
    net = Net(4)
    net.advance(1500, keep=lambda i, j, d: False)  # round 0 times out at 1.1 s; every round change is lost
    assert all(e.s.round == 1 for e in net.engines) and min(net.heights()) == 0
    net.advance(1000)  # healed; round 1's own timeout (2 s, backed off) would fire only at 3.1 s
    assert min(net.heights()) >= 1
    assert all(e.stats["resent"] >= 1 for e in net.engines)
    changes = [v for v in votes_of(net.sent[0]) if v.kind == ROUND_CHANGE and v.round == 1]
    assert len(changes) >= 2 and len(set(changes)) == 1  # the same signed vote, said again
