"""The engine's inbound votes: filter, verify, store, and act on what they complete.

Promises: a vote is stored only once its author is an authority of the height, its round is within
`ROUND_WINDOW` of ours (round changes excepted), its signature verifies, and (for proposals and round
changes) `admission` admits it; every refusal is counted in the engine's `stats`, never raised. Votes for
the next height wait in a bounded buffer; a replica that sees it is behind asks for blocks (`catchup`). A
contradiction of an author's earlier vote in the same slot is reported once as evidence.
Assumes the engine (`engine.Engine`) owns the height's state and performs the round moves and commits;
these functions act on it and append to its actions. Must never trust a signature it did not check.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from . import admission, catchup
from .actions import EvidenceFound
from .messages import COMMIT, PREPARE, PROPOSAL, ROUND_CHANGE, ConsensusMessage, Evidence, Vote, vote_ok
from .voting import accept_proposal, check_decided, check_prepared, maybe_propose_after_round_change

if TYPE_CHECKING:
    from .engine import Engine

ROUND_WINDOW = 64
"""Votes for rounds this far beyond ours are dropped (round changes excepted: they let us catch up)."""


def route(engine: Engine, message: ConsensusMessage, sender: bytes | None) -> None:
    vote, s = message.vote, engine.s
    if vote.height < s.height:
        engine.stats["stale"] += 1
        return
    if vote.height > s.height:
        if len(engine._future) < engine.config.future_buffer and vote.height == s.height + 1:
            engine._future.append((message, sender))
        lagging = engine.now - s.started_at >= engine.config.round_timeout_ms
        if vote.height > s.height + 1 or lagging:
            catchup.request_sync(engine, sender if sender is not None else vote.author)
        return
    if vote.author not in s.vset or vote.author == engine.me:
        if vote.author in engine.removed:
            engine.stats["refused_revoked"] += 1  # an authority no more, from this height on
            engine.stats[f"refused_revoked_{vote.kind}"] += 1
        else:
            engine.stats["dropped_author"] += 1
        return
    if vote.kind != ROUND_CHANGE and vote.round > s.round + ROUND_WINDOW:
        engine.stats["dropped_far_round"] += 1  # keeps what a Byzantine authority can make us store bounded
        return
    if not _vote_ok(engine, vote):
        engine.stats["dropped_signature"] += 1
        return
    slot = (vote.kind, vote.round, vote.author)
    if slot in s.seen:
        if not _equivocates(engine, vote):
            engine.stats["duplicates"] += 1
        return
    if vote.kind == PROPOSAL:
        if not _on_proposal(engine, message):
            return
    elif vote.kind == ROUND_CHANGE and not _on_round_change(engine, message):
        return
    s.seen[slot] = vote
    if vote.kind == PREPARE:
        s.prepares.setdefault((vote.round, vote.digest), {})[vote.author] = vote
        check_prepared(engine, vote.round)
    elif vote.kind == COMMIT:
        s.commits.setdefault((vote.round, vote.digest), {})[vote.author] = vote
        check_decided(engine, vote.round, vote.digest)


def _equivocates(engine: Engine, vote: Vote) -> bool:
    """Compare a verified vote (received, or carried inside a justification) with what its author
    said before in the same slot; report a contradiction once as evidence."""
    s = engine.s
    slot = (vote.kind, vote.round, vote.author)
    earlier = s.seen.get(slot)
    if earlier is None or (earlier.digest, earlier.prepared_round) == (vote.digest, vote.prepared_round):
        return False
    engine.stats["equivocations"] += 1
    if slot not in s.reported:
        s.reported.add(slot)
        engine._out.append(EvidenceFound(Evidence(earlier, vote)))
    return True


def _vote_ok(engine: Engine, vote: Vote) -> bool:
    return vote_ok(engine.chain_id, vote, engine.verify)  # the cache is keyed by the whole signed triple


def _on_proposal(engine: Engine, message: ConsensusMessage) -> bool:
    vote, s, cfg = message.vote, engine.s, engine.config
    latest = engine.now + cfg.max_future_drift_ms
    checked = partial(_checked, engine)
    refused = admission.refuse_proposal(engine.app, s, message, cfg.block_period_ms, latest, checked)
    if refused is not None:
        engine.stats[refused] += 1
        return False
    s.seen[(vote.kind, vote.round, vote.author)] = vote
    accept_proposal(engine, vote.round, vote.digest)
    return True


def _checked(engine: Engine, vote: Vote) -> bool:
    """A vote carried inside another message: verify it and compare it with what its author said."""
    if not _vote_ok(engine, vote):
        return False
    _equivocates(engine, vote)
    return True


def _on_round_change(engine: Engine, message: ConsensusMessage) -> bool:
    vote, s = message.vote, engine.s
    stored = admission.admit_round_change(engine.app, s, message, partial(_checked, engine))
    if isinstance(stored, admission.Refused):
        if stored.counter is not None:
            engine.stats[stored.counter] += 1
        return False
    s.round_changes.setdefault(vote.round, {})[vote.author] = stored
    admission.prune_round_changes(s, vote.author)
    if vote.round > s.round:
        target = admission.round_to_join(s)
        if target is not None:  # f + 1 moved on: one honest authority at least, so follow
            engine._enter_round(target)
    maybe_propose_after_round_change(engine, vote.round)
    return True
