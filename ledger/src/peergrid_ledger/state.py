"""Ledger state: a byte-keyed map of canonical values, its overlay for pending writes, and its state root.

Promises: `StateTree.root` is a pure function of the (key, value) set and the chain id, so two replicas that
applied the same blocks hold the same root; `root_after(writes)` previews a root without changing anything.
`Overlay` layers writes over any `StateReader` and never mutates what it reads. Pure; no I/O.

State root (see docs/ledger-format.md): each entry's leaf digest is `digest("state-leaf", chain,
encode([key, value]))`; an entry sits in bucket `int(sha256(key)[0:2]) >> 4` (4096 buckets); a bucket's digest
is SHA-256 over its leaf digests in increasing key order (SHA-256("") when empty); the root is
`digest("state", chain, concat(bucket digests 0..4095))`. Updating a block costs only its dirty buckets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from .codec import decode, encode, head
from .hashing import STATE, STATE_LEAF, digest, prefix

BUCKETS = 4096
_EMPTY_BUCKET = hashlib.sha256(b"").digest()

Writes = Mapping[bytes, bytes | None]


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


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
        if entries:
            self.commit(entries)

    # -- reading
    def get(self, key: bytes) -> bytes | None:
        return self._values.get(key)

    def __len__(self) -> int:
        return len(self._values)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(self._values.items()))

    def as_dict(self) -> dict[bytes, bytes]:
        return dict(self._values)

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
                if value is None:
                    self._values.pop(key, None)
                else:
                    self._values[key] = value
            for b, bucket in changed.items():
                self._buckets[b] = bucket
            self._bucket_digests = digests
            return
        dirty = set()
        for key, value in writes.items():
            b = bucket_of(key)
            dirty.add(b)
            if value is None:
                self._values.pop(key, None)
                self._buckets[b].pop(key, None)
            else:
                self._values[key] = value
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
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}
        if isinstance(base, Overlay):
            self._layers: tuple[dict[bytes, bytes | None], ...] = (self.writes, *base._layers)
            self._read_bottom: Callable[[bytes], bytes | None] = base._read_bottom
        else:
            self._layers = (self.writes,)
            # a committed tree is read straight from its map (one call less per read that misses every layer)
            self._read_bottom = base._values.get if type(base) is StateTree else base.get

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
