"""Domain-separated SHA-256: one hash function per object type and chain.

Promises: `digest(domain, chain_id, data)` is SHA-256 over `prefix(domain, chain_id) || data`, where the prefix
is the canonical encoding of the array `["peergrid/1", domain, chain_id]`. The prefix is self-delimiting, so no
two (domain, chain, data) triples share a preimage: a transaction hash can never equal a header hash, and an
object hashed for one chain never verifies on another. Pure; no I/O.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from .codec import encode

VERSION_TAG = "peergrid/1"

# The domains in use. Anything signed is a digest from exactly one of these.
TX = "tx"
HEADER = "header"
VOTE = "vote"
GENESIS = "genesis"
STATE = "state"
STATE_LEAF = "state-leaf"
EVIDENCE = "evidence"
CIPHERTEXT = "ciphertext"

DOMAINS = frozenset({TX, HEADER, VOTE, GENESIS, STATE, STATE_LEAF, EVIDENCE, CIPHERTEXT})


@lru_cache(maxsize=256)
def prefix(domain: str, chain_id: str) -> bytes:
    if domain not in DOMAINS:
        raise ValueError(f"unknown hash domain {domain!r}")
    return encode([VERSION_TAG, domain, chain_id])


def digest(domain: str, chain_id: str, data: bytes) -> bytes:
    """SHA-256 of `data` in the given domain and chain (32 bytes)."""
    return hashlib.sha256(prefix(domain, chain_id) + data).digest()


def plain_sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
