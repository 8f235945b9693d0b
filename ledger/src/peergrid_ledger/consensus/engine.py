"""QBFT (IBFT 2.0 style) consensus engine, sans I/O: events in, actions out.

Promises: a block is committed only with commit votes of a quorum (⌈2n/3⌉) of the height's authorities, and
never two different blocks at one height while at most f = ⌊(n−1)/3⌋ authorities are faulty. A round-change
proposal must carry a quorum of round changes and, when any of them prepared a value, re-propose the highest
prepared block with its prepare certificate (QBFT justification), so a value that may have been decided is
kept across rounds. Our votes are in the WAL before they are sent (one write per event, before its actions
are returned; synced except for a prepare alone, and after a restart the node withholds any prepare the WAL
lacks in the rounds it may have been in: docs/consensus.md), so a restart never votes twice differently.
The round-0 proposer proposes once the block period has passed and transactions wait, else after
`heartbeat_ms` (an empty block), so an idle chain still grows and finds a silent proposer out; told to halt
(`halt_at`), every replica heads for that height at the block period and stops there. Each
signature is verified once per node (`sigcache`). Bad input of any kind is dropped and counted in `stats`,
never raised; the authorities of
height h are `app.validators(h)` (from the state after h − 1), so a key governance removed or revoked has its
votes and proposals refused from the height the change takes effect (`refused_revoked`). Which proposals,
round changes and blocks a height admits is `admission`'s (pure checks); acting on them is the engine's.
Assumes the driver performs actions in order and feeds back timers; `now` is milliseconds on its clock.
Must never read a clock, touch a socket, or trust a message's signature or block it did not check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from . import admission
from .actions import (
    PROPOSE_TIMER,
    RESEND_TIMER,
    ROUND_TIMER,
    SYNC_TIMER,
    Action,
    Broadcast,
    Committed,
    EvidenceFound,
    Send,
    SetTimer,
    Timer,
)
from .app import Application, BlockInfo, ConsensusWal, MemoryWal, Rejected, Signer, VerifyFn
from .messages import (
    COMMIT,
    NO_ROUND,
    PREPARE,
    PROPOSAL,
    ROUND_CHANGE,
    Certificate,
    ConsensusMessage,
    Evidence,
    MessageError,
    SyncRequest,
    SyncResponse,
    Vote,
    WireMessage,
    decode_wire,
    encode_wire,
    make_certificate,
    sign_vote,
    verify_certificate,
    vote_ok,
)
from .sigcache import cached
from .sync import SyncPeers, serve_sync
from .wal import HeightState, load_height_state, save_height_state

HEARTBEAT_MS = 2000
"""The daemons' default heartbeat: an idle chain makes a block every 2 s rather than every period (the lab's
500 ms, the Pi's 200 ms), and a silent proposer is replaced within 2 s + a round timeout of going quiet."""

ROUND_WINDOW = 64
"""Votes for rounds this far beyond ours are dropped (round changes excepted: they let us catch up)."""
WRITE, SYNC = 1, 2


@dataclass(frozen=True, slots=True)
class EngineConfig:
    block_period_ms: int = 1000
    """The shortest gap between a block and its child."""
    round_timeout_ms: int = 2000
    max_backoff_exponent: int = 4
    max_future_drift_ms: int = 2000
    sync_batch: int = 64
    sync_retry_ms: int = 1500
    future_buffer: int = 512
    max_sync_response_bytes: int = 1024 * 1024
    halt_height: int | None = None
    """Finalise nothing above this height (a coordinated stop, e.g. before an upgrade); still serve sync.
    A running engine is told with `Engine.halt_at` (`halt.py` reads it from a halt file)."""
    heartbeat_ms: int = 0
    """With no transaction waiting, the gap after which the proposer makes an empty block anyway (heights
    advance, a dead proposer is replaced by a round change). At most `block_period_ms` (the default): a block
    every period. The daemons set it (`HEARTBEAT_MS`: the edge's and `peergrid-ledger node`'s chains)."""


class Engine:
    def __init__(
        self,
        app: Application,
        config: EngineConfig,
        signer: Signer | None,
        verify: VerifyFn,
        wal: ConsensusWal | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.chain_id = app.chain_id
        self.signer = signer
        self.me = signer.public if signer is not None else b""
        self.verify = cached(verify)
        self.wal = wal if wal is not None else MemoryWal()
        self._log = 0
        """What the WAL needs before this event's actions go out: 0 nothing, WRITE (a prepare: written,
        not synced) or SYNC (everything else we say, and round moves: written and synced)."""
        self.stats: Counter[str] = Counter()
        self.now = 0
        self._out: list[Action] = []
        self._future: list[tuple[ConsensusMessage, bytes | None]] = []
        self.sync = SyncPeers(config.sync_retry_ms)
        self.s = HeightState(height=0)
        self.removed: set[bytes] = set()
        """Keys that were authorities at an earlier height this engine decided and are no longer (revoked or
        removed by governance): their votes and proposals are refused and counted as `refused_revoked`."""

    # ------------------------------------------------------------------------------------------ events

    def start(self, now: int) -> list[Action]:
        self.now = now
        self._enter_height(restore=True)
        return self._flush()

    def on_message(self, data: bytes, now: int, sender: bytes | None = None) -> list[Action]:
        """A message from the network (`sender` is the transport-authenticated peer, when known)."""
        try:
            message = decode_wire(self.chain_id, data)
        except MessageError:
            self.stats["dropped_malformed"] += 1
            return []
        return self.on_decoded(message, now, sender)

    def on_decoded(self, message: WireMessage, now: int, sender: bytes | None = None) -> list[Action]:
        """`on_message` for a message already decoded (and bound to this chain) by `decode_wire`."""
        self.now = now
        if isinstance(message, SyncRequest):
            if sender is not None:
                self._reply_sync(message, sender)
        elif isinstance(message, SyncResponse):
            self._take_blocks(message, sender)
        else:
            self._route(message, sender)
        return self._flush()

    def on_timer(self, timer: Timer, now: int) -> list[Action]:
        self.now = now
        s = self.s
        if timer.kind == SYNC_TIMER:
            self.sync.ready()
        elif timer.height != s.height or timer.round != s.round:
            pass  # stale
        elif timer.kind == ROUND_TIMER:
            self.stats["round_timeouts"] += 1
            self._enter_round(s.round + 1)
        elif timer.kind == RESEND_TIMER:
            self._resend()
        elif timer.kind == PROPOSE_TIMER and self._is_proposer(s.round) and s.round == 0:
            if self._wanted() or now >= self._due(idle=True):
                self._propose_fresh(0)
            else:  # what was waiting left the pool: wait for more, or for the heartbeat
                self._out.append(SetTimer(Timer(PROPOSE_TIMER, s.height, 0), self._due(idle=True)))
        return self._flush()

    def on_pending(self, now: int) -> list[Action]:
        """The driver's pool took transactions: the round-0 proposer proposes once the period allows (not at
        the heartbeat), and every replica expects that proposal within a round timeout of then."""
        self.now = now
        if (
            self.s.validators
        ):  # before `start` there is no height yet: `start` arms round 0 with the pool as it is
            self._note_wanted(now)
        return self._flush()

    def halt_at(self, height: int | None, now: int) -> list[Action]:
        """A coordinated stop: finalise nothing above `height` (None: run on). From here every replica heads
        for it at the block period, as if transactions waited: a round-0 proposer already waiting out an idle
        heartbeat for this height proposes a period after the parent instead (at once if that has passed),
        and the others expect that proposal within a round timeout of then. The only setting that changes
        while the engine runs."""
        self.now = now
        if height == self.config.halt_height:
            return []
        was_halted = self._halted()
        self.config = replace(self.config, halt_height=height)
        if was_halted and not self._halted():  # lifted or raised: this height set no timers while halted
            self._arm_round_timers()
        else:
            self._note_wanted(now)
        return self._flush()

    def _note_wanted(self, now: int) -> None:
        """A block became wanted before the heartbeat (`_wanted`): bring round 0's timers forward."""
        s = self.s
        if self.config.heartbeat_ms <= self.config.block_period_ms:
            return  # a block every period anyway
        if s.round != 0 or s.pending_noted or self._halted() or not self._wanted():
            return
        s.pending_noted = True
        due = max(now, self._due(idle=False))
        if self._is_proposer(0):
            if (PROPOSAL, 0) not in s.sent:
                if now >= due:
                    self._propose_fresh(0)
                else:
                    self._out.append(SetTimer(Timer(PROPOSE_TIMER, s.height, 0), due))
        else:  # an earlier round-0 timer; the later one goes stale once it fires
            self._out.append(SetTimer(Timer(ROUND_TIMER, s.height, 0), due + self.config.round_timeout_ms))

    @property
    def height(self) -> int:
        """The height being decided (head + 1)."""
        return self.s.height

    # ------------------------------------------------------------------------------------------ heights

    def _flush(self) -> list[Action]:
        """The event's actions, after the WAL holds every vote among them that must survive a crash (one
        write per event: the driver sends nothing before this returns)."""
        if self._log:
            self.wal.save(save_height_state(self.s, self.chain_id), self._log == SYNC)
            self._log = 0
        out, self._out = self._out, []
        return out

    def _wanted(self) -> bool:
        """A block is wanted before the heartbeat: transactions wait, or a coordinated stop is to be reached
        (every replica heads for `halt_height`, and an idle chain would take a heartbeat per block)."""
        return self.app.pending() or self.config.halt_height is not None

    def _due(self, idle: bool) -> int:
        """When round 0's proposal is due: a period after the parent, or a heartbeat when nothing waits."""
        cfg = self.config
        gap = max(cfg.block_period_ms, cfg.heartbeat_ms) if idle else cfg.block_period_ms
        return self.app.head().timestamp_ms + gap

    def _enter_height(self, restore: bool = False) -> None:
        head = self.app.head()
        validators = list(self.app.validators(head.height + 1))
        if self.s.height:
            before: Sequence[bytes] = self.s.validators
        else:  # just started: the set of the head's own height is the one we knew last
            before = self.app.validators(head.height) if head.height else ()
        self.removed = (self.removed | set(before)) - set(validators)
        self.s = HeightState(height=head.height + 1, validators=validators)
        self.s.started_at = self.now
        self._log = 0  # what we said at the height just committed cannot be contradicted any more
        if restore:
            record = self.wal.load()
            saved = load_height_state(record, self.s.height, self.chain_id)
            if saved is not None:
                self._restore(saved)
                return
            if record is None:  # never started before: say so in the WAL before the first vote
                self._log = SYNC
            else:  # we may have prepared in round 0 of this height before a crash: not again
                self.s.amnesia_round = 0
        self._arm_round_timers()
        pending, self._future = self._future, []
        for message, sender in pending:
            if message.vote.height == self.s.height:
                self._route(message, sender)
            elif message.vote.height > self.s.height:
                self._future.append((message, sender))

    def _arm_round_timers(self) -> None:
        """The current round's timeout and, in round 0, the proposer's proposal timer (none while halted)."""
        s = self.s
        s.pending_noted = self._wanted()
        self._set_round_timer(s.round)
        if s.round == 0 and self._is_proposer(0) and not self._halted():
            at = max(self.now, self._due(idle=not s.pending_noted))
            self._out.append(SetTimer(Timer(PROPOSE_TIMER, s.height, 0), at))

    def _restore(self, saved: HeightState) -> None:
        """Resume the persisted round with its votes, and say them again (a peer may have missed them)."""
        saved.validators = self.s.validators
        saved.started_at = self.now
        saved.amnesia_round = saved.round  # any round move after it was written would have been written
        saved.pending_noted = True
        self.s = saved
        self._set_round_timer(saved.round)
        for vote in list(saved.sent.values()):
            self._record_own(vote)
            if vote.round == saved.round:
                extra = self.s.own_proposal if vote.kind == PROPOSAL else None
                self._out.append(Broadcast(encode_wire(self.chain_id, self._dress(vote, extra))))
        mine = saved.sent.get((PROPOSAL, saved.round))
        if mine is not None and mine.digest in saved.blocks:
            self._accept_proposal(saved.round, mine.digest)
        elif mine is None and saved.round == 0 and self._is_proposer(0):
            self._propose_fresh(0)

    def _halted(self) -> bool:
        return self.config.halt_height is not None and self.s.height > self.config.halt_height

    def _set_round_timer(self, round_: int) -> None:
        cfg = self.config
        if self._halted():
            return
        wait = cfg.round_timeout_ms * 2 ** min(round_, cfg.max_backoff_exponent)
        if round_ == 0:
            wait += max(0, self._due(idle=not self._wanted()) - self.now)
        self._out.append(SetTimer(Timer(ROUND_TIMER, self.s.height, round_), self.now + wait))

    def _enter_round(self, round_: int) -> None:
        s = self.s
        s.round = round_
        self._set_round_timer(round_)
        self._cast(ROUND_CHANGE, round_, s.prepared_digest, s.prepared_round)
        self._maybe_propose_after_round_change(round_)
        self._arm_resend()

    def _arm_resend(self) -> None:
        if not self._halted():
            at = self.now + self.config.round_timeout_ms
            self._out.append(SetTimer(Timer(RESEND_TIMER, self.s.height, self.s.round), at))

    def _resend(self) -> None:
        """Still in this round a round timeout later: say our round change (and our proposal) again. A round
        change lost in a partition is otherwise said again only at the next round's timeout, which backs off
        exponentially; repeating an identical signed vote is always safe."""
        s = self.s
        for kind in (ROUND_CHANGE, PROPOSAL):
            vote = s.sent.get((kind, s.round))
            if vote is not None:
                self.stats["resent"] += 1
                block = s.own_proposal if kind == PROPOSAL else None
                self._out.append(Broadcast(encode_wire(self.chain_id, self._dress(vote, block))))
        self._arm_resend()

    def _is_proposer(self, round_: int) -> bool:
        return bool(self.me) and self.proposer(round_) == self.me

    def proposer(self, round_: int) -> bytes:
        return admission.proposer(self.s, round_)

    # ------------------------------------------------------------------------------------------ voting

    def _cast(
        self, kind: str, round_: int, digest: bytes, prepared_round: int = NO_ROUND, again: bool = False
    ) -> Vote | None:
        """Sign, log and broadcast our vote for a slot, unless we already voted differently there
        (`again`: say an identical earlier vote once more)."""
        s = self.s
        if self.signer is None or self.me not in s.vset or self._halted():
            return None
        previous = s.sent.get((kind, round_))
        if previous is not None:
            if (previous.digest, previous.prepared_round) != (digest, prepared_round):
                return None
            if again:
                self._log = SYNC  # what we prepared has moved on
                self._out.append(Broadcast(encode_wire(self.chain_id, self._dress(previous, None))))
            return previous
        if kind == PREPARE and round_ <= s.amnesia_round and not self._own_proposal(round_, digest):
            self.stats["prepare_withheld"] += 1  # we may have prepared another block here before a crash
            return None
        vote = sign_vote(
            self.chain_id, self.signer.sign, self.me, kind, s.height, round_, digest, prepared_round
        )
        s.sent[(kind, round_)] = vote
        # a prepare is written but not synced (the rule above covers one a power cut loses); the rest is synced
        self._log = max(self._log, WRITE if kind == PREPARE else SYNC)
        self._record_own(vote)
        block = s.own_proposal if kind == PROPOSAL else None
        self._out.append(Broadcast(encode_wire(self.chain_id, self._dress(vote, block))))
        return vote

    def _own_proposal(self, round_: int, digest: bytes) -> bool:
        mine = self.s.sent.get((PROPOSAL, round_))
        return mine is not None and mine.digest == digest

    def _dress(self, vote: Vote, block: bytes | None) -> ConsensusMessage:
        s = self.s
        if vote.kind == PROPOSAL:
            return ConsensusMessage(vote, block, s.own_justification, s.own_prepares)
        if vote.kind == ROUND_CHANGE and vote.prepared_round != NO_ROUND:
            return ConsensusMessage(vote, s.prepared_block, (), s.prepared_cert)
        return ConsensusMessage(vote)

    def _record_own(self, vote: Vote) -> None:
        s = self.s
        s.seen[(vote.kind, vote.round, vote.author)] = vote
        if vote.kind == PREPARE:
            s.prepares.setdefault((vote.round, vote.digest), {})[vote.author] = vote
            self._check_prepared(vote.round)
        elif vote.kind == COMMIT:
            s.commits.setdefault((vote.round, vote.digest), {})[vote.author] = vote
            self._check_decided(vote.round, vote.digest)
        elif vote.kind == ROUND_CHANGE:
            s.round_changes.setdefault(vote.round, {})[vote.author] = self._dress(vote, None)

    # ------------------------------------------------------------------------------------------ proposing

    def _propose_fresh(self, round_: int, justification: tuple[Vote, ...] = ()) -> None:
        s = self.s
        if (PROPOSAL, round_) in s.sent or self.signer is None:
            return
        head = self.app.head()
        timestamp = max(self.now, head.timestamp_ms + self.config.block_period_ms)
        block = self.app.build_block(s.height, round_, timestamp, self.me)
        info = self.app.inspect(block)
        if isinstance(info, Rejected):  # pragma: no cover - our own application built it
            self.stats["own_block_rejected"] += 1
            return
        self._propose(round_, block, info, justification, ())

    def _propose(
        self,
        round_: int,
        block: bytes,
        info: BlockInfo,
        justification: tuple[Vote, ...],
        prepares: tuple[Vote, ...],
    ) -> None:
        s = self.s
        s.own_proposal, s.own_justification, s.own_prepares = block, justification, prepares
        s.blocks[info.block_hash] = block
        s.valid.add(info.block_hash)
        if self._cast(PROPOSAL, round_, info.block_hash) is not None:
            self._accept_proposal(round_, info.block_hash)

    def _maybe_propose_after_round_change(self, round_: int) -> None:
        s = self.s
        changes = s.round_changes.get(round_, {})
        if round_ != s.round or not self._is_proposer(round_) or len(changes) < s.quorum:
            return
        if (PROPOSAL, round_) in s.sent:
            return
        justification = tuple(m.vote for m in changes.values())
        best = max(changes.values(), key=lambda m: m.vote.prepared_round)
        if best.vote.prepared_round == NO_ROUND or best.block is None:
            self._propose_fresh(round_, justification)
            return
        info = self.app.inspect(best.block)
        if not isinstance(info, Rejected):
            self._propose(round_, best.block, info, justification, best.prepares)

    def _accept_proposal(self, round_: int, digest: bytes) -> None:
        s = self.s
        s.proposals[round_] = digest
        if round_ > s.round:
            s.round = round_
            self._log = SYNC  # a restart must know we may have voted up to here
            self._set_round_timer(round_)
        if round_ == s.round:
            self._cast(PREPARE, round_, digest)
        self._check_prepared(round_)

    # ------------------------------------------------------------------------------------------ receiving

    def _route(self, message: ConsensusMessage, sender: bytes | None) -> None:
        vote, s = message.vote, self.s
        if vote.height < s.height:
            self.stats["stale"] += 1
            return
        if vote.height > s.height:
            if len(self._future) < self.config.future_buffer and vote.height == s.height + 1:
                self._future.append((message, sender))
            lagging = self.now - s.started_at >= self.config.round_timeout_ms
            if vote.height > s.height + 1 or lagging:
                self._request_sync(sender if sender is not None else vote.author)
            return
        if vote.author not in s.vset or vote.author == self.me:
            if vote.author in self.removed:
                self.stats["refused_revoked"] += 1  # an authority no more, from this height on
                self.stats[f"refused_revoked_{vote.kind}"] += 1
            else:
                self.stats["dropped_author"] += 1
            return
        if vote.kind != ROUND_CHANGE and vote.round > s.round + ROUND_WINDOW:
            self.stats["dropped_far_round"] += 1  # keeps what a Byzantine authority can make us store bounded
            return
        if not self._vote_ok(vote):
            self.stats["dropped_signature"] += 1
            return
        slot = (vote.kind, vote.round, vote.author)
        if slot in s.seen:
            if not self._equivocates(vote):
                self.stats["duplicates"] += 1
            return
        if vote.kind == PROPOSAL:
            if not self._on_proposal(message):
                return
        elif vote.kind == ROUND_CHANGE and not self._on_round_change(message):
            return
        s.seen[slot] = vote
        if vote.kind == PREPARE:
            s.prepares.setdefault((vote.round, vote.digest), {})[vote.author] = vote
            self._check_prepared(vote.round)
        elif vote.kind == COMMIT:
            s.commits.setdefault((vote.round, vote.digest), {})[vote.author] = vote
            self._check_decided(vote.round, vote.digest)

    def _equivocates(self, vote: Vote) -> bool:
        """Compare a verified vote (received, or carried inside a justification) with what its author
        said before in the same slot; report a contradiction once as evidence."""
        s = self.s
        slot = (vote.kind, vote.round, vote.author)
        earlier = s.seen.get(slot)
        if earlier is None or (earlier.digest, earlier.prepared_round) == (vote.digest, vote.prepared_round):
            return False
        self.stats["equivocations"] += 1
        if slot not in s.reported:
            s.reported.add(slot)
            self._out.append(EvidenceFound(Evidence(earlier, vote)))
        return True

    def _vote_ok(self, vote: Vote) -> bool:
        return vote_ok(self.chain_id, vote, self.verify)  # the cache is keyed by the whole signed triple

    def stale(self, message: WireMessage) -> bool:
        """A message that can change nothing here (a vote for a decided height, a block we hold): the
        driver may drop it before checking any signature. Counted as `stale`."""
        old = admission.is_stale(self.app, self.s, message)
        if old:
            self.stats["stale"] += 1
        return old

    def _on_proposal(self, message: ConsensusMessage) -> bool:
        vote, s, cfg = message.vote, self.s, self.config
        latest = self.now + cfg.max_future_drift_ms
        refused = admission.refuse_proposal(self.app, s, message, cfg.block_period_ms, latest, self._checked)
        if refused is not None:
            self.stats[refused] += 1
            return False
        s.seen[(vote.kind, vote.round, vote.author)] = vote
        self._accept_proposal(vote.round, vote.digest)
        return True

    def _checked(self, vote: Vote) -> bool:
        """A vote carried inside another message: verify it and compare it with what its author said."""
        if not self._vote_ok(vote):
            return False
        self._equivocates(vote)
        return True

    def _on_round_change(self, message: ConsensusMessage) -> bool:
        vote, s = message.vote, self.s
        stored = admission.admit_round_change(self.app, s, message, self._checked)
        if isinstance(stored, admission.Refused):
            if stored.counter is not None:
                self.stats[stored.counter] += 1
            return False
        s.round_changes.setdefault(vote.round, {})[vote.author] = stored
        admission.prune_round_changes(s, vote.author)
        if vote.round > s.round:
            target = admission.round_to_join(s)
            if target is not None:  # f + 1 moved on: one honest authority at least, so follow
                self._enter_round(target)
        self._maybe_propose_after_round_change(vote.round)
        return True

    def _check_prepared(self, round_: int) -> None:
        """Prepared in this round: commit. The commit vote signs the block's own header round, so every
        commit for one block is the same seal whatever round it was prepared in; that is safe because once
        a block is prepared, every justified later proposal at this height is that block (QBFT lemma)."""
        s = self.s
        digest = s.proposals.get(round_)
        if digest is None or round_ != s.round or round_ in s.commit_rounds:
            return
        votes = s.prepares.get((round_, digest), {})
        if len(votes) >= s.quorum:
            s.commit_rounds.add(round_)
            s.prepared_round, s.prepared_digest = round_, digest
            s.prepared_block, s.prepared_cert = s.blocks[digest], tuple(votes.values())
            info = self.app.inspect(s.blocks[digest])
            if not isinstance(info, Rejected):
                self._cast(COMMIT, info.round, digest, again=True)

    def _check_decided(self, round_: int, digest: bytes) -> None:
        s = self.s
        commits = s.commits.get((round_, digest), {})
        if len(commits) < s.quorum or s.decided:
            return
        block = s.blocks.get(digest)
        info = admission.check_block(self.app, s, block, digest)
        if block is None or info is None:
            self._request_sync(next(iter(commits)))
            return
        if info.round != round_:  # seals for another header round cannot form this block's certificate
            return
        s.decided = True
        self._commit(block, make_certificate(round_, commits.values()), via_sync=False)

    def _commit(self, block: bytes, certificate: Certificate, via_sync: bool) -> None:
        info = self.app.inspect(block)
        assert not isinstance(info, Rejected)  # checked before every call
        self.app.commit(block, certificate)
        self.stats["committed"] += 1
        self._out.append(Committed(info.height, info.block_hash, block, certificate, info.proposer, via_sync))
        self._enter_height()

    # ------------------------------------------------------------------------------------------ sync

    def _request_sync(self, peer: bytes) -> None:
        if peer != self.me:
            self.sync.add(peer)
        target = self.sync.next(self.now)
        if target is None:
            return
        self.stats["sync_requests"] += 1
        request = SyncRequest(self.s.height, self.config.sync_batch)
        self._out.append(Send(target, encode_wire(self.chain_id, request)))
        self._out.append(SetTimer(Timer(SYNC_TIMER, self.s.height, 0), self.sync.busy_until))

    def _reply_sync(self, request: SyncRequest, sender: bytes) -> None:
        response = serve_sync(self.app, request, self.config.sync_batch, self.config.max_sync_response_bytes)
        if response.blocks:
            self.stats["sync_served"] += 1
            self._out.append(Send(sender, encode_wire(self.chain_id, response)))

    def _take_blocks(self, response: SyncResponse, sender: bytes | None) -> None:
        progressed = False
        for block, certificate in response.blocks:
            info = self.app.inspect(block)
            if isinstance(info, Rejected) or info.height < self.s.height:
                continue
            if info.height > self.s.height:
                break
            if not verify_certificate(
                self.chain_id, info.height, info.block_hash, certificate, self.s.validators, self.verify
            ):
                self.stats["sync_bad_certificate"] += 1
                break
            if admission.check_block(self.app, self.s, block, info.block_hash) is None:
                self.stats["sync_invalid_block"] += 1
                break
            self._commit(block, certificate, via_sync=True)
            progressed = True
        if progressed and sender is not None and len(response.blocks) >= self.config.sync_batch:
            self.sync.prefer(sender)  # a full batch from a good peer: pipeline the next one from it
            self._request_sync(sender)
