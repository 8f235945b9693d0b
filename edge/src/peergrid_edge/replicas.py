"""The MGMC's embedded ledger replicas: the MGMC chain and the DSO chain, over the daemon's own MQTT link.

Promises: `EdgeLedger` runs one `peergrid_ledger.consensus.node.ChainReplica` per configured chain on the
daemon's event loop, with this node's key, its own LevelDB store and WAL per chain, gossiping through the
daemon's `MqttLink` on the design's topics (no second MQTT connection). `submit` puts a signed transaction
into the chain's mempool, gossips it, and returns a `Submission`: landed once it (or an earlier signing of the
same kind and body: the outbox re-signs) is in a final block; not landed, with the reason (also logged), when
the chain refused it (in the mempool, or later when a block was built or the pool rechecked) or another
transaction took its nonce, or when the time is up (`final` False: it may still land); `submit_and_wait` is
the same as a bool. `wait_for(chain, predicate)` wakes on every final block. `halt_at({chain: height})` is the coordinated stop: nothing above that height is finalised (the
ledger's `halt.apply_halt`, shared with the DSO node), so every replica ends on the same head. `LedgerTxSink` is the outbox's `TxSink`
that moves the cursor only on inclusion. Never blocks the loop;
bad gossip is dropped and counted by the replica. After `close` nothing touches the stores: gossip still queued
on the loop and replica timers that fire later are ignored. Assumes the loop is running when `start` is called.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peergrid_edge.files import write_whole
from peergrid_edge.link import MqttLink, NonceTaken, Refused
from peergrid_ledger import codec, keys, query
from peergrid_ledger.block import decode_block
from peergrid_ledger.consensus.actions import Committed, Timer
from peergrid_ledger.consensus.app import Accepted
from peergrid_ledger.consensus.engine import HEARTBEAT_MS, EngineConfig
from peergrid_ledger.consensus.halt import apply_halt
from peergrid_ledger.consensus.mempool import MempoolLimits
from peergrid_ledger.consensus.node import ChainReplica, FileWal
from peergrid_ledger.consensus.node_cli import load_genesis, open_store
from peergrid_ledger.consensus.transport import BLOCK, CONSENSUS, SYNC, TX, topic
from peergrid_ledger.results import Reason
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import decode_tx, sign_tx

log = logging.getLogger("peergrid.edge.ledger")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(
    frozen=True, kw_only=True
)  # by name only: a field added in the middle once shifted the daemon's values
class ChainSpec:
    name: str  # role in this node: "mgmc" or "dso"
    genesis: Path
    data_dir: Path
    block_period_ms: int = 200
    round_timeout_ms: int = 1500
    wal_fsync: bool = True  # False: the WAL survives a killed process, not a power cut (the one-disk lab)
    heartbeat_ms: int = HEARTBEAT_MS  # an empty block after this long without a transaction


@dataclass(frozen=True, slots=True)
class Submission:
    """What became of a submitted transaction: `landed` in a final block, or why not. `reason` is the chain's
    refusal as the replica words it (a contract refusal starts with its `Reason` value, e.g.
    "insufficient-funds: ..."), or NONCE_TAKEN, or the time running out (`final` False: it may still land)."""

    landed: bool
    reason: str = ""
    final: bool = True


LANDED = Submission(True)
NONCE_TAKEN = "nonce-taken"
"""Another transaction of the same sender landed with this one's nonce: this one never will (sign it again)."""
FINAL_REFUSALS = tuple(
    r.value
    for r in (Reason.DUPLICATE, Reason.INVALID, Reason.MALFORMED, Reason.RULE_VIOLATION, Reason.FORBIDDEN)
)
"""Contract refusals the chain never takes back: the same transaction signed again is refused again (`invalid`
also covers `invalid-evidence`). Others (nonce, time, authorisation) may pass at a later signing."""


class ProcessSafeWal(FileWal):
    """The consensus WAL without fsync, for the lab testbed, where 30 replicas share one disk and the WAL was
    the busiest part of an MGMC's loop: what the engine wants synced (proposals, commits, round changes) is
    written and renamed into place, so it survives the process being killed (the kernel keeps the page) but
    not a power cut; a prepare alone is not written at all, exactly as if a power cut had lost it (after a
    restart the engine withholds it: docs/consensus.md, "Restarts"). A Pi keeps the durable FileWal."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, fsync=False)

    def save(self, record: bytes, sync: bool = True) -> None:
        if sync:
            super().save(record, sync)


class LinkTransport:
    """`Transport` over the daemon's MqttLink: QoS 1 publish; while disconnected the message is dropped
    (consensus retransmits and catch-up sync fetches what was missed)."""

    def __init__(self, link: MqttLink, feeder: str) -> None:
        self.link, self.feeder = link, feeder
        self.dropped_offline = 0

    def publish(self, chain: str, kind: str, data: bytes, to: bytes | None = None) -> None:
        if (
            not self.link.publish(topic(self.feeder, chain, kind, to), data, qos=1)
            and len(data) <= self.link.max_payload
        ):
            self.dropped_offline += 1  # (one above the link's bound is the link's count: never sent at all)


class EdgeLedger:
    def __init__(
        self,
        keypair: keys.Keypair,
        link: MqttLink,
        feeder: str,
        chains: list[ChainSpec],
        clock: Callable[[], int] = wall_ms,
        status_file: Path | None = None,
    ) -> None:
        self.keypair, self.link, self.feeder, self.clock = keypair, link, feeder, clock
        self.transport = LinkTransport(link, feeder)
        self.replicas: dict[str, ChainReplica] = {}  # by role ("mgmc", "dso")
        self.stores: list[BlockStore] = []
        self.status_file = status_file
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self._reading = threading.Lock()  # a store read off the loop (`_used_on_chain`) against `close`
        self._changed: dict[str, asyncio.Event] = {}
        self.block_times: dict[str, list[tuple[int, int, int]]] = {}  # role -> (height, time_ms, round)
        self._landed: dict[str, dict[tuple[bytes, int], tuple[str, bytes]]] = {}
        """role -> (sender, nonce) -> (kind, payload digest) of recently final transactions."""
        for spec in chains:
            genesis = load_genesis(spec.genesis)
            store = open_store(spec.data_dir, genesis)
            self.stores.append(store)
            config = EngineConfig(
                block_period_ms=spec.block_period_ms,
                round_timeout_ms=spec.round_timeout_ms,
                heartbeat_ms=spec.heartbeat_ms,
            )
            wal_path = spec.data_dir.parent / f"{spec.data_dir.name}.wal"
            wal = FileWal(wal_path) if spec.wal_fsync else ProcessSafeWal(wal_path)
            limits = MempoolLimits(max_txs=50_000, rate_per_sender=1000.0, burst_per_sender=1000)
            replica = ChainReplica(  # its clock stamps a sync request as it goes out (review23 F1)
                store,
                keypair,
                config,
                self.transport,
                self._scheduler(spec.name),
                wal,
                limits,
                clock=self.clock,
            )
            replica.on_commit.append(self._committed(spec.name))
            self.replicas[spec.name] = replica
            self._changed[spec.name] = asyncio.Event()
            self.block_times[spec.name] = []
            self._landed[spec.name] = {}

    # --- wiring ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for role, replica in self.replicas.items():
            chain = replica.chain
            for kind in (TX, CONSENSUS, BLOCK):
                self.link.subscribe(topic(self.feeder, chain, kind), self._handler(role, kind))
            self.link.subscribe(
                topic(self.feeder, chain, SYNC, self.keypair.public), self._handler(role, SYNC)
            )
        for replica in self.replicas.values():
            replica.start(self.clock())

    def close(self) -> None:
        """Close the stores; from here on gossip and timers are ignored (the daemon stops its link first, but
        a message paho queued on the loop just before, or a timer, may still come)."""
        if self.closed:
            return
        self.write_status()
        with self._reading:  # a lookup's block read off the loop ends first; it reads no more after this
            self.closed = True
            for store in self.stores:
                store.close()

    def _handler(self, role: str, kind: str) -> Callable[[str, bytes], None]:
        def handle(_topic: str, payload: bytes) -> None:
            if not self.closed:
                self.replicas[role].receive(kind, payload, self.clock())

        return handle

    def _scheduler(self, role: str) -> Callable[[Timer, int], None]:
        def schedule(timer: Timer, at_ms: int) -> None:
            loop = self._loop or asyncio.get_running_loop()
            delay = max(0.0, (at_ms - self.clock()) / 1000)
            loop.call_later(delay, self._fire, role, timer)

        return schedule

    def _fire(self, role: str, timer: Timer) -> None:
        if not self.closed:
            self.replicas[role].fire(timer, self.clock())

    def _committed(self, role: str) -> Callable[[Committed], None]:
        def on_commit(action: Committed) -> None:
            try:
                block = decode_block(action.block)
            except (
                Exception
            ):  # the replica committed it, so it decodes; never let bookkeeping crash consensus
                log.exception("could not decode a committed block")
                return
            times = self.block_times[role]
            times.append((block.header.height, block.header.time, block.header.round))
            del times[:-5000]
            landed = self._landed[role]
            for tx in block.txs:
                landed[(tx.sender, tx.nonce)] = _content(tx)
            while len(landed) > 20_000:
                del landed[next(iter(landed))]
            event = self._changed[role]
            event.set()
            self._changed[role] = asyncio.Event()

        return on_commit

    # --- use -------------------------------------------------------------------------------------------

    def state(self, role: str) -> Any:
        return self.replicas[role].app.state

    def height(self, role: str) -> int:
        return self.replicas[role].app.head().height

    def heights(self) -> dict[str, int]:
        return {replica.chain: replica.app.head().height for replica in self.replicas.values()}

    def heads(self) -> dict[str, dict[str, Any]]:
        return {
            r.chain: {"height": r.app.head().height, "head": r.app.head().block_hash.hex()}
            for r in self.replicas.values()
        }

    def next_nonce(self, role: str, sender: bytes) -> int:
        return self.replicas[role].app.next_nonce(sender)

    def sign(self, role: str, keypair: keys.Keypair, kind: str, body: dict[str, Any], nonce: int) -> bytes:
        return sign_tx(keypair, self.replicas[role].chain, kind, nonce, self.clock(), body).raw

    async def submit_and_wait(self, role: str, raw: bytes, timeout_s: float) -> bool:
        return (await self.submit(role, raw, timeout_s)).landed

    async def submit(self, role: str, raw: bytes, timeout_s: float) -> Submission:
        replica = self.replicas[role]
        tx = decode_tx(raw)
        refused: list[str] = []

        def settled(_state: Any) -> bool:
            if tx.nonce < replica.app.next_nonce(tx.sender):
                return True
            reason = replica.refusal(tx.txid)
            if reason is not None:
                refused.append(reason)
            return bool(refused)

        if tx.nonce < replica.app.next_nonce(tx.sender):
            return await self._used(role, tx)  # its nonce was used before we got here: by it, or by another
        verdict = replica.submit(raw, self.clock())
        replica.flush()
        if not isinstance(verdict, Accepted) and not any(
            word in verdict.reason for word in ("duplicate", "pending", "already used")
        ):
            log.warning("%s chain refused a %s: %s", role, tx.kind, verdict.reason)
            return Submission(False, verdict.reason)
        if not await self.wait_for(role, settled, timeout_s):
            return Submission(False, f"not final within {timeout_s:g} s", final=False)
        if refused:
            log.warning("%s chain refused a %s (nonce %d): %s", role, tx.kind, tx.nonce, refused[0])
            return Submission(False, refused[0])
        taken = self._landed[role].get((tx.sender, tx.nonce))
        if taken is not None and taken != _content(tx):
            log.warning(
                "%s chain: nonce %d of a %s was taken by another transaction (a %s); this one is lost",
                role, tx.nonce, tx.kind, taken[0],
            )  # fmt: skip
            return Submission(False, f"{NONCE_TAKEN}: nonce {tx.nonce} went to a {taken[0]}")
        return LANDED

    async def _used(self, role: str, tx: Any) -> Submission:
        """A transaction whose nonce a final transaction of its sender already holds: LANDED where that one says
        the same (this one, or an earlier signing of it: the outbox signs again after a restart), NONCE_TAKEN
        where another took it (K7's finding: it was reported landed, and the outbox moved on without it). One
        that landed before this process is read back from the store in a worker thread (`_used_on_chain`)."""
        used = self._landed[role].get((tx.sender, tx.nonce))
        if used is None:
            head = self.height(role)
            used = await asyncio.to_thread(self._used_on_chain, role, tx.sender, tx.nonce, head)
        if used == _content(tx):
            return LANDED
        what = "one this replica does not hold" if used is None else f"a {used[0]}"
        log.warning("%s chain: nonce %d of a %s was used by another transaction (%s); this one is lost",
                    role, tx.nonce, tx.kind, what)  # fmt: skip
        return Submission(False, f"{NONCE_TAKEN}: nonce {tx.nonce} went to {what}")

    def _used_on_chain(self, role: str, sender: bytes, nonce: int, head: int) -> tuple[str, bytes] | None:
        """What the sender's final transaction with `nonce` says, read back from `head` down (one that landed
        before this process, beyond `_landed`): a sender's nonces grow with the height, so the scan ends at its
        first transaction at or below `nonce` - after the one in flight at a restart, a block or two, but a store
        restored far behind the chain reads back to its last commitment (about 1 s a day of 2-s heartbeat blocks
        on x86). Runs in a worker thread, off the event loop: final blocks never change, and LevelDB takes a read
        beside the replica's writes; each read holds `_reading`, so `close` waits for it and none comes after
        (RuntimeError: the ledger closed during the lookup)."""
        store = self.replicas[role].store
        for height in range(head, 0, -1):
            with self._reading:
                if self.closed:
                    raise RuntimeError("the ledger closed during a taken-nonce lookup")
                block = store.block(height)
            for tx in reversed(block.txs):
                if tx.sender == sender and tx.nonce <= nonce:
                    return _content(tx) if tx.nonce == nonce else None
        return None

    def transaction(self, role: str, txid: bytes) -> Any | None:
        """A final transaction of the `role` chain by its id (public chain data), or None if not held."""
        store = self.replicas[role].store
        where = store.locate_tx(txid)
        if where is None:
            return None
        height, index = where
        return store.block(height).txs[index]

    async def wait_for(self, role: str, predicate: Callable[[Any], bool], timeout_s: float) -> bool:
        """Wake on every final block of the chain until `predicate(state)` holds or the time is up."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            if predicate(self.state(role)):
                return True
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for drops a cancellation that comes in the turn
                # the event fires (cpython gh-86296) and the cancelled task would go on as if never cancelled
                async with asyncio.timeout(left):
                    await self._changed[role].wait()
            except TimeoutError:
                return bool(predicate(self.state(role)))

    def halt_at(self, heights: Mapping[str, int]) -> None:
        """Finalise nothing above `heights[chain]` on each named chain (a chain not named runs on); a proposer
        idling towards a heartbeat heads for the halt at the block period at once (`halt.apply_halt`)."""
        if not self.closed:
            apply_halt(self.replicas.values(), heights, self.clock())

    @property
    def halted(self) -> bool:
        return any(r.engine.config.halt_height is not None for r in self.replicas.values())

    def status(self) -> dict[str, Any]:
        return {role: replica.status() for role, replica in self.replicas.items()}

    def write_status(self) -> None:
        if self.status_file is None:
            return
        doc = {
            "node": self.keypair.public.hex(),
            "chains": {r.chain: r.status() for r in self.replicas.values()},
        }
        # not synced: rewritten every second on the loop, and a lost one costs nothing (the next says it again)
        write_whole(self.status_file, json.dumps(doc), sync=False)


def _content(tx: Any) -> tuple[str, bytes]:
    """What a transaction says, whatever time it was signed at: its kind and a digest of its body."""
    return tx.kind, hashlib.sha256(codec.encode(tx.body)).digest()


class LedgerTxSink:
    """The outbox's sink once a replica runs: taken only when the transaction is in a final block."""

    def __init__(self, ledger: EdgeLedger, role: str = "mgmc") -> None:
        self.ledger, self.role = ledger, role

    async def submit(self, raw: bytes, timeout_s: float) -> bool:
        """Taken once in a final block, or where the chain already holds this key's commitment of its interval
        (`_held`: before renumbering and on a refusal); `NonceTaken` where another transaction of the sender
        holds its nonce; `Refused` where the chain refused it for good (`FINAL_REFUSALS`)."""
        tx = decode_tx(raw)
        if self._held(tx):
            return True
        outcome = await self.ledger.submit(self.role, raw, timeout_s)
        if outcome.landed:
            return True
        if self._held(tx):
            return True
        if outcome.reason.startswith(NONCE_TAKEN):
            raise NonceTaken(outcome.reason, self.ledger.next_nonce(self.role, tx.sender))
        if outcome.final and outcome.reason.startswith(FINAL_REFUSALS):
            raise Refused(outcome.reason, self.ledger.next_nonce(self.role, tx.sender))
        return False

    def _held(self, tx: Any) -> bool:
        """A der_commitment whose interval the chain already holds for this sender is done (R24 F1: a store
        restored from a backup seals the interval open at backup time again from fewer readings - another root
        the chain refuses as `duplicate` at any nonce). Same root: it landed. Another root: one WARNING."""
        if tx.kind != "der_commitment":
            return False
        interval = tx.body["interval"]
        held = query.der_commitment(self.ledger.state(self.role), tx.sender, interval)
        if held is None:
            return False
        if held["root"] != tx.body["root"]:
            log.warning(
                "%s chain: interval %d is committed already with another root (%d readings on chain, %d stored): "
                "this store's readings of interval %d are not the committed ones, their proofs will fail; "
                "not sent again", self.role, interval, held["readings"], tx.body["readings"], interval,
            )  # fmt: skip
        return True
