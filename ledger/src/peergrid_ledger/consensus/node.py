"""A ledger replica as an asyncio shell: MQTT in, engine, store, MQTT out — one or more chains per process.

Promises: `ChainReplica` is everything one chain needs around the pure engine (signed envelopes, transaction
batches, the WAL file (`wal_file.FileWal`), block announcements, evidence transactions) and does no I/O of
its own beyond its store, WAL and the `Transport` it is given, so edge and dso-server embed it as a library;
`Node` runs several replicas over one MQTT connection on one event loop. Every dropped message is counted in `stats` and
logged (rate-limited), none raises; a key revoked on chain has its envelopes refused (`dropped_revoked`). A
transaction submitted here is gossiped again until it leaves the pool (`regossip.Regossip`: bounded back-off
and batches, on the replica's own timer once started); one that arrives already pooled or in a block is
counted as `tx_duplicate`, not refused. Assumes the wall clock (ms) is roughly synchronised between nodes
(block times are checked against it within the configured drift). Must never block the loop on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import keys
from ..codec import DecodeError
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
    SyncResponse,
    WireMessage,
    decode_wire,
    encode_wire,
)
from .regossip import REGOSSIP_MS, Regossip
from .sigcache import SignatureCache
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
"""Engine counters that mean someone sent something wrong (logged as well as counted); `stale` and
`duplicates` are ordinary gossip and only counted."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


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
    ) -> None:
        self.store = store
        self.keypair = keypair
        self.transport = transport
        self.schedule = schedule
        self.app = LedgerApp(store, keypair, limits)
        self.chain = self.app.chain_id
        self.verify = SignatureCache(keys.verify)  # envelopes, votes, certificates: each checked once
        self.engine = Engine(self.app, config, keypair, self.verify, wal)
        self.stats: Counter[str] = Counter()
        self.on_commit: list[Callable[[Committed], None]] = []
        self._gossip: list[bytes] = []
        self._own_nonce = 0
        self._engine_logged: dict[str, int] = {}
        self.regossip = Regossip(self._arm_regossip, *regossip_ms)
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
                accepted = 0
                for raw in decode_tx_batch(envelope.body):
                    verdict = self.app.mempool.add(raw, now)
                    if isinstance(verdict, Accepted):
                        self.stats["tx_accepted"] += 1
                        accepted += 1
                        continue
                    if self._duplicate(raw):  # gossiped again (by its sender or a relay): nothing wrong
                        self.stats["tx_duplicate"] += 1
                        continue
                    self._refused("tx_rejected", f"{verdict.reason}, relayed by {envelope.sender.hex()[:16]}")
                    if verdict.reason == REVOKED_SENDER:
                        self._refused("tx_refused_revoked", envelope.sender.hex()[:16])
                if accepted:
                    self._perform(self.engine.on_pending(now))
                return
        except EnvelopeError as exc:
            self._refused(f"dropped_{exc.reason}", str(exc))
            return
        stats = self.engine.stats
        before = sum(stats[k] for k in ENGINE_REFUSALS)
        if message is None:
            self._perform(self.engine.on_message(envelope.body, now, envelope.sender))
        else:
            self._perform(self.engine.on_decoded(message, now, envelope.sender))
        if sum(stats[k] for k in ENGINE_REFUSALS) != before:  # rare: only then find which one
            for counter in ENGINE_REFUSALS:
                if stats[counter] != self._engine_logged.get(counter, 0):
                    self._engine_logged[counter] = stats[counter]
                    self._log_refusal(counter, stats[counter], f"from {envelope.sender.hex()[:16]}")

    def _duplicate(self, raw: bytes) -> bool:
        """A refused transaction that this replica already holds: in its pool or in a block."""
        try:
            txid = decode_tx(raw).txid
        except DecodeError:
            return False
        return txid in self.app.mempool or self.store.locate_tx(txid) is not None

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
                envelope = seal_envelope(self.chain, SYNC, self.keypair, action.data)
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


class Node:
    """Several chain replicas sharing one transport and one event loop."""

    def __init__(
        self, keypair: keys.Keypair, status_file: Path | None = None, clock: Callable[[], int] = wall_ms
    ) -> None:
        self.keypair = keypair
        self.status_file = status_file
        self.clock = clock
        self.replicas: dict[str, ChainReplica] = {}
        self.stats: Counter[str] = Counter()
        """The node's own counters (`receive_errors`), beside each replica's in `status()`."""
        self._inbox: asyncio.Queue[tuple[str, str, bytes]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def deliver(self, chain: str, kind: str, payload: bytes) -> None:
        """Called from the transport's thread."""
        if self._loop is not None and self._inbox is not None:
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, (chain, kind, payload))

    def schedule_for(self, chain: str) -> Schedule:
        def schedule(timer: Timer, at_ms: int) -> None:
            assert self._loop is not None
            delay = max(0.0, (at_ms - self.clock()) / 1000)
            self._loop.call_later(delay, self._fire, chain, timer)

        return schedule

    def _fire(self, chain: str, timer: Timer) -> None:
        self.replicas[chain].fire(timer, self.clock())

    def attach_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()

    async def run(self, stop: asyncio.Event) -> None:
        assert self._inbox is not None, "call attach_loop() first"
        for replica in self.replicas.values():
            replica.start(self.clock())
        ticker = asyncio.create_task(self._tick(stop))
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(self._inbox.get())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if getter not in done:
                    getter.cancel()
                    break
                item = getter.result()
                while True:
                    self._receive(*item)
                    try:
                        item = self._inbox.get_nowait()
                    except asyncio.QueueEmpty:
                        break
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self.write_status()

    def _receive(self, chain: str, kind: str, payload: bytes) -> None:
        """One message into its replica. `receive` counts every refusal itself and raises nothing it knows of;
        anything it does raise (a bug in a codec or contract) costs that message only: logged with its
        traceback (the 1st, 2nd, 4th ... time) and counted as `receive_errors`, and the node goes on."""
        replica = self.replicas.get(chain)
        if replica is None:
            return
        try:
            replica.receive(kind, payload, self.clock())
        except Exception:
            self.stats["receive_errors"] += 1
            count = self.stats["receive_errors"]
            if count & (count - 1) == 0:
                log.exception("%s: a %s message raised in receive; dropped (%d so far)", chain, kind, count)

    async def _tick(self, stop: asyncio.Event) -> None:
        beat = 0
        while not stop.is_set():
            await asyncio.sleep(0.02)
            for replica in self.replicas.values():
                replica.flush()
            beat += 1
            if beat % 10 == 0:
                self.write_status()

    def write_status(self) -> None:
        if self.status_file is None:
            return
        doc = {
            "node": self.keypair.public.hex(),
            "stats": dict(self.stats),
            "chains": {c: r.status() for c, r in self.replicas.items()},
        }
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, self.status_file)
