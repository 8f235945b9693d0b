"""The engine's own votes and proposals, and the quorums they complete: propose, prepare, commit, decide.

Promises: we never sign two different votes for one slot (kind, round) of a height, every vote we sign is
marked for the WAL before it is broadcast (a prepare written, anything else synced: `WRITE`, `SYNC`), and we
prepare after a restart only what the WAL shows we may have said (`amnesia_round`). A round-change proposal
re-proposes the highest prepared block of its quorum with that block's prepare certificate. A block is
decided only with commit votes of a quorum for its own header round.
Assumes the engine (`engine.Engine`) owns the height's state and performs the round moves and commits;
these functions act on it and append to its actions. Must never read a clock or touch a socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import admission, catchup
from .actions import Broadcast
from .app import BlockInfo, Rejected
from .messages import (
    COMMIT,
    NO_ROUND,
    PREPARE,
    PROPOSAL,
    ROUND_CHANGE,
    ConsensusMessage,
    Vote,
    encode_wire,
    make_certificate,
    sign_vote,
)

if TYPE_CHECKING:
    from .engine import Engine

WRITE, SYNC = 1, 2
"""What the WAL needs before an event's actions go out: WRITE (a prepare: written, not synced) or SYNC
(everything else we say, and round moves: written and synced)."""


def cast(
    engine: Engine,
    kind: str,
    round_: int,
    digest: bytes,
    prepared_round: int = NO_ROUND,
    again: bool = False,
) -> Vote | None:
    """Sign, log and broadcast our vote for a slot, unless we already voted differently there
    (`again`: say an identical earlier vote once more)."""
    s = engine.s
    if engine.signer is None or engine.me not in s.vset or engine._halted():
        return None
    previous = s.sent.get((kind, round_))
    if previous is not None:
        if (previous.digest, previous.prepared_round) != (digest, prepared_round):
            return None
        if again:
            engine._log = SYNC  # what we prepared has moved on
            engine._out.append(Broadcast(encode_wire(engine.chain_id, dress(engine, previous, None))))
        return previous
    if kind == PREPARE and round_ <= s.amnesia_round and not _own_proposal(engine, round_, digest):
        engine.stats["prepare_withheld"] += 1  # we may have prepared another block here before a crash
        return None
    vote = sign_vote(
        engine.chain_id, engine.signer.sign, engine.me, kind, s.height, round_, digest, prepared_round
    )
    s.sent[(kind, round_)] = vote
    # a prepare is written but not synced (the rule above covers one a power cut loses); the rest is synced
    engine._log = max(engine._log, WRITE if kind == PREPARE else SYNC)
    record_own(engine, vote)
    block = s.own_proposal if kind == PROPOSAL else None
    engine._out.append(Broadcast(encode_wire(engine.chain_id, dress(engine, vote, block))))
    return vote


def _own_proposal(engine: Engine, round_: int, digest: bytes) -> bool:
    mine = engine.s.sent.get((PROPOSAL, round_))
    return mine is not None and mine.digest == digest


def dress(engine: Engine, vote: Vote, block: bytes | None) -> ConsensusMessage:
    """Our vote as it goes on the wire: a proposal with its block and justification, a round change that
    prepared a value with that block and its prepare certificate."""
    s = engine.s
    if vote.kind == PROPOSAL:
        return ConsensusMessage(vote, block, s.own_justification, s.own_prepares)
    if vote.kind == ROUND_CHANGE and vote.prepared_round != NO_ROUND:
        return ConsensusMessage(vote, s.prepared_block, (), s.prepared_cert)
    return ConsensusMessage(vote)


def record_own(engine: Engine, vote: Vote) -> None:
    s = engine.s
    s.seen[(vote.kind, vote.round, vote.author)] = vote
    if vote.kind == PREPARE:
        s.prepares.setdefault((vote.round, vote.digest), {})[vote.author] = vote
        check_prepared(engine, vote.round)
    elif vote.kind == COMMIT:
        s.commits.setdefault((vote.round, vote.digest), {})[vote.author] = vote
        check_decided(engine, vote.round, vote.digest)
    elif vote.kind == ROUND_CHANGE:
        s.round_changes.setdefault(vote.round, {})[vote.author] = dress(engine, vote, None)


# ---------------------------------------------------------------------------------------------- proposing


def propose_fresh(engine: Engine, round_: int, justification: tuple[Vote, ...] = ()) -> None:
    s = engine.s
    if (PROPOSAL, round_) in s.sent or engine.signer is None:
        return
    head = engine.app.head()
    timestamp = max(engine.now, head.timestamp_ms + engine.config.block_period_ms)
    block = engine.app.build_block(s.height, round_, timestamp, engine.me)
    info = engine.app.inspect(block)
    if isinstance(info, Rejected):  # pragma: no cover - our own application built it
        engine.stats["own_block_rejected"] += 1
        return
    _propose(engine, round_, block, info, justification, ())


def _propose(
    engine: Engine,
    round_: int,
    block: bytes,
    info: BlockInfo,
    justification: tuple[Vote, ...],
    prepares: tuple[Vote, ...],
) -> None:
    s = engine.s
    s.own_proposal, s.own_justification, s.own_prepares = block, justification, prepares
    s.blocks[info.block_hash] = block
    s.valid.add(info.block_hash)
    if cast(engine, PROPOSAL, round_, info.block_hash) is not None:
        accept_proposal(engine, round_, info.block_hash)


def maybe_propose_after_round_change(engine: Engine, round_: int) -> None:
    s = engine.s
    changes = s.round_changes.get(round_, {})
    if round_ != s.round or not engine._is_proposer(round_) or len(changes) < s.quorum:
        return
    if (PROPOSAL, round_) in s.sent:
        return
    justification = tuple(m.vote for m in changes.values())
    best = max(changes.values(), key=lambda m: m.vote.prepared_round)
    if best.vote.prepared_round == NO_ROUND or best.block is None:
        propose_fresh(engine, round_, justification)
        return
    info = engine.app.inspect(best.block)
    if not isinstance(info, Rejected):
        _propose(engine, round_, best.block, info, justification, best.prepares)


def accept_proposal(engine: Engine, round_: int, digest: bytes) -> None:
    s = engine.s
    s.proposals[round_] = digest
    if round_ > s.round:
        s.round = round_
        engine._log = SYNC  # a restart must know we may have voted up to here
        engine._set_round_timer(round_)
    if round_ == s.round:
        cast(engine, PREPARE, round_, digest)
    check_prepared(engine, round_)


# ---------------------------------------------------------------------------------------------- quorums


def check_prepared(engine: Engine, round_: int) -> None:
    """Prepared in this round: commit. The commit vote signs the block's own header round, so every
    commit for one block is the same seal whatever round it was prepared in; that is safe because once
    a block is prepared, every justified later proposal at this height is that block (QBFT lemma)."""
    s = engine.s
    digest = s.proposals.get(round_)
    if digest is None or round_ != s.round or round_ in s.commit_rounds:
        return
    votes = s.prepares.get((round_, digest), {})
    if len(votes) >= s.quorum:
        s.commit_rounds.add(round_)
        s.prepared_round, s.prepared_digest = round_, digest
        s.prepared_block, s.prepared_cert = s.blocks[digest], tuple(votes.values())
        info = engine.app.inspect(s.blocks[digest])
        if not isinstance(info, Rejected):
            cast(engine, COMMIT, info.round, digest, again=True)


def check_decided(engine: Engine, round_: int, digest: bytes) -> None:
    s = engine.s
    commits = s.commits.get((round_, digest), {})
    if len(commits) < s.quorum or s.decided:
        return
    block = s.blocks.get(digest)
    info = admission.check_block(engine.app, s, block, digest)
    if block is None or info is None:
        catchup.request_sync(engine, next(iter(commits)))
        return
    if info.round != round_:  # seals for another header round cannot form this block's certificate
        return
    s.decided = True
    engine._commit(block, make_certificate(round_, commits.values()), via_sync=False)
