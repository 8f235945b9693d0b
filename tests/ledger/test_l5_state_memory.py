"""A replica's state tree over its store holds keys and leaf digests, not values (L5, docs/ledger-memory.md).

Every der_commitment, trade and bid of a market chain stays a state key for ever, so a replica that held every
value in memory grew with the chain's age (P6: ~340-430 B a key). Over a store the tree keeps what the root
needs (each key and its 32-byte leaf digest) and reads values back from LevelDB through a cache bounded in
bytes. These tests pin the bound structurally (values and bytes held, never timings) and that nothing a
replica sees moves: the same roots block after block, the same values read, the same state after a reopen.

L6: the first landing (25bc4b9) stored each tree's reader as an attribute, for a tree in memory its map's builtin
`get`, which `copy.deepcopy` keeps as it is: a copied chain read the original's values, never what it committed,
and the controller's day-ahead tests (which play each day on a deep copy of a chain venue) re-cleared one
exchange session without end. The copy tests below pin that a copy reads its own values, without timing.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
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
    # a read moves a value to the newest end, and the oldest goes first: reading a puts c oldest, which e drops
    assert tree.get(b"a") == b"1" * 10 and store.reads == reads + 1
    store.write({b"e": b"6" * 10})
    tree.commit({b"e": b"6" * 10})
    assert tree.held_values() == (3, 30)
    assert [tree.get(k) for k in (b"d", b"a", b"e")] == [b"4" * 10, b"1" * 10, b"6" * 10]
    assert store.reads == reads + 1  # d, a and e were kept
    assert tree.get(b"c") == b"3" * 10 and store.reads == reads + 2  # c was dropped: read back


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


def test_a_replica_over_its_store_reads_each_value_from_the_store_once_block_after_block(
    tmp_path: Path,
) -> None:
    """A block reads what recent blocks wrote (nonces, the open interval's keys), which the cache holds: over
    300 blocks a replica reads only the few keys no block rewrote, each once (no cache that thrashes)."""
    keys = {n: demo_key(n) for n in NAMES}
    genesis = demo_genesis(keys)
    with BlockStore.create(tmp_path / "db", genesis) as store:
        read_back: list[bytes] = []
        state_value = store.state_value
        store.state_value = lambda key: (read_back.append(key), state_value(key))[1]  # type: ignore[method-assign]
        chain = LocalChain(genesis, keys["authority-a"], store)
        for interval in range(1, COMMITS + 1):
            commit(chain, interval)
        # mg1's account and the authority set, each once: every other key a block reads, a recent block wrote
        assert sorted(read_back) == sorted([ks.account(keys["mg1"].public), ks.AUTHSET])
        assert chain.state.held_values()[0] > COMMITS  # every block's writes, well within the default bound


def test_a_copied_chain_reads_the_state_it_commits_not_the_original_s() -> None:
    """copy.deepcopy of an in-memory chain (a chain venue's day played on a copy): the copy's state, its pending
    view and its sealed blocks read the copy's values; the original stays as it was."""
    keys = {n: demo_key(n) for n in NAMES}
    origin = LocalChain(demo_genesis(keys), keys["authority-a"])
    commit(origin, 1)
    copied = copy.deepcopy(origin)
    assert copied.state.get(ks.der_commitment(keys["mg1"].public, 1)) is not None
    for interval in (2, 3):  # the second reads the nonce the first committed on the copy
        commit(copied, interval)
    later = ks.der_commitment(keys["mg1"].public, 3)
    assert copied.state.get(later) is not None and copied.view.get(later) == copied.state.get(later)
    assert origin.state.get(later) is None and origin.view.get(later) is None
    assert len(copied.state) == len(origin.state) + 2 and copied.state.root != origin.state.root
    commit(origin, 2)  # the original goes on alone
    assert origin.state.get(later) is None and copied.height == 3 and origin.height == 2


def test_a_copied_tree_and_its_overlays_read_the_copy() -> None:
    """A tree in memory copies (deepcopy, pickle) with its own reader, and overlays over it (stacked) read
    the copied tree and their own copied writes, never the original's."""
    tree = StateTree("c", {b"a": b"1"})
    block = Overlay(tree)
    block.put(b"b", b"2")
    tx = Overlay(block)
    tx.put(b"c", b"3")
    tx_copy = copy.deepcopy(tx)
    tree_copy = tx_copy.base.base  # type: ignore[attr-defined]
    assert isinstance(tree_copy, StateTree) and tree_copy is not tree and tree_copy.root == tree.root
    tree_copy.commit({b"a": b"9", b"d": b"4"})
    tx_copy.put(b"e", b"5")
    assert [tx_copy.get(k) for k in (b"a", b"b", b"c", b"d", b"e")] == [b"9", b"2", b"3", b"4", b"5"]
    assert [tx.get(k) for k in (b"a", b"b", b"c", b"d", b"e")] == [b"1", b"2", b"3", None, None]
    assert tree.get(b"d") is None and Overlay(tree_copy).get(b"d") == b"4"
    unpickled = pickle.loads(pickle.dumps(tree))
    unpickled.commit({b"f": b"6"})
    assert unpickled.get(b"f") == b"6" and tree.get(b"f") is None
    assert StateTree("c", {b"a": b"1", b"f": b"6"}).root == unpickled.root


def test_a_tree_over_a_store_is_not_copied() -> None:
    """Its values are its store's, which only its replica writes: a copy could only read another's values."""
    tree = StateTree.over_store("c", DictStore())
    with pytest.raises(TypeError, match="a tree over a store is not copied"):
        copy.deepcopy(tree)
    with pytest.raises(TypeError, match="a tree over a store is not copied"):
        pickle.dumps(tree)
