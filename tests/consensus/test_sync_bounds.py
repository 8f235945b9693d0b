"""Sync requests are served within bounds (review21 F7): on this node's sync topic only, dated and asked of
this node (a captured request cannot be replayed later or elsewhere), once each, and within a byte budget
per requester per window; every refusal is counted. A lagging replica still catches up by sync.

Real replicas (`ChainReplica` over LevelDB) on the seeded in-memory network (`LedgerNet`); the requests are
handed straight to one replica, as if they came off the broker."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger import codec, keys
from peergrid_ledger.consensus.ledger_net import CONFIG, LedgerNet
from peergrid_ledger.consensus.messages import (
    MessageError,
    SyncRequest,
    SyncResponse,
    decode_wire,
    encode_wire,
)
from peergrid_ledger.consensus.node import ChainReplica
from peergrid_ledger.consensus.sync_guard import MAX_REQUESTERS, SyncGuard
from peergrid_ledger.consensus.transport import BLOCK, CONSENSUS, SYNC, open_envelope, seal_envelope
from peergrid_ledger.genesis import Account, Genesis

T0 = 1_767_225_600_000
CHAIN = "sync-bounds"


def key(name: str) -> keys.Keypair:
    return keys.Keypair.from_seed(hashlib.sha256(b"sync-bounds/" + name.encode()).digest())


AUTHORITIES = [key(f"authority-{i}") for i in range(4)]
MEMBER = key("member")


class Published:
    """Stands in for the replica's transport: what it publishes, and to whom."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def publish(self, chain: str, kind: str, data: bytes, to: bytes | None = None) -> None:
        self.sent.append((kind, data, to))

    def responses(self) -> list[bytes]:
        return [data for kind, data, _ in self.sent if kind == SYNC]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LedgerNet]:
    genesis = Genesis(
        chain=CHAIN,
        time=T0,
        authorities=tuple(k.public for k in AUTHORITIES),
        accounts=(Account(MEMBER.public, ("anonym",), "member"),),
    )
    ledger = LedgerNet(tmp_path, genesis, AUTHORITIES, seed=7)
    ledger.run(2500)
    yield ledger
    for replica in ledger.replicas.values():
        replica.store.close()


def server(net: LedgerNet) -> tuple[ChainReplica, Published]:
    replica = net.replicas["n0"]
    published = Published()
    replica.transport = published
    assert replica.app.tip.height >= 10
    return replica, published


def request(at_ms: int, to: bytes, from_height: int = 1, kind: str = SYNC, count: int = 16) -> bytes:
    body = encode_wire(CHAIN, SyncRequest(from_height, count, at_ms, to))
    return seal_envelope(CHAIN, kind, MEMBER, body)


def test_the_second_identical_request_is_refused_and_counted(net: LedgerNet) -> None:
    replica, published = server(net)
    me = replica.keypair.public
    asked = request(net.now, me)
    replica.receive(SYNC, asked, net.now)
    replica.receive(SYNC, asked, net.now + 10)  # the same signed bytes again, within the window
    stats = net.stats("n0")
    assert stats["sync_served"] == 1 and stats["sync_refused_replay"] == 1
    (response,) = published.responses()
    message = decode_wire(CHAIN, open_envelope(CHAIN, response).body)
    assert isinstance(message, SyncResponse) and len(message.blocks) == CONFIG.sync_batch
    for _ in range(200):  # review21's replay: 200 copies of one request; one response in all
        replica.receive(SYNC, asked, net.now + 20)
    assert len(published.responses()) == 1 and net.stats("n0")["sync_refused_replay"] == 201


def test_a_request_on_the_broadcast_topics_is_not_answered(net: LedgerNet) -> None:
    replica, published = server(net)
    me = replica.keypair.public
    replica.receive(CONSENSUS, request(net.now, me, kind=CONSENSUS), net.now)
    replica.receive(BLOCK, request(net.now + 1, me, kind=BLOCK), net.now)
    assert net.stats("n0")["sync_refused_topic"] == 2 and published.responses() == []
    replica.receive(SYNC, request(net.now + 2, me), net.now)  # the same requester on the sync topic: served
    assert len(published.responses()) == 1


def test_a_capture_replayed_later_or_to_another_node_is_refused(net: LedgerNet) -> None:
    replica, published = server(net)
    me, other = replica.keypair.public, AUTHORITIES[1].public
    max_age = CONFIG.sync_retry_ms + CONFIG.max_future_drift_ms
    replica.receive(SYNC, request(net.now - max_age - 1, me), net.now)  # captured, replayed later
    replica.receive(SYNC, request(net.now + CONFIG.max_future_drift_ms + 1, me), net.now)  # from the future
    replica.receive(SYNC, request(net.now, other), net.now)  # asked of n1, replayed to n0
    stats = net.stats("n0")
    assert stats["sync_refused_stale"] == 2 and stats["sync_refused_elsewhere"] == 1
    assert published.responses() == []
    replica.receive(SYNC, request(net.now - max_age, me), net.now)  # as old as it may be: still served
    assert len(published.responses()) == 1


def test_an_undated_request_still_decodes_and_is_refused(net: LedgerNet) -> None:
    """The request format before `at`/`to` (every replica of a deployment runs one version): decoded, so the
    refusal says why, and never served (it cannot be told from a replay)."""
    replica, published = server(net)
    old = codec.encode({"c": CHAIN, "t": "sync-req", "f": 1, "n": 16})
    assert decode_wire(CHAIN, old) == SyncRequest(1, 16)
    assert encode_wire(CHAIN, SyncRequest(1, 16)) == old
    replica.receive(SYNC, seal_envelope(CHAIN, SYNC, MEMBER, old), net.now)
    assert net.stats("n0")["sync_refused_undated"] == 1 and published.responses() == []


def test_a_dated_request_round_trips_and_a_half_dated_one_is_malformed() -> None:
    dated = SyncRequest(5, 16, T0 + 1234, AUTHORITIES[2].public)
    raw = encode_wire(CHAIN, dated)
    assert decode_wire(CHAIN, raw) == dated
    assert set(codec.decode(raw)) == {"c", "t", "f", "n", "a", "o"}
    for half in (
        {"a": T0},
        {"o": AUTHORITIES[2].public},
        {"a": T0, "o": b"short"},
        {"a": -1, "o": bytes(32)},
    ):
        body = codec.encode({"c": CHAIN, "t": "sync-req", "f": 5, "n": 16, **half})
        with pytest.raises(MessageError):
            decode_wire(CHAIN, body)


def test_one_requester_is_served_about_one_full_response_per_window(net: LedgerNet) -> None:
    replica, published = server(net)
    me, now = replica.keypair.public, net.now
    replica.sync_guard.budget_bytes = 3000  # a few small responses' worth
    for i in range(50):  # fresh, signed, distinct requests: a member asking as fast as it can
        replica.receive(SYNC, request(now + i, me, from_height=1 + i % 5), now + i)
    served = len(published.responses())
    spent = sum(len(data) for data in published.responses())
    assert 1 <= served < 50 and spent - max(map(len, published.responses())) < 3000
    assert net.stats("n0")["sync_refused_rate"] == 50 - served
    later = now + CONFIG.sync_retry_ms  # the next window: served again
    replica.receive(SYNC, request(later, me), later)
    assert len(published.responses()) == served + 1


def test_a_lagging_replica_still_catches_up_by_sync(net: LedgerNet) -> None:
    net.sim.partition([["n0", "n1", "n2"], ["n3"]])
    net.run(20_000)
    ahead, behind = net.replicas["n0"].app.tip.height, net.replicas["n3"].app.tip.height
    assert ahead >= behind + 3 * CONFIG.sync_batch  # several batches behind: pipelined catch-up
    net.sim.heal()
    net.run(5000)
    heights = {name: r.app.tip.height for name, r in net.replicas.items()}
    assert heights["n3"] >= ahead and len(net.heads()) == 1, heights
    assert net.stats("n3")["committed_via_sync"] >= ahead - behind - 2
    served = sum(net.stats(n).get("sync_served", 0) for n in ("n0", "n1", "n2"))
    assert served >= (ahead - behind) // CONFIG.sync_batch


def test_the_guard_keeps_a_bounded_number_of_requesters_and_takes_a_pipelined_request_in_the_same_ms() -> (
    None
):
    guard = SyncGuard(b"me", window_ms=100, budget_bytes=10, max_age_ms=50, max_drift_ms=5)
    assert guard.admit(b"r", SyncRequest(1, 16, 1000, b"me"), True, 1000) is None
    guard.served(b"r", 4)
    assert guard.admit(b"r", SyncRequest(17, 16, 1000, b"me"), True, 1000) is None  # asks for more, same ms
    assert guard.admit(b"r", SyncRequest(1, 16, 1000, b"me"), True, 1000) == "sync_refused_replay"
    guard.served(b"r", 6)
    assert guard.admit(b"r", SyncRequest(33, 16, 1001, b"me"), True, 1001) == "sync_refused_rate"
    assert guard.admit(b"r", SyncRequest(33, 16, 1100, b"me"), True, 1100) is None  # a new window
    for i in range(MAX_REQUESTERS + 10):
        guard.admit(i.to_bytes(4, "big"), SyncRequest(1, 1, 1100, b"me"), True, 1100)
    assert len(guard._requesters) == MAX_REQUESTERS
    assert b"r" not in guard._requesters  # the least recent went first


asks = st.lists(
    st.tuples(
        st.sampled_from([b"r1", b"r2"]),  # requester
        st.sampled_from([0, 0, 0, 1, 20, 400]),  # how far time moves on before this request (ms)
        st.sampled_from([-70, -60, -5, 0, 0, 10, 11]),  # its asked-at, relative to now (fresh: -60..10)
        st.integers(min_value=1, max_value=2),  # from height
        st.booleans() | st.just(True),  # on the sync topic
        st.sampled_from([b"me", b"me", b"me", b"other", None]),  # asked of (None: undated)
        st.integers(min_value=0, max_value=40),  # bytes the answer takes
    ),
    max_size=120,
)


@given(asks)
@settings(max_examples=400, deadline=None)
def test_whatever_arrives_the_guard_serves_each_request_once_and_within_the_budget(
    sequence: list[tuple[bytes, int, int, int, bool, bytes | None, int]],
) -> None:
    guard = SyncGuard(b"me", window_ms=300, budget_bytes=50, max_age_ms=60, max_drift_ms=10)
    now = 1000
    taken: set[tuple[bytes, int, int]] = set()
    last: dict[bytes, tuple[int, int]] = {}
    served: dict[bytes, list[tuple[int, int]]] = {}
    window: dict[bytes, tuple[int, int]] = {}
    for requester, step, offset, from_height, on_topic, to, size in sequence:
        now += step
        at = None if to is None else now + offset
        refusal = guard.admit(requester, SyncRequest(from_height, 16, at, to), on_topic, now)
        if refusal is not None:
            continue
        assert on_topic and to == b"me" and at is not None
        assert now - 60 <= at <= now + 10
        assert (requester, at, from_height) not in taken  # never twice, replayed or not
        assert (at, from_height) > last.get(requester, (-1, 0))  # always newer than the last taken
        taken.add((requester, at, from_height))
        last[requester] = (at, from_height)
        start, spent = window.get(requester, (-(10**9), 0))
        if (
            now >= start + 300
        ):  # the requester's window: from the first request taken after the last one ended
            start, spent = now, 0
        assert spent < 50  # taken only while its window's budget is not spent
        window[requester] = (start, spent + size)
        guard.served(requester, size)
        served.setdefault(requester, []).append((now, size))
    # Any 300 ms meets at most two of the guard's windows, and each serves while less than the budget (50) is
    # spent: at most 49 plus one answer (<= 40) that crosses it.
    for answers in served.values():
        for start, _ in answers:
            assert sum(size for when, size in answers if start <= when < start + 300) <= 2 * (49 + 40)
