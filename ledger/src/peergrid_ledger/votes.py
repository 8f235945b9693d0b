"""What consensus signatures sign: one domain-separated digest per (chain, height, round, step, block hash).

Promises: `vote_digest` is the only message an authority signs for consensus, so a block seal
(step "propose") and a commit vote (step "commit") can never be confused with each other or with a
transaction, and two different digests for one (signer, height, round, step) are equivocation. Pure.
"""

from __future__ import annotations

from .codec import encode
from .hashing import VOTE, digest
from .keys import verify

PROPOSE = "propose"
PREPARE = "prepare"
COMMIT = "commit"
ROUND_CHANGE = "round-change"
STEPS = frozenset({PROPOSE, PREPARE, COMMIT, ROUND_CHANGE})


def vote_digest(chain: str, height: int, round_: int, step: str, block_hash: bytes) -> bytes:
    if step not in STEPS:
        raise ValueError(f"unknown vote step {step!r}")
    return digest(VOTE, chain, encode([height, round_, step, block_hash]))


def vote_ok(
    chain: str, height: int, round_: int, step: str, block_hash: bytes, signer: bytes, signature: bytes
) -> bool:
    return step in STEPS and verify(signer, vote_digest(chain, height, round_, step, block_hash), signature)
