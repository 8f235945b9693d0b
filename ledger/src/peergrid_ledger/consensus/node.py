"""A ledger replica as an asyncio shell: MQTT in, engine, store, MQTT out — one or more chains per process.

Promises: `ChainReplica` is everything one chain needs around the pure engine (signed envelopes, transaction
batches, the WAL file (`wal_file.FileWal`), block announcements, evidence transactions) and does no I/O of
its own beyond its store, WAL and the `Transport` it is given, so edge and dso-server embed it as a library;
`Node` (`node_loop`, re-exported here) runs several replicas over one MQTT connection on one event loop.
Every dropped message is counted in `stats` and logged (rate-limited), none raises. What a message costs is
bounded before it is trusted: an envelope is parsed within its 5 items, and one from a key the chain does
not know, or revoked on chain (`dropped_unknown-sender`, `dropped_revoked`), goes no further - its body is
never decoded nor its signature checked; a member's body is decoded within an item budget (review21 F1).
Sync requests are served as `sync_guard` allows (this node's sync topic only, dated, once, and a byte
budget per requester: review21 F7; a requester's clock need not agree with ours: review23 F1), and stamped
by `clock` as they go out. A transaction submitted here is gossiped again until it leaves the pool
(`regossip.Regossip`: bounded back-off and batches, on the replica's own timer once started); one that
arrives already pooled or in a block is counted as `tx_duplicate`, not refused. Assumes the wall clock (ms)
is roughly synchronised between nodes (block times are checked against it within the configured drift; sync
requests only within `sync_guard.UNSEEN_MS`). Must never block the loop on the network.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .. import keys
from ..codec import DecodeError, item_budget
from ..results import Accepted as LedgerAccepted
from ..store import BlockStore
from ..tx import decode_tx, sign_tx
from .actions import Action, Broadcast, Committed, EvidenceFound, Send, SetTimer, Timer
from .app import Accepted, Rejected
from .engine import Engine, EngineConfig
from .ledger_app import REVOKED_SENDER, LedgerApp
from .mempool import MempoolLimits
from .messages import (
    MAX_VOTE_ITEMS,
    ConsensusMessage,
    MessageError,
    SyncRequest,
    SyncResponse,
    WireMessage,
    decode_wire,
    encode_wire,
)
from .node_loop import Node as Node  # re-exported: node_cli and tests import it from here
from .node_loop import wall_ms as wall_ms
from .regossip import REGOSSIP_MS, Regossip
from .sigcache import SignatureCache
from .sync_guard import MAX_REQUESTERS, SyncGuard
from .transport import (
    BLOCK,
    CONSENSUS,
    SYNC,
    TX,
    EnvelopeError,
    Transport,
    check_envelope,
    decode_tx_batch,
    encode_tx_batch,
    read_envelope,
    seal_envelope,
)
from .wal_file import FileWal as FileWal  # re-exported: edge.replicas, node_cli and tests import it from here

Schedule = Callable[[Timer, int], None]
GOSSIP_BATCH = 512
MAX_BATCH_ITEMS = 2**17
"""Array items and map entries the transactions of one received batch may hold together (a gossiped batch of
`GOSSIP_BATCH` holds ~10-50 each; any valid one at most `LedgerApp.body_items`, 4,042): beyond it the rest
of the batch is refused as malformed before it is built, and comes again with its submitter's regossip."""
REGOSSIP_TIMER = "regossip"  # the replica's own timer kind, never handed to the engine
log = logging.getLogger("peergrid_ledger.node")
ENGINE_REFUSALS = (
    "dropped_malformed",  # not a consensus message of this chain (garbage, another chain's votes)
    "dropped_author",  # signed by a key that is no authority of this height
    "dropped_signature",  # a vote whose signature does not verify (forged)
    "dropped_far_round",
    "dropped_proposal",
    "invalid_proposal",
    "unjustified_proposal",
    "dropped_round_change",
    "sync_bad_certificate",
    "sync_invalid_block",
    "refused_revoked",
    "equivocations",
)
"""Engine counters that mean someone sent something wrong (logged as well as counted); `stale`,
`stale_proposal` (a proposal of a round left, or already held: replicas starting apart) and `duplicates` are
ordinary gossip and only counted."""


class ChainReplica:
    def __init__(
        self,
        store: BlockStore,
        keypair: keys.Keypair,
        config: EngineConfig,
        transport: Transport,
        schedule: Schedule,
        wal: FileWal | None = None,
        limits: MempoolLimits | None = None,
        regossip_ms: tuple[int, int] = REGOSSIP_MS,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.keypair = keypair
        self.transport = transport
        self.schedule = schedule
        self.verify = SignatureCache(keys.verify)  # envelopes, votes, seals, certificates: each checked once
        self.app = LedgerApp(store, keypair, limits, self.verify)  # a seal checked as the proposal's vote
        self.chain = self.app.chain_id
        self.engine = Engine(self.app, config, keypair, self.verify, wal)
        self.stats: Counter[str] = Counter()
        self.on_commit: list[Callable[[Committed], None]] = []
        self._gossip: list[bytes] = []
        self._own_nonce = 0
        self._engine_logged: dict[str, int] = {}
        self.regossip = Regossip(self._arm_regossip, *regossip_ms)
        self.sync_guard = SyncGuard(
            keypair.public, window_ms=config.sync_retry_ms, budget_bytes=config.max_sync_response_bytes
        )
        self.clock = clock
        """Stamps our sync requests as they go out (`_perform`); None: the time of the event that asked."""
        self._skew_logged: set[bytes] = set()
        self._started = False

    def start(self, now: int) -> None:
        self._started = True
        self.regossip.rearm()  # what was submitted before (the embedder's timers may not run yet)
        self._perform(self.engine.start(now))

    def _arm_regossip(self, generation: int, at_ms: int) -> None:
        if self._started:
            self.schedule(Timer(REGOSSIP_TIMER, generation, 0), at_ms)

    def receive(self, kind: str, data: bytes, now: int) -> None:
        message: WireMessage | None = None
        try:
            envelope, signature = read_envelope(self.chain, data)  # at most its 5 items: bounded
            if envelope.kind != kind:
                raise EnvelopeError("malformed", f"{envelope.kind} envelope on the {kind} topic")
            sender = envelope.sender
            if sender == self.keypair.public:
                self.stats["own_echo"] += 1  # our own gossip, echoed by the broker
                return
            # A stranger or a revoked key costs this parse and two lookups: its body is never decoded and its
            # signature never checked (review21 F1: a body decoded first let anyone stall every replica).
            if not self.app.known_sender(sender):
                raise EnvelopeError("unknown-sender", sender.hex()[:16])
            if self.app.revoked(sender):
                raise EnvelopeError("revoked", sender.hex()[:16])
            if kind != TX:
                message = self._peek(envelope.body)
                if isinstance(message, ConsensusMessage | SyncResponse) and self.engine.stale(message):
                    return  # decided already: nothing in it can change what we do, so no signature check
            check_envelope(envelope, signature, self.verify)
            if kind == TX:
                self._take_batch(decode_tx_batch(envelope.body), sender, now)
                return
        except EnvelopeError as exc:
            self._refused(f"dropped_{exc.reason}", str(exc))
            return
        stats = self.engine.stats
        before = sum(stats[k] for k in ENGINE_REFUSALS)
        if message is None:  # a sync request always fits the peek: this is never one
            self._perform(self.engine.on_message(envelope.body, now, envelope.sender))
        elif isinstance(message, SyncRequest):
            self._serve_sync(message, kind, envelope.sender, now)
        else:
            self._perform(self.engine.on_decoded(message, now, envelope.sender))
        if sum(stats[k] for k in ENGINE_REFUSALS) != before:  # rare: only then find which one
            for counter in ENGINE_REFUSALS:
                if stats[counter] != self._engine_logged.get(counter, 0):
                    self._engine_logged[counter] = stats[counter]
                    self._log_refusal(counter, stats[counter], f"from {envelope.sender.hex()[:16]}")

    def _take_batch(self, raws: list[bytes], relay: bytes, now: int) -> None:
        """A signed batch of transactions into the pool, decoded within `MAX_BATCH_ITEMS` items together."""
        accepted = 0
        self.app.intake = item_budget(MAX_BATCH_ITEMS)
        try:
            for raw in raws:
                verdict = self.app.mempool.add(raw, now)
                if isinstance(verdict, Accepted):
                    self.stats["tx_accepted"] += 1
                    accepted += 1
                    continue
                if self._duplicate(raw):  # gossiped again (by its sender or a relay): nothing wrong
                    self.stats["tx_duplicate"] += 1
                    continue
                self._refused("tx_rejected", f"{verdict.reason}, relayed by {relay.hex()[:16]}")
                if verdict.reason == REVOKED_SENDER:
                    self._refused("tx_refused_revoked", relay.hex()[:16])
        finally:
            self.app.intake = None
        if accepted:
            self._perform(self.engine.on_pending(now))

    def _duplicate(self, raw: bytes) -> bool:
        """A refused transaction that this replica already holds: in its pool or in a block."""
        try:
            txid = self.app.decode_received(raw).txid
        except DecodeError:
            return False  # neither pooled nor in a block: both hold only well-formed transactions
        return txid in self.app.mempool or self.store.locate_tx(txid) is not None

    def _serve_sync(self, request: SyncRequest, kind: str, requester: bytes, now: int) -> None:
        """Answer a signed sync request if `sync_guard` takes it (review21 F7), counting what it refuses."""
        refusal = self.sync_guard.admit(requester, request, kind == SYNC, now)
        if refusal is not None:
            self._refused(refusal, f"from {requester.hex()[:16]}, from height {request.from_height}")
            if refusal == "sync_refused_stale" and request.at_ms is not None:
                self._log_skew(requester, request.at_ms - now)
            return
        self._skew_logged.discard(requester)
        actions = self.engine.on_decoded(request, now, requester)
        self.sync_guard.served(requester, sum(len(a.data) for a in actions if isinstance(a, Send)))
        self._perform(actions)

    def _log_skew(self, requester: bytes, offset_ms: int) -> None:
        """Once per requester until it is served again: its clock is off, which no counter says (review23 F1)."""
        if requester in self._skew_logged:
            return
        if len(self._skew_logged) >= MAX_REQUESTERS:
            self._skew_logged.clear()
        self._skew_logged.add(requester)
        log.warning(
            "%s: sync requests from %s refused for their date: its clock reads %+d ms from ours (taken up to "
            "%d ms ahead, and as far behind from a requester not served lately); check its time sync",
            self.chain,
            requester.hex()[:16],
            offset_ms,
            self.sync_guard.unseen_ms,
        )

    def _peek(self, body: bytes) -> WireMessage | None:
        """A known sender's consensus body, decoded before its signature is checked so that a vote or block
        for a decided height is dropped without one; None if it does not decode within a vote message's
        items (`MAX_VOTE_ITEMS`). A bigger body (a sync response) is decoded whole, with the wire's bound,
        only once the signature holds: a stranger using a member's key costs at most this small decode."""
        try:
            return decode_wire(self.chain, body, max_items=MAX_VOTE_ITEMS)
        except MessageError:
            return None  # too big to peek at, or malformed: the engine decodes and counts it once signed

    def _refused(self, counter: str, detail: str) -> None:
        self.stats[counter] += 1
        self._log_refusal(counter, self.stats[counter], detail)

    def _log_refusal(self, counter: str, count: int, detail: str) -> None:
        """Log the 1st, 2nd, 4th, 8th ... refusal of each kind: every kind shows up in the log, and a flood
        of bad messages cannot flood the log (the counters in `status()` hold the exact numbers)."""
        if count & (count - 1) == 0:
            log.warning("%s: %s refused (%s; %d so far)", self.chain, counter, detail, count)

    def fire(self, timer: Timer, now: int) -> None:
        if timer.kind != REGOSSIP_TIMER:
            self._perform(self.engine.on_timer(timer, now))
        else:
            again = self.regossip.fire(timer.height, now, self.app.mempool.__contains__)
            self.stats["tx_regossiped"] += len(again)
            self.gossip(again)

    def halt_at(self, height: int | None, now: int) -> bool:
        """The coordinated stop (`Engine.halt_at`, `halt.apply_halt`): finalise nothing above `height` (None:
        run on); says whether that changed anything."""
        if height == self.engine.config.halt_height:
            return False
        self._perform(self.engine.halt_at(height, now))
        return True

    def submit(self, raw: bytes, now: int) -> Accepted | Rejected:
        """A transaction from this process (the embedding daemon): into the mempool, then gossiped."""
        verdict = self.app.mempool.add(raw, now)
        if isinstance(verdict, Accepted):
            self._gossip.append(raw)
            self.regossip.track(decode_tx(raw).txid, raw, now)
            if len(self._gossip) >= GOSSIP_BATCH:
                self.flush()
            self._perform(self.engine.on_pending(now))
        return verdict

    def refusal(self, txid: bytes) -> str | None:
        """Why this replica's pool let `txid` go without it landing (refused when a block was built, or
        by the recheck after a commit), if it did; None otherwise."""
        return self.app.refusal(txid)

    def flush(self) -> None:
        """Gossip what was submitted since the last flush."""
        batch, self._gossip = self._gossip, []
        self.gossip(batch)

    def gossip(self, raws: list[bytes]) -> None:
        """Publish transactions to every replica of the chain, signed by this replica (envelopes of at most
        `GOSSIP_BATCH`); for an embedder that gossips transactions of its own again."""
        for start in range(0, len(raws), GOSSIP_BATCH):
            batch = encode_tx_batch(raws[start : start + GOSSIP_BATCH])
            self.transport.publish(self.chain, TX, seal_envelope(self.chain, TX, self.keypair, batch))

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                self.transport.publish(
                    self.chain, CONSENSUS, seal_envelope(self.chain, CONSENSUS, self.keypair, action.data)
                )
            elif isinstance(action, Send):
                data = action.data
                if action.request is not None and action.request.at_ms is not None and self.clock is not None:
                    at_ms = max(action.request.at_ms, self.clock())  # when it goes, after the batch's commits
                    data = encode_wire(self.chain, replace(action.request, at_ms=at_ms))
                envelope = seal_envelope(self.chain, SYNC, self.keypair, data)
                self.transport.publish(self.chain, SYNC, envelope, to=action.to)
            elif isinstance(action, SetTimer):
                self.schedule(action.timer, action.at_ms)
            elif isinstance(action, Committed):
                self.stats["committed_via_sync" if action.via_sync else "committed"] += 1
                if action.proposer == self.keypair.public and not action.via_sync:
                    announcement = encode_wire(
                        self.chain, SyncResponse(((action.block, action.certificate),))
                    )
                    self.transport.publish(
                        self.chain, BLOCK, seal_envelope(self.chain, BLOCK, self.keypair, announcement)
                    )
                for listener in self.on_commit:
                    listener(action)
            elif isinstance(action, EvidenceFound):
                self._report(action)

    def _report(self, found: EvidenceFound) -> None:
        self._own_nonce = max(self._own_nonce, self.app.next_nonce(self.keypair.public))
        tx = sign_tx(
            self.keypair,
            self.chain,
            "evidence",
            self._own_nonce,
            self.engine.now,
            self.app.evidence_body(found.evidence),
        )
        if isinstance(self.submit(tx.raw, self.engine.now), Accepted):
            self._own_nonce += 1
            self.stats["evidence_submitted"] += 1

    def status(self) -> dict[str, Any]:
        head = self.app.head()
        return {
            "chain": self.chain,
            "height": head.height,
            "head": head.block_hash.hex(),
            "round": self.engine.s.round,
            "authority": self.keypair.public in self.engine.s.vset,
            "mempool": len(self.app.mempool),
            "committed_txs": self.app.committed_txs,
            "mempool_evicted": self.app.evicted,
            "signatures": {"checked": self.verify.checks, "cached": self.verify.hits},
            "stats": dict(self.stats + self.engine.stats),
        }


def is_ledger_accepted(result: object) -> bool:
    return isinstance(result, LedgerAccepted)
