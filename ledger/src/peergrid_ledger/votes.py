"""What consensus signatures sign: one domain-separated digest per (chain, height, round, step, block hash).

Promises: `vote_digest` is the only message an authority signs for consensus, so a block seal
(step "propose") and a commit vote (step "commit") can never be confused with each other or with a
transaction, and two different digests for one (signer, height, round, step) are equivocation. `vote_ok`
checks with the `verify` it is given (a replica's signature cache, `consensus.sigcache`: a seal its engine
checked as a proposal's vote is not checked again), by default `keys.verify`; its verdict is that of
`keys.verify` either way. Pure.
"""

from __future__ import annotations

from collections.abc import Callable

from . import keys
from .codec import encode
from .hashing import VOTE, digest

PROPOSE = "propose"
PREPARE = "prepare"
COMMIT = "commit"
ROUND_CHANGE = "round-change"
STEPS = frozenset({PROPOSE, PREPARE, COMMIT, ROUND_CHANGE})
Verify = Callable[[bytes, bytes, bytes], bool]
"""verify(public_key, message, signature) -> bool, never raising, answering as `keys.verify` does."""


def vote_digest(chain: str, height: int, round_: int, step: str, block_hash: bytes) -> bytes:
    if step not in STEPS:
        raise ValueError(f"unknown vote step {step!r}")
    return digest(VOTE, chain, encode([height, round_, step, block_hash]))


def vote_ok(
    chain: str,
    height: int,
    round_: int,
    step: str,
    block_hash: bytes,
    signer: bytes,
    signature: bytes,
    verify: Verify = keys.verify,
) -> bool:
    return step in STEPS and verify(signer, vote_digest(chain, height, round_, step, block_hash), signature)
