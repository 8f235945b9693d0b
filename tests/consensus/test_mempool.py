"""Mempool: dedup, nonce order, bounds, per-sender rate; invalid transactions never enter."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger import codec
from peergrid_ledger.consensus.app import Accepted, Rejected
from peergrid_ledger.consensus.mempool import Mempool, MempoolLimits, TxMeta
from peergrid_ledger.consensus.sim_app import PAY, SimKeys, make_tx

CHAIN = "mempool-chain"
KEYS = SimKeys()
ALICE, BOB, MALLORY = KEYS.key("alice"), KEYS.key("bob"), KEYS.key("mallory")


def pool(
    limits: MempoolLimits | None = None, nonces: dict[bytes, int] | None = None
) -> tuple[Mempool, dict[bytes, int]]:
    known = {ALICE.public, BOB.public}
    committed = nonces if nonces is not None else {}

    def check(tx: bytes) -> TxMeta | Rejected:
        try:
            kind, sender, nonce, body, signature = codec.decode(tx)
        except (codec.DecodeError, ValueError):
            return Rejected("malformed")
        if sender not in known:
            return Rejected("unknown sender")
        from peergrid_ledger import hashing

        if not KEYS.verify(
            sender, hashing.digest(hashing.TX, CHAIN, codec.encode([kind, sender, nonce, body])), signature
        ):
            return Rejected("bad signature")
        return TxMeta(tx[-16:], sender, nonce)

    return Mempool(check, lambda s: committed.get(s, 0), limits), committed


def tx(key, nonce: int, memo: bytes = b"") -> bytes:
    return make_tx(CHAIN, key, PAY, nonce, memo)


def test_invalid_never_enters() -> None:
    mempool, _ = pool()
    bad_signature = tx(ALICE, 0)[:-1] + b"\x00"
    assert isinstance(mempool.add(bad_signature, 0), Rejected)
    assert mempool.add(tx(MALLORY, 0), 0) == Rejected("unknown sender")
    assert isinstance(mempool.add(b"\xff\x00", 0), Rejected)
    assert len(mempool) == 0


def test_duplicates_and_used_nonces_are_refused() -> None:
    mempool, committed = pool()
    assert isinstance(mempool.add(tx(ALICE, 0), 0), Accepted)
    assert mempool.add(tx(ALICE, 0), 0) == Rejected("duplicate transaction")
    assert "pending" in mempool.add(tx(ALICE, 0, b"other"), 0).reason  # type: ignore[union-attr]
    committed[ALICE.public] = 1
    assert mempool.remove() == 1
    assert "already used" in mempool.add(tx(ALICE, 0, b"again"), 0).reason  # type: ignore[union-attr]
    assert "too far ahead" in mempool.add(tx(ALICE, 5000), 0).reason  # type: ignore[union-attr]


def test_holds_says_whether_a_senders_nonce_is_pending_until_it_leaves_the_pool() -> None:
    """What the edge asks before signing a move (own_nonce.own_pending): one lookup, no decoding of the pool."""
    mempool, committed = pool()
    assert not mempool.holds(ALICE.public, 0)
    assert isinstance(mempool.add(tx(ALICE, 0), 0), Accepted)
    assert mempool.holds(ALICE.public, 0)
    assert not mempool.holds(ALICE.public, 1) and not mempool.holds(BOB.public, 0)
    committed[ALICE.public] = 1
    assert mempool.remove() == 1 and not mempool.holds(ALICE.public, 0)


def test_reap_keeps_nonce_order_without_gaps_and_is_fair() -> None:
    mempool, _ = pool()
    for nonce in (2, 0, 1, 4):  # 3 is missing: 4 must wait
        mempool.add(tx(ALICE, nonce), 0)
    for nonce in range(3):
        mempool.add(tx(BOB, nonce), 0)
    reaped = mempool.reap(100, 1 << 20)
    assert reaped == [tx(ALICE, 0), tx(BOB, 0), tx(ALICE, 1), tx(BOB, 1), tx(ALICE, 2), tx(BOB, 2)]
    assert mempool.reap(3, 1 << 20) == reaped[:3]
    assert mempool.reap(100, len(tx(ALICE, 0)) * 2) == reaped[:2]


def test_bounds_and_rate() -> None:
    mempool, _ = pool(MempoolLimits(max_txs=3))
    for nonce in range(3):
        assert isinstance(mempool.add(tx(ALICE, nonce), 0), Accepted)
    assert mempool.add(tx(BOB, 0), 0) == Rejected("mempool full")
    mempool, _ = pool(MempoolLimits(max_per_sender=2))
    mempool.add(tx(ALICE, 0), 0)
    mempool.add(tx(ALICE, 1), 0)
    assert "too many" in mempool.add(tx(ALICE, 2), 0).reason  # type: ignore[union-attr]
    assert isinstance(mempool.add(tx(BOB, 0), 0), Accepted)
    mempool, _ = pool(MempoolLimits(rate_per_sender=10, burst_per_sender=2))
    assert isinstance(mempool.add(tx(ALICE, 0), 0), Accepted)
    assert isinstance(mempool.add(tx(ALICE, 1), 0), Accepted)
    assert mempool.add(tx(ALICE, 2), 0) == Rejected("sender over its rate")
    assert isinstance(mempool.add(tx(BOB, 0), 0), Accepted)  # one sender's rate does not hold back another
    assert isinstance(mempool.add(tx(ALICE, 2), 100), Accepted)  # 100 ms later a token is back
    big = MempoolLimits(max_bytes=2 * len(tx(ALICE, 0)))
    mempool, _ = pool(big)
    mempool.add(tx(ALICE, 0), 0)
    mempool.add(tx(ALICE, 1), 0)
    assert mempool.add(tx(BOB, 0), 0) == Rejected("mempool full")
    assert mempool.size_bytes == 2 * len(tx(ALICE, 0))


def test_discard_drops_one_transaction() -> None:
    mempool, _ = pool()
    first = tx(ALICE, 0)
    mempool.add(first, 0)
    mempool.discard(ALICE.public, 0)
    assert len(mempool) == 0 and mempool.size_bytes == 0
    assert isinstance(mempool.add(first, 0), Accepted)


def test_reap_is_always_gapless_per_sender_in_nonce_order() -> None:
    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from([0, 1]), st.integers(0, 12)), max_size=40), st.integers(1, 30))
    def check(adds: list[tuple[int, int]], limit: int) -> None:
        mempool, committed = pool(nonces={ALICE.public: 2})
        keys_ = [ALICE, BOB]
        for who, nonce in adds:
            mempool.add(tx(keys_[who], nonce), 0)
        reaped = mempool.reap(limit, 1 << 20)
        assert len(reaped) <= limit and len(set(reaped)) == len(reaped)
        for key in keys_:
            mine = [codec.decode(t)[2] for t in reaped if codec.decode(t)[1] == key.public]
            start = committed.get(key.public, 0)
            assert mine == list(range(start, start + len(mine)))

    check()
