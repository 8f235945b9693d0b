"""Ledger state: a byte-keyed map of canonical values, its overlay for pending writes, and its state root.

Promises: `StateTree.root` is a pure function of the (key, value) set and the chain id, so two replicas that
applied the same blocks hold the same root; `root_after(writes)` previews a root without changing anything.
`Overlay` layers writes over any `StateReader` and never mutates what it reads. Pure; no I/O of its own.

Where the values live: a tree built with `StateTree(chain, entries)` holds every value in memory (genesis states,
in-memory chains, replays). A tree over a store (`StateTree.over_store`, what `BlockStore.load_state` gives a
replica) holds only each key and its 32-byte leaf digest - what the root needs - and reads a value back from
the store when asked, keeping the most recently read or written ones up to `cache_bytes` of value bytes
(`VALUE_CACHE_BYTES`). It assumes the store already holds a block's writes when the tree commits them (the
store's one batch first, then `commit`, as every replica does), and that nothing else writes the store's state.
A value the tree has but the store lost is the store's corruption, raised by the store's reader, never `None`.
Like the rest of a replica, a tree is read and committed on its replica's one thread (another thread asks
there, as the DSO's `EmbeddedLoop.call` does); nothing in it is guarded against a reader on another thread.
The root is computed the same way in both; only where the values are kept differs (docs/ledger-memory.md).
A tree in memory and its overlays copy (`copy.deepcopy`, pickle) into ones that read the copy's own values; a
tree over a store refuses to be copied (TypeError): its values are its store's.

State root (see docs/ledger-format.md): each entry's leaf digest is `digest("state-leaf", chain,
encode([key, value]))`; an entry sits in bucket `int(sha256(key)[0:2]) >> 4` (4096 buckets); a bucket's digest
is SHA-256 over its leaf digests in increasing key order (SHA-256("") when empty); the root is
`digest("state", chain, concat(bucket digests 0..4095))`. Updating a block costs only its dirty buckets.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from .codec import decode, encode, head
from .hashing import STATE, STATE_LEAF, digest, prefix

BUCKETS = 4096
VALUE_CACHE_BYTES = 4 * 1024 * 1024
"""The value bytes a tree over a store keeps of its most recently read or written values (~10,000-30,000 values
of a market chain: 89-677 B each, docs/ledger-memory.md); the rest are read back from the store."""
_EMPTY_BUCKET = hashlib.sha256(b"").digest()

Writes = Mapping[bytes, bytes | None]


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class CommittedValues(Protocol):
    """Where a tree over a store reads its committed values back: the store's state, which holds a block's
    writes before the tree commits them."""

    def state_value(self, key: bytes) -> bytes:
        """The stored value of `key`, which the state holds; raises (the store's corruption) if missing."""
        ...

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every stored (key, value), in increasing key order."""
        ...


def bucket_of(key: bytes) -> int:
    h = hashlib.sha256(key).digest()
    return (h[0] << 4) | (h[1] >> 4)


class StateTree:
    """The committed state of one chain, with cached bucket digests for a cheap root after each block."""

    def __init__(self, chain_id: str, entries: Mapping[bytes, bytes] | None = None) -> None:
        self.chain_id = chain_id
        self._leaf_prefix = prefix(STATE_LEAF, chain_id)
        # updated in place, never replaced: an `Overlay` over this tree reads it directly
        self._values: dict[bytes, bytes] = {}
        self._preview: tuple[dict[bytes, bytes | None], dict[int, dict[bytes, bytes]], list[bytes]] | None = (
            None
        )
        self._buckets: list[dict[bytes, bytes]] = [{} for _ in range(BUCKETS)]
        self._bucket_digests: list[bytes] = [_EMPTY_BUCKET] * BUCKETS
        self._stored: CommittedValues | None = None
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()  # over a store: recent values, oldest first
        self._cache_bytes = 0
        self.cache_bytes = 0
        # over a store: every key, so that a read of an absent key (most misses) costs no bucket hash nor store
        # read; ~30-50 B a key, a seventh of what the values cost (docs/ledger-memory.md)
        self._keys: set[bytes] = set()
        self.read: Callable[[bytes], bytes | None] = self._values.get
        """The committed value of a key (= `get`): the map's own `get` when the values are in memory."""
        if entries:
            self.commit(entries)

    @classmethod
    def over_store(
        cls, chain_id: str, stored: CommittedValues, cache_bytes: int = VALUE_CACHE_BYTES
    ) -> StateTree:
        """The tree of `stored`'s state, holding keys and leaf digests only; values are read back from `stored`
        through a cache of at most `cache_bytes`."""
        if cache_bytes < 0:
            raise ValueError(f"cache_bytes must be 0 or more, not {cache_bytes}")
        tree = cls(chain_id)
        tree._stored, tree.cache_bytes, tree.read = stored, cache_bytes, tree._read_stored
        buckets, keys = tree._buckets, tree._keys
        for key, value in stored.state_items():
            buckets[bucket_of(key)][key] = tree._leaf(key, value)
            keys.add(key)
        tree._bucket_digests = [tree._bucket_digest(bucket) for bucket in buckets]
        return tree

    # -- copying (copy.deepcopy, pickle): the copy's reader is bound to the copy's own values
    def __getstate__(self) -> dict[str, Any]:
        """Everything but `read`, which `__setstate__` binds anew. Kept as it is, the reader of a tree in memory is
        its map's builtin `get`, which `copy.deepcopy` takes as atomic: the copy would read the original's values
        for ever, never what it commits (L6: a copied chain venue re-cleared its session without end)."""
        if self._stored is not None:
            raise TypeError(
                "a tree over a store is not copied: its values are its store's, written by its replica"
            )
        state = dict(self.__dict__)
        del state["read"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.read = self._values.get

    # -- reading
    def get(self, key: bytes) -> bytes | None:
        return self.read(key)

    def _read_stored(self, key: bytes) -> bytes | None:
        cache = self._cache
        value = cache.get(key)
        if value is not None:
            cache.move_to_end(key)
            return value
        if key not in self._keys:
            return None
        assert self._stored is not None
        value = self._stored.state_value(key)
        self._remember(key, value)
        return value

    def _remember(self, key: bytes, value: bytes | None) -> None:
        """Cache `value` as the newest (None: forget `key`), dropping the oldest beyond `cache_bytes`."""
        cache = self._cache
        old = cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= len(old)
        if value is None or len(value) > self.cache_bytes:
            return
        cache[key] = value
        self._cache_bytes += len(value)
        while self._cache_bytes > self.cache_bytes:
            _, dropped = cache.popitem(last=False)
            self._cache_bytes -= len(dropped)

    def held_values(self) -> tuple[int, int]:
        """How many values this tree holds in memory, and their bytes: all of them, or over a store the cache's."""
        if self._stored is None:
            return len(self._values), sum(len(v) for v in self._values.values())
        return len(self._cache), self._cache_bytes

    def __len__(self) -> int:
        return len(self._values) if self._stored is None else len(self._keys)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        if self._stored is not None:
            return self._stored.state_items()
        return iter(sorted(self._values.items()))

    def as_dict(self) -> dict[bytes, bytes]:
        if self._stored is not None:
            return dict(self._stored.state_items())
        return dict(self._values)

    def _set_value(self, key: bytes, value: bytes | None) -> None:
        if self._stored is None:
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value
        elif value is None:
            self._keys.discard(key)
            self._remember(key, None)
        else:
            self._keys.add(key)
            self._remember(key, value)  # what a block wrote is what the next ones read most

    # -- committing
    def _leaf(self, key: bytes, value: bytes) -> bytes:
        # = sha256(prefix || encode([key, value])), spelled out: this runs for every write of every block
        return hashlib.sha256(
            b"".join((self._leaf_prefix, b"\x82", head(2, len(key)), key, head(2, len(value)), value))
        ).digest()

    @staticmethod
    def _bucket_digest(bucket: Mapping[bytes, bytes]) -> bytes:
        if not bucket:
            return _EMPTY_BUCKET
        return hashlib.sha256(b"".join(bucket[k] for k in sorted(bucket))).digest()

    def _root_from(self, digests: list[bytes]) -> bytes:
        return digest(STATE, self.chain_id, b"".join(digests))

    @property
    def root(self) -> bytes:
        return self._root_from(self._bucket_digests)

    def root_after(self, writes: Writes) -> bytes:
        """The root the state would have after `writes`, without applying them. The work is kept so that
        committing the same writes next (the usual order: validate a block, then commit it) is cheap."""
        changed: dict[int, dict[bytes, bytes]] = {}
        for key, value in writes.items():
            b = bucket_of(key)
            bucket = changed.get(b)
            if bucket is None:
                bucket = changed[b] = dict(self._buckets[b])
            if value is None:
                bucket.pop(key, None)
            else:
                bucket[key] = self._leaf(key, value)
        digests = list(self._bucket_digests)
        for b, bucket in changed.items():
            digests[b] = self._bucket_digest(bucket)
        self._preview = (dict(writes), changed, digests)
        return self._root_from(digests)

    def commit(self, writes: Writes) -> None:
        preview, self._preview = self._preview, None
        if preview is not None and preview[0] == writes:
            _, changed, digests = preview
            for key, value in writes.items():
                self._set_value(key, value)
            for b, bucket in changed.items():
                self._buckets[b] = bucket
            self._bucket_digests = digests
            return
        dirty = set()
        for key, value in writes.items():
            b = bucket_of(key)
            dirty.add(b)
            self._set_value(key, value)
            if value is None:
                self._buckets[b].pop(key, None)
            else:
                self._buckets[b][key] = self._leaf(key, value)
        for b in dirty:
            self._bucket_digests[b] = self._bucket_digest(self._buckets[b])


class Overlay:
    """Pending writes over a reader; reads see the writes first. Never mutates `base`.

    Overlays stack (transaction over block over committed state); a read looks through every layer's
    write dict directly rather than calling down the stack, because reads are most of a transaction's cost.
    """

    __slots__ = ("_layers", "_read_bottom", "base", "writes")

    def __init__(self, base: StateReader) -> None:
        self._bind(base, {})

    def _bind(self, base: StateReader, writes: dict[bytes, bytes | None]) -> None:
        self.base = base
        self.writes = writes
        if isinstance(base, Overlay):
            self._layers: tuple[dict[bytes, bytes | None], ...] = (self.writes, *base._layers)
            self._read_bottom: Callable[[bytes], bytes | None] = base._read_bottom
        else:
            self._layers = (self.writes,)
            # a committed tree's own reader (in memory: its map's get, one call less per read that misses every
            # layer)
            self._read_bottom = base.read if type(base) is StateTree else base.get

    # copy.deepcopy and pickle: the layers and the bottom reader are bound anew to the copied base (kept as they
    # are, a bottom reader that is a tree's builtin map `get` would still read the original tree)
    def __getstate__(self) -> tuple[StateReader, dict[bytes, bytes | None]]:
        return self.base, self.writes

    def __setstate__(self, state: tuple[StateReader, dict[bytes, bytes | None]]) -> None:
        self._bind(*state)

    def get(self, key: bytes) -> bytes | None:
        # most reads miss every layer: a membership test per layer is cheaper than a `get` with a default
        for layer in self._layers:
            if key in layer:
                return layer[key]
        return self._read_bottom(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def merge(self, writes: Writes) -> None:
        self.writes.update(writes)

    # typed helpers: every state value is a canonical encoding
    def get_obj(self, key: bytes) -> Any:
        raw = self.get(key)
        return None if raw is None else decode(raw)

    def put_obj(self, key: bytes, value: Any) -> None:
        self.writes[key] = encode(value)


def read_obj(state: StateReader, key: bytes) -> Any:
    raw = state.get(key)
    return None if raw is None else decode(raw)
