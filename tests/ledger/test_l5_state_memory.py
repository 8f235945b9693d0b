"""A replica's state tree over its store holds keys and leaf digests, not values (L5, docs/ledger-memory.md).

Every der_commitment, trade and bid of a market chain stays a state key for ever, so a replica that held every
value in memory grew with the chain's age (P6: ~340-430 B a key). Over a store the tree keeps what the root
needs (each key and its 32-byte leaf digest) and reads values back from LevelDB through a cache bounded in
bytes. These tests pin the bound structurally (values and bytes held, never timings) and that nothing a
replica sees moves: the same roots block after block, the same values read, the same state after a reopen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from peergrid_ledger import keyspace as ks
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.demo import NAMES, demo_genesis, demo_key
from peergrid_ledger.results import Accepted
from peergrid_ledger.state import Overlay, StateTree
from peergrid_ledger.store import BlockStore, StoreCorrupt

COMMITS = 300  # der_commitments, one a block: 300 keys the genesis did not have
CACHE = 4_000  # bytes of values the tree over the store may keep (a der_commitment's value is ~89 B)


class DictStore:
    """A stand-in store's state (`state.CommittedValues`) that counts its reads."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.reads = 0

    def state_value(self, key: bytes) -> bytes:
        self.reads += 1
        return self.values[key]

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(self.values.items()))

    def write(self, writes: dict[bytes, bytes | None]) -> None:  # as the store's batch does, before `commit`
        for key, value in writes.items():
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value


def commit(chain: LocalChain, interval: int) -> None:
    body = {"interval": interval, "root": hashlib.sha256(b"%d" % interval).digest(), "readings": 96}
    assert isinstance(chain.sign_and_submit(demo_key("mg1"), "der_commitment", body), Accepted)
    chain.seal()


def test_a_replica_over_its_store_keeps_a_bounded_cache_of_values_and_the_same_roots(tmp_path: Path) -> None:
    """A chain over LevelDB and one in memory, fed the same blocks: equal roots after every block; the store's
    tree holds no more than CACHE bytes of values however many keys it has (the in-memory one holds them all);
    every value reads back the same, and a reopened store gives the same state."""
    keys = {n: demo_key(n) for n in NAMES}
    genesis = demo_genesis(keys)
    store = BlockStore.create(tmp_path / "db", genesis)
    stored = LocalChain(genesis, keys["authority-a"], store)
    stored.state = store.load_state(cache_bytes=CACHE)  # the small bound, so 300 commits pass it many times
    stored._reset_pending()
    in_memory = LocalChain(genesis, keys["authority-a"])
    for interval in range(1, COMMITS + 1):
        commit(stored, interval)
        commit(in_memory, interval)
        assert stored.state.root == in_memory.state.root == stored.header(interval).state_root
    assert len(stored.state) == len(in_memory.state) >= COMMITS
    held, held_bytes = stored.state.held_values()
    all_held, all_bytes = in_memory.state.held_values()
    assert held_bytes <= CACHE and held < COMMITS // 4  # ~45 of ~89 B
    assert all_held == len(in_memory.state) and all_bytes > 6 * CACHE
    mg1 = keys["mg1"].public
    for interval in (1, COMMITS // 2, COMMITS):  # long evicted, and the newest
        key = ks.der_commitment(mg1, interval)
        assert stored.state.get(key) == in_memory.state.get(key) is not None
        assert Overlay(stored.state).get(key) == in_memory.state.get(key)
    assert stored.state.get(ks.der_commitment(mg1, COMMITS + 1)) is None
    assert stored.state.as_dict() == in_memory.state.as_dict()
    assert list(stored.state.items()) == list(in_memory.state.items())
    store.close()
    with BlockStore.open(tmp_path / "db") as again:
        reopened = again.load_state()
        assert reopened.root == in_memory.state.root and len(reopened) == len(in_memory.state)
        assert reopened.held_values() == (0, 0)  # opening reads every value once, keeps none
        assert reopened.get(ks.der_commitment(mg1, 7)) == in_memory.state.get(ks.der_commitment(mg1, 7))


def test_the_cache_keeps_the_newest_values_within_its_bytes_and_misses_never_reach_the_store() -> None:
    """Written values are cached (the next block reads them most), the oldest go first, a read moves a value to
    the newest end, a value larger than the whole cache is never kept, a deleted key is gone from cache and tree,
    and an absent key is answered from the tree's keys without a read of the store."""
    store = DictStore()
    store.values = {b"a": b"1" * 10, b"b": b"2" * 10}
    tree = StateTree.over_store("c", store, cache_bytes=30)
    memory = StateTree("c", dict(store.values))
    assert tree.root == memory.root and tree.held_values() == (0, 0)
    assert tree.get(b"a") == b"1" * 10 and store.reads == 1
    assert tree.get(b"a") == b"1" * 10 and store.reads == 1  # cached
    assert tree.get(b"zz") is None and store.reads == 1  # not a key: no read
    for step in ({b"c": b"3" * 10}, {b"d": b"4" * 10}, {b"big": b"5" * 31}, {b"b": None}):
        store.write(step)
        assert tree.root_after(step) == memory.root_after(step)
        tree.commit(step)
        memory.commit(step)
        assert tree.root == memory.root and len(tree) == len(memory)
        assert tree.held_values()[1] <= 30
    assert tree.held_values() == (3, 30)  # a, c, d: the oldest (a's read) would go next; big never kept
    reads = store.reads
    assert tree.get(b"big") == b"5" * 31 and store.reads == reads + 1
    assert tree.get(b"b") is None and store.reads == reads + 1
    assert len(tree) == 4  # a, c, d, big


def test_a_value_the_tree_holds_but_the_store_lost_is_a_loud_failure(tmp_path: Path) -> None:
    """The store is the replica's own: a state value gone from it is its corruption, raised, never `None`."""
    keys = {n: demo_key(n) for n in NAMES}
    with BlockStore.create(tmp_path / "db", demo_genesis(keys)) as store:
        state = store.load_state(cache_bytes=0)
        key = ks.account(keys["mg1"].public)
        assert state.get(key) is not None
        store._db.delete(b"st/" + key)
        with pytest.raises(StoreCorrupt, match="missing from the store"):
            state.get(key)


def test_a_negative_cache_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="cache_bytes must be 0 or more"):
        StateTree.over_store("c", DictStore(), cache_bytes=-1)
