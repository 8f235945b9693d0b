"""Signature checks remembered: each (key, message, signature) is verified once per node.

Promises: `SignatureCache(verify)` is a `VerifyFn` that answers exactly as `verify` would, calling it only
for a triple it has not seen verify before; it remembers successes only (a forgery is re-checked, and costs
its sender as much as before), at most `capacity` of them, the oldest forgotten first. The key is the whole
triple, never the signature alone: a valid signature re-labelled with another author or another vote must
miss the cache and fail (a cache keyed by signature would let a relay count one authority's vote as
another's). One node's consensus messages meet the same signature several times — a proposal's vote is the
block's seal, commit votes come back as the seals of the block announcement's certificate, round changes
and prepares ride again inside justifications, QoS 1 delivers duplicates.
Must never do I/O or raise.
"""

from __future__ import annotations

from .app import VerifyFn

CAPACITY = 16_384
"""About 150 heights of 31 authorities' votes and envelopes; ~3 MB."""


class SignatureCache:
    def __init__(self, verify: VerifyFn, capacity: int = CAPACITY) -> None:
        self.inner = verify
        self.capacity = capacity
        self._good: dict[tuple[bytes, bytes, bytes], None] = {}
        self.hits = 0
        self.checks = 0

    def __call__(self, public: bytes, message: bytes, signature: bytes) -> bool:
        key = (public, message, signature)
        if key in self._good:
            self.hits += 1
            return True
        self.checks += 1
        if not self.inner(public, message, signature):
            return False
        good = self._good
        good[key] = None
        if len(good) > self.capacity:
            del good[next(iter(good))]
        return True

    def __len__(self) -> int:
        return len(self._good)


def cached(verify: VerifyFn) -> SignatureCache:
    """`verify` itself if it already caches, else a cache around it (one per node, shared by its parts)."""
    return verify if isinstance(verify, SignatureCache) else SignatureCache(verify)
