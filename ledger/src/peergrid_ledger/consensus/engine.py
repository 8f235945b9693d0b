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
round changes and blocks a height admits is `admission`'s (pure checks); acting on them is the engine's,
in parts: this module keeps the height's state and moves heights and rounds on events and timers; our own
votes and the quorums they complete are `voting`'s, inbound votes `receiving`'s, catch-up sync `catchup`'s
(functions acting on one `Engine`, which alone holds state).
Assumes the driver performs actions in order and feeds back timers; `now` is milliseconds on its clock.
Must never read a clock, touch a socket, or trust a message's signature or block it did not check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from . import admission, catchup, receiving, voting
from .actions import (
    PROPOSE_TIMER,
    RESEND_TIMER,
    ROUND_TIMER,
    SYNC_TIMER,
    Action,
    Broadcast,
    Committed,
    SetTimer,
    Timer,
)
from .app import Application, ConsensusWal, MemoryWal, Rejected, Signer, VerifyFn
from .messages import (
    PROPOSAL,
    ROUND_CHANGE,
    Certificate,
    ConsensusMessage,
    MessageError,
    SyncRequest,
    SyncResponse,
    WireMessage,
    decode_wire,
    encode_wire,
)
from .sigcache import cached
from .sync import SyncPeers
from .voting import SYNC
from .wal import HeightState, load_height_state, save_height_state

HEARTBEAT_MS = 2000
"""The daemons' default heartbeat: an idle chain makes a block every 2 s rather than every period (the lab's
500 ms, the Pi's 200 ms), and a silent proposer is replaced within 2 s + a round timeout of going quiet."""


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
                catchup.reply_sync(self, message, sender)
        elif isinstance(message, SyncResponse):
            catchup.take_blocks(self, message, sender)
        else:
            receiving.route(self, message, sender)
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
                voting.propose_fresh(self, 0)
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
                    voting.propose_fresh(self, 0)
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
                receiving.route(self, message, sender)
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
            voting.record_own(self, vote)
            if vote.round == saved.round:
                extra = self.s.own_proposal if vote.kind == PROPOSAL else None
                self._out.append(Broadcast(encode_wire(self.chain_id, voting.dress(self, vote, extra))))
        mine = saved.sent.get((PROPOSAL, saved.round))
        if mine is not None and mine.digest in saved.blocks:
            voting.accept_proposal(self, saved.round, mine.digest)
        elif mine is None and saved.round == 0 and self._is_proposer(0):
            voting.propose_fresh(self, 0)

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
        voting.cast(self, ROUND_CHANGE, round_, s.prepared_digest, s.prepared_round)
        voting.maybe_propose_after_round_change(self, round_)
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
                self._out.append(Broadcast(encode_wire(self.chain_id, voting.dress(self, vote, block))))
        self._arm_resend()

    def _is_proposer(self, round_: int) -> bool:
        return bool(self.me) and self.proposer(round_) == self.me

    def proposer(self, round_: int) -> bytes:
        return admission.proposer(self.s, round_)

    def stale(self, message: WireMessage) -> bool:
        """A message that can change nothing here (a vote for a decided height, a block we hold): the
        driver may drop it before checking any signature. Counted as `stale`."""
        old = admission.is_stale(self.app, self.s, message)
        if old:
            self.stats["stale"] += 1
        return old

    def _commit(self, block: bytes, certificate: Certificate, via_sync: bool) -> None:
        """A block decided here (`voting`) or synced with its certificate (`catchup`): on to the next height."""
        info = self.app.inspect(block)
        assert not isinstance(info, Rejected)  # checked before every call
        self.app.commit(block, certificate)
        self.stats["committed"] += 1
        self._out.append(Committed(info.height, info.block_hash, block, certificate, info.proposer, via_sync))
        self._enter_height()
