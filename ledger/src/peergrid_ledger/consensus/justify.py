"""QBFT's justification rules, as pure checks over one height's state.

Promises: `proposal_justified` accepts a round-r proposal (r > 0) only with a quorum of distinct, verified
round changes for exactly (height, r), and — when any of them prepared a value — only if the proposal
re-proposes the value of the highest prepared round with a quorum of verified prepares for it; it tells the
caller whether the block may instead be a fresh one. `prepare_quorum` checks such a certificate.
Assumes `check(vote)` verifies a vote's signature (and may note equivocation); never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .messages import NO_ROUND, PREPARE, ROUND_CHANGE, Vote
from .wal import HeightState

Check = Callable[[Vote], bool]


def prepare_quorum(
    s: HeightState, prepares: Sequence[Vote], round_: int, digest: bytes, check: Check
) -> bool:
    authors = set()
    for p in prepares:
        if (p.kind, p.height, p.round, p.digest) != (PREPARE, s.height, round_, digest):
            return False
        if p.author not in s.vset or not check(p):
            return False
        authors.add(p.author)
    return len(authors) >= s.quorum


def proposal_justified(
    s: HeightState, proposal: Vote, changes: Sequence[Vote], prepares: Sequence[Vote], check: Check
) -> bool | None:
    """None if unjustified; otherwise True when the block may be fresh, False when it must be the one
    prepared (and it is)."""
    authors = set()
    for change in changes:
        if change.kind != ROUND_CHANGE or change.height != s.height or change.round != proposal.round:
            return None
        if change.author not in s.vset or change.author in authors or change.prepared_round >= change.round:
            return None
        if not check(change):
            return None
        authors.add(change.author)
    if len(authors) < s.quorum:
        return None
    best = max(changes, key=lambda c: c.prepared_round)
    if best.prepared_round == NO_ROUND:
        return True
    if proposal.digest != best.digest:
        return None
    return False if prepare_quorum(s, prepares, best.prepared_round, best.digest, check) else None
