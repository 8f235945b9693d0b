"""Which peer messages a height admits, as checks over one height's state (the engine acts on the verdicts).

Promises: `check_block` returns a block's header only if the block is the one its vote names, extends our
head at this height from one of the height's authorities, and passes the application (each block's verdict
is kept in the height state, so a block is validated once). `refuse_proposal` says why a proposal is
refused (the `Engine.stats` counter to raise) or None: its author must be the round's `proposer`, the round
not behind ours nor already proposed, a later round's proposal justified (`justify.proposal_justified`), the
block valid, a fresh block made by that author in that round, and its time at least a block period after
its parent and within the allowed drift of ours. `admit_round_change` returns the round change as the height
keeps it or a `Refused`; `prune_round_changes` keeps an author's highest few; `round_to_join` is the round
that f + 1 authorities have moved past ours to (QBFT: one honest authority among them). `is_stale` says a
message can change nothing at this height.
Assumes `check(vote)` verifies a carried vote's signature (and may note equivocation). The state's caches
(`valid`, `invalid`, `blocks`) are the only thing written here; never raises for a peer's message.
"""

from __future__ import annotations

from dataclasses import dataclass

from .app import Application, BlockInfo, Rejected
from .justify import Check, prepare_quorum, proposal_justified
from .messages import NO_ROUND, ConsensusMessage, SyncResponse, WireMessage, max_faulty
from .wal import HeightState

RC_ROUNDS_KEPT = 4


@dataclass(frozen=True, slots=True)
class Refused:
    counter: str | None
    """The `Engine.stats` counter the refusal raises (None: a malformed message that counts nowhere)."""


def proposer(s: HeightState, round_: int) -> bytes:
    """The authority that proposes in `round_` at this height (round robin from the height)."""
    return s.validators[(s.height + round_) % len(s.validators)]


def check_block(app: Application, s: HeightState, block: bytes | None, digest: bytes) -> BlockInfo | None:
    """The block's header if it is `digest`, extends our head and passes the application."""
    if block is None:
        return None
    info = app.inspect(block)
    if isinstance(info, Rejected) or info.block_hash != digest or info.height != s.height:
        return None
    head = app.head()
    if info.parent_hash != head.block_hash or info.proposer not in s.vset:
        return None
    if digest not in s.valid:
        if digest in s.invalid or isinstance(app.validate(block), Rejected):
            s.invalid.add(digest)
            return None
        s.valid.add(digest)
    s.blocks[digest] = block
    return info


def refuse_proposal(
    app: Application,
    s: HeightState,
    message: ConsensusMessage,
    block_period_ms: int,
    latest_ms: int,
    check: Check,
) -> str | None:
    """Why a proposal of this height, from an authority, with a good signature, is refused (the stats
    counter), or None to accept it. `latest_ms`: our time plus the allowed drift."""
    vote = message.vote
    if vote.author != proposer(s, vote.round):  # not its turn: an authority's fault, told (`node`)
        return "dropped_proposal"
    # a round this replica has left, or the proposal it holds already (carried in a round change): the
    # ordinary timing of gossip, as replicas start or change rounds apart, only counted; another block for a
    # round whose proposal it holds is the proposer equivocating, told
    held = s.proposals.get(vote.round)
    if held is not None and held != vote.digest:
        return "dropped_proposal"
    if vote.round < s.round or held is not None:
        return "stale_proposal"
    fresh = True
    if vote.round > 0:
        verdict = proposal_justified(s, vote, message.justification, message.prepares, check)
        if verdict is None:
            return "unjustified_proposal"
        fresh = verdict
    info = check_block(app, s, message.block, vote.digest)
    head = app.head()
    if (
        info is None
        or (fresh and (info.proposer != vote.author or info.round != vote.round))
        or info.timestamp_ms < head.timestamp_ms + block_period_ms
        or info.timestamp_ms > latest_ms
    ):
        return "invalid_proposal"
    return None


def admit_round_change(
    app: Application, s: HeightState, message: ConsensusMessage, check: Check
) -> ConsensusMessage | Refused:
    """The round change as the height keeps it (with its prepared block and certificate when it carries
    one), or why not."""
    vote = message.vote
    if vote.round == 0 or vote.prepared_round >= vote.round:
        return Refused(None)
    if vote.prepared_round == NO_ROUND:
        if vote.digest:
            return Refused(None)
        return ConsensusMessage(vote)
    if not prepare_quorum(s, message.prepares, vote.prepared_round, vote.digest, check):
        return Refused("dropped_round_change")
    if check_block(app, s, message.block, vote.digest) is None:
        return Refused("dropped_round_change")
    return ConsensusMessage(vote, message.block, (), message.prepares)


def prune_round_changes(s: HeightState, author: bytes) -> None:
    """An author's highest few round changes are all that matter: drop its older ones."""
    rounds = sorted(r for r, changes in s.round_changes.items() if author in changes)
    for stale in rounds[:-RC_ROUNDS_KEPT]:
        del s.round_changes[stale][author]


def round_to_join(s: HeightState) -> int | None:
    """The highest round that f + 1 authorities have sent round changes for beyond ours (each counted at its
    highest), or None while fewer than f + 1 have moved on."""
    highest: dict[bytes, int] = {}
    for round_, changes in s.round_changes.items():
        if round_ > s.round:
            for author in changes:
                highest[author] = max(highest.get(author, 0), round_)
    f = max_faulty(len(s.validators))
    if len(highest) >= f + 1:
        return sorted(highest.values(), reverse=True)[f]
    return None


def is_stale(app: Application, s: HeightState, message: WireMessage) -> bool:
    """A vote for a decided height, or a sync response holding only blocks below this height."""
    if isinstance(message, ConsensusMessage):
        return message.vote.height < s.height
    if isinstance(message, SyncResponse):
        heights = [app.inspect(block) for block, _ in message.blocks]
        return bool(heights) and all(
            not isinstance(info, Rejected) and info.height < s.height for info in heights
        )
    return False
