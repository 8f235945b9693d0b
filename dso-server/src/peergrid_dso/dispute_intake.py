"""The readings intake of the DSO's dispute settler (`dispute_node.DisputeSettler`, which inherits it).

Promises: readings reach the settler through `offer_readings` (the REST API's POST /api/dso/disputes/readings),
accepted only as the whole set a `der_commitment` on the chain sealed in time (and read by the one pass there,
`sealed_pass.take_in`: its result kept, not the leaves, so no resolve decodes or hashes them again), and only for
a (node, commitment interval) that a pending dispute may read (`ReadingsNotNeeded` otherwise: the window's, and
up to `CLOCK_REACH_COMMITS` further each way for a signing meter's clock, `MeterClock.reachable`): what it keeps
is bounded by the disputes it waits on, each of which ends by its deadline, and is dropped when they end. A set
taken in is kept on disk before `offer_readings` returns (`dispute_readings_file.KeptReadings`, beside
`record_file`; written by its writer thread, off the loop, for the API's `offer_readings_kept`, D13; one it
cannot write is `ReadingsNotKept`), read back at the next start (`_read_back`), checked against the chain
again, and forgotten there too when no pending dispute reads it (D12: a restart lost them, U7's 0 of 30,000 Wh).
A set that arrives, a `der_commitment` in a final block (`_retry_unresolved`) or a `settle` of a sibling trade
(`_retry_siblings`) makes the disputes waiting on it due again.
Assumes: the settler's state and replica (declared below, set by `DisputeSettler.__init__`); called on the
node's event loop, except `offer_readings_threadsafe` (from the web server's threads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from peergrid_dso.dispute_readings_file import KeptReadings, taken_back
from peergrid_dso.sealed_pass import SealedSet
from peergrid_dso.sealed_readings import ChainTime, MeterClock, sealed_late, verified_leaves
from peergrid_ledger import query
from peergrid_ledger.metering import Unmetered


class ReadingsRefused(ValueError):
    """Readings offered for a commitment that the chain does not hold, or not its sealed set."""


class ReadingsNotNeeded(ReadingsRefused):
    """Readings no pending dispute reads, or of a commitment sealed too late to count: not kept."""


class ReadingsIntake:
    """`offer_readings` and what it sets going, as methods of the settler (`dispute_node.DisputeSettler`)."""

    # the settler's, read and changed here (`DisputeSettler.__init__` says what each holds)
    adapter: Any
    sealed: dict[tuple[bytes, int], SealedSet]
    kept: KeptReadings
    pending: dict[bytes, float]
    reads: dict[bytes, set[tuple[bytes, int]]]
    _unread: dict[tuple[bytes, int], list[bytes]]
    _looked: bool
    _wake: asyncio.Event
    if TYPE_CHECKING:

        @property
        def state(self) -> Any: ...
        @property
        def clock(self) -> MeterClock: ...
        def chain_time(self) -> ChainTime: ...
        def look_everywhere(self) -> None: ...
        def _take_candidates(self) -> None: ...
        def _readings_of(self, trade: bytes) -> set[tuple[bytes, int]]: ...

    def offer_readings(self, node: bytes, commitment: int, leaves: Sequence[bytes]) -> int:
        """Keep an MGMC's reading leaves of one commitment interval when a pending dispute reads them, its
        `der_commitment` was sealed in time, and they are exactly the set it sealed (root and count);
        `ReadingsNotNeeded` or `ReadingsRefused` otherwise. Returns how many. Written where it is called; the
        readings API's are written off the loop (`offer_readings_kept`)."""
        if (record := self._admit(node, commitment, leaves)) is not None:
            key = (node, commitment)
            self._hold(key, self.kept.take_in(key, leaves, record, self.clock.most_meter_readings))
        return len(leaves)

    async def offer_readings_kept(self, node: bytes, commitment: int, leaves: Sequence[bytes]) -> int:
        """`offer_readings` with the set written and fsynced on the kept file's writer thread (D13: on the loop, an
        SD card's 50-500 ms fsync stalled the node and every other post): sets checked on the loop go to it in
        that order, so their lines keep it, and each returns once its own line is fsynced."""
        if (record := self._admit(node, commitment, leaves)) is not None:
            key = (node, commitment)
            found = await self.kept.take_in_off_loop(key, leaves, record, self.clock.most_meter_readings)
            if any(key in self.reads.get(trade, ()) for trade in self.pending):
                self._hold(key, found)
            else:  # its disputes ended while it was written (`done` forgot it after the write): not held
                self.kept.forget_soon([key])
        return len(leaves)

    def _admit(self, node: bytes, commitment: int, leaves: Sequence[bytes]) -> dict[str, Any] | None:
        """The checks of `offer_readings`: the set's `der_commitment`, or None when the set is held already."""
        key = (node, commitment)
        record: dict[str, Any] | None = query.der_commitment(self.state, node, commitment)
        if record is None:
            raise ReadingsRefused(
                f"no der_commitment of {node.hex()[:16]}… for interval {commitment} on the chain"
            )
        self._read_back()
        self._take_candidates()  # a dispute in a final block the last pass has not looked at yet
        if not any(key in self.reads.get(trade, ()) for trade in self.pending):
            raise ReadingsNotNeeded(
                f"no pending dispute reads commitment interval {commitment} of {node.hex()[:16]}…: the DSO "
                "keeps readings only for a disputed trade it waits on"
            )
        late = sealed_late(self.state, node, commitment, self.clock.commit_ms, self.chain_time())
        if late is not None:
            raise ReadingsNotNeeded(late)
        try:
            verified_leaves(self.state, node, commitment, {key: list(leaves)})
        except Unmetered as exc:
            raise ReadingsRefused(str(exc)) from None
        held = self.sealed.get(key)
        if held is not None and (held.root, held.count) == (record["root"], int(record["readings"])):
            self._hold(key, held)  # a re-post after an outage: kept once
            return None
        return record  # for the one pass (D5: its result held, not the leaves), on disk before "taken" (D12)

    def _hold(self, key: tuple[bytes, int], found: SealedSet) -> None:
        self.sealed[key] = found
        self._retry_unresolved({key})
        self._wake.set()

    def _retry_unresolved(self, arrived: set[tuple[bytes, int]]) -> None:
        """Waiting disputes that read any of the `arrived` (node, commitment) readings are due again."""
        for trade, due in self.pending.items():
            if due == float("inf") and self.reads.get(trade, set()) & arrived:
                self.pending[trade] = 0.0

    def _retry_siblings(self, settles: set[bytes]) -> None:
        """Waiting disputes of an interval in which a `settle` stated or settled a trade are due again: a
        sibling trade not settled yet may be what they wait for (`dispute_shares`: what it takes comes off
        its party's energy). And every pending dispute of that interval reads again whose readings it needs:
        a sibling that became disputed has its counterparty's meter read too (`disputes.read_nodes`), whose
        readings would otherwise be refused as needed by no dispute, or dropped when another settles."""
        touched = [query.trade(self.state, tid) for tid in settles]
        intervals = {int(t["interval"]) for t in touched if t is not None}
        if not intervals:
            return
        for trade, due in self.pending.items():
            record = query.trade(self.state, trade)
            if record is not None and int(record["interval"]) in intervals:
                self.reads[trade] = self._readings_of(trade)
                if due == float("inf"):
                    self.pending[trade] = 0.0

    def offer_readings_threadsafe(self, node: bytes, commitment: int, leaves: Sequence[bytes]) -> int:
        """`offer_readings_kept` on the node's event loop, from another thread (the web server's)."""
        found = self.offer_readings_kept(node, commitment, leaves)
        return asyncio.run_coroutine_threadsafe(found, self.adapter.loop).result(10)

    def _read_back(self) -> None:
        """The sets an earlier run kept (once, at the first pass): every trade on the replica looked at, each set
        a pending dispute reads taken in again (`dispute_readings_file.taken_back`), the others forgotten."""
        if not self._unread:
            return
        unread, self._unread = self._unread, {}
        if not self._looked:  # once a start (D13: `run` had just looked, and every trade was read twice)
            self.look_everywhere()
        self._take_candidates()
        needed = {key for trade in self.pending for key in self.reads.get(trade, ())}
        most = self.clock.most_meter_readings if needed & unread.keys() else 0  # (no clock read for none)
        taken = taken_back(self.state, unread, needed, most, self.kept.path)
        self.sealed.update(taken)
        self.kept.forget_soon([key for key in unread if key not in taken])
