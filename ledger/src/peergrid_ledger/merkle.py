"""SHA-256 Merkle trees exactly as RFC 6962 §2.1 (= RFC 9162 §2.1): roots and inclusion proofs.

Promises: leaf hash = SHA-256(0x00 || leaf), node hash = SHA-256(0x01 || left || right), the empty tree's root
is SHA-256(""), and an odd node is carried up unchanged (the "largest power of two smaller than n" split), so
no interior node can pass for a leaf (no second-preimage trick). `verify_inclusion` needs only the leaf, its
index, the tree size, the audit path and the root (e.g. a block header's `tx_root`), and returns a bool.
Pure; no I/O. Domain separation by chain and object type lives one level up: the root sits in a header whose
hash is domain-separated (see `hashing`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()
MAX_PROOF_LENGTH = 64


def leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    up = [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        up.append(level[-1])
    return up


def root_of_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root over already-hashed leaves."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 Merkle tree hash of `leaves` (raw leaf bytes)."""
    return root_of_hashes([_sha256(b"\x00" + leaf).digest() for leaf in leaves])


class MerkleTree:
    """All levels of one tree, kept so that many inclusion proofs cost O(log n) each."""

    __slots__ = ("levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        level = [_sha256(b"\x00" + leaf).digest() for leaf in leaves]
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            level = _next_level(level)
            self.levels.append(level)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.levels[0] else EMPTY_ROOT

    def proof(self, index: int) -> list[bytes]:
        """The audit path for leaf `index`, bottom-up (RFC 6962 PATH(m, D[n]))."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} outside a tree of {self.size}")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], expected_root: bytes
) -> bool:
    """True when `path` proves `leaf` is leaf number `index` of the tree of `tree_size` with `expected_root`."""
    if not 0 <= index < tree_size or len(path) > MAX_PROOF_LENGTH:
        return False
    fn, sn = index, tree_size - 1
    running = leaf_hash(leaf)
    for sibling in path:
        if len(sibling) != 32 or sn == 0:
            return False
        if fn & 1 or fn == sn:
            running = node_hash(sibling, running)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            running = node_hash(running, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and running == expected_root
