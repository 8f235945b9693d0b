"""The DSO node settles disputed trades on the MGMC chain (design step 8; genesis `settle_by_both`).

Promises: `DisputeSettler` follows the final blocks of the DSO's non-voting MGMC-chain replica (`on_commit`):
every `settle` transaction in a final block names a trade that may now wait for the DSO's word
(`peergrid_ledger.takeup.with_dso`, the rule the edges post their readings by): disputed, or standing on one
statement (taken up like a dispute from `takeup.LONE_FROM` of the wait on, review13 F4), or on two sealed
commitments neither party revealed by the reveal deadline (review14 K3b: the trade is watched from the second
commitment, `takeup.reveals_due`, and taken up when a final block's time reaches the deadline; alike one
party's revealed statement beside the other's commitment, `takeup.withheld_due`, D4), or agreed and
waiting for its word (`vouching`, genesis seller_vouched, review13 F2: settled at once where the trade is unpriced or
the seller's metered delivery is the whole quantity, else once the buyer's readings are in too, D2, as for a withheld
seller's hold, review15 M4, or at its deadline; beside its seller's or buyer's disputed trades, once their
counterparties' readings are in too, D4); at `run` start it also
looks through the replica's whole state once, so disputes from before a restart are found. For each disputed
trade it asks the pure resolver (`disputes.resolve`) for the energy both parties' sealed PCC readings confirm
and sends `settle {trade, delivered}` (on a trade whose parties the DSO priced with `market.tariff`, also
`seller_short` and `buyer_short`: `disputes.Vouched.shorts`) under the DSO key through the chain adapter
(`node_chains.ChainAdapter`: judged on the committed state first, so a refusal comes back at once with the chain's reason, never as a
wait); the readings it held for a trade it no longer needs are dropped. Each decision is recorded once per change (`decisions`, and a JSON line in `record_file`:
`dispute_record`): settled
(with the metering it rests on, each party's meter readings it verified - `readings` {signed, unsigned,
refused, refused_why[, off_clock]}: `sealed_readings.ReadingsCount` - and the txid), refused (the chain's reason; tried again after `retry_s` while
the trade is still disputed, e.g. a buyer without funds), failed (a refusal no retry cures: `invalid`,
`malformed`, `rule-violation` - logged once as an error and not tried again while it runs, so it never spins
on one trade; a restart looks once more), or unresolved (why: readings missing, not the sealed
ones, sealed late, a meter gap, a sibling trade not settled yet, ...; tried again when that party's readings
or commitments arrive or a `settle` of the same interval lands, and once a
final block's time reaches the dispute's deadline, after which the resolver's deadline rule settles it: a
dispute is never left waiting for ever on one party). It never settles on a guess and never sends for a trade
that is not disputed on its replica. The chain's time it judges by is its replica's (the head block's time,
each commitment's block time from the store's transaction index); both bounds are the chain's
`settle_wait_ms` unless the DSO gives its own (`seal_within_ms`, `wait_ms`; `dispute_time`, with the clock); `meterless` names the anonyms
of MGs without a PCC meter (the DSO's config), which the resolver never meters and takes at their word;
`signing` the PCC meters enrolled as signing (`meter_clock.signing_meters`: each MG's `meter_key`, still named here), whose MGs it meters from
meter-signed readings only. A trade it takes up with a party that is no anonym in `nodes` (review14 K1: an
MGMC trading under its node key) is logged once per run as an error naming the key; the resolver takes that
side as unmetered under its deadline rules. Readings reach it through `offer_readings` (the REST API's POST
/api/dso/disputes/readings), kept only while a pending dispute reads them and on disk across a restart: that
intake, with the `Readings*` refusals, is `dispute_intake.ReadingsIntake`, which the settler inherits (names
re-exported here). At a start it looks at every trade on the replica once.
State is read and `settle` sent on the node's event loop only; `snapshot` and `offer_readings_threadsafe` may
be called from the web server's threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from peergrid_dso.dispute_intake import ReadingsIntake, ReadingsNotNeeded, ReadingsRefused
from peergrid_dso.dispute_readings_file import KeptReadings, ReadingsNotKept, readings_file
from peergrid_dso.dispute_record import DisputeRecord
from peergrid_dso.dispute_time import ReplicaTime
from peergrid_dso.disputes import Unresolved, Vouched, read_nodes, resolve, to_json
from peergrid_dso.meter_clock import ChainClock, signing_meters
from peergrid_dso.sealed_pass import SealedSet
from peergrid_dso.sealed_readings import ChainTime, MeterClock, SigningMeters
from peergrid_ledger import keys, query
from peergrid_ledger.block import decode_block
from peergrid_ledger.contracts.market_state import trade_key
from peergrid_ledger.results import Reason
from peergrid_ledger.takeup import reveals_due, with_dso, withheld_due

log = logging.getLogger("peergrid_dso.dispute_node")
TRADE_PREFIX = trade_key(b"")
# refusals of the DSO's settle that no retry can cure (its body or its figures): recorded once as failed
REFUSED_FOR_GOOD = frozenset({Reason.INVALID.value, Reason.MALFORMED.value, Reason.RULE_VIOLATION.value})


class DisputeSettler(ReadingsIntake):
    def __init__(
        self,
        adapter: Any,  # node_chains.ChainAdapter of the MGMC chain
        dso_key: keys.Keypair,
        clock: MeterClock | ChainClock,  # ChainClock: its t0 read from the replica at first use
        nodes: Mapping[bytes, bytes],  # anonym -> the MGMC's node key
        record_file: Path | None = None,
        retry_s: float = 30.0,
        now: Callable[[], float] = time.monotonic,
        seal_within_ms: int | None = None,  # None: the chain's settle_wait_ms
        wait_ms: int | None = None,  # None: the chain's settle_wait_ms
        meterless: Collection[bytes] = frozenset(),  # anonyms of MGs without a PCC meter (MgEntry.meterless)
        signing: SigningMeters | None = None,  # PCC meters enrolled as signing (`signing_meters`)
    ) -> None:
        self.adapter, self.dso_key, self.nodes = adapter, dso_key, dict(nodes)
        self.time = ReplicaTime(clock, seal_within_ms, wait_ms)  # `clock`, `chain_time`
        self.retry_s, self.now = retry_s, now
        self.record = DisputeRecord(record_file)  # each decision, once per change (`decide`)
        self.meterless = frozenset(meterless)
        self.signing = signing
        # each (node, commitment)'s set as taken in: checked, read once (`sealed_pass.take_in`), while read
        self.sealed: dict[tuple[bytes, int], SealedSet] = {}
        # and on disk: the sets an earlier run took are read back here and taken in at the first pass
        self.kept = KeptReadings(readings_file(record_file))
        self._unread = self.kept.load()  # ConfigError: a damaged file (the node does not start)
        self.candidates: set[bytes] = set()  # trades a final block touched since the last pass
        self.pending: dict[bytes, float] = {}  # disputed, not settled yet: when to try again (monotonic s)
        # each pending trade's (node, commitment) readings: its parties' and their disputed trades' counterparties'
        self.reads: dict[bytes, set[tuple[bytes, int]]] = {}
        self.deadlines: dict[bytes, int] = {}  # an unresolved trade's deadline (chain ms)
        # trades both parties committed to and neither revealed yet: their reveal deadline (chain ms), from which
        # the DSO takes them up if still unrevealed (review14 K3b)
        self.reveals: dict[bytes, int] = {}
        self.failed: set[bytes] = set()  # settles the chain refused for good: not taken up again this run
        self.unmapped: set[bytes] = set()  # trades with a party the DSO has no node key for: logged once
        self._looked = False  # every trade on the replica looked at (`look_everywhere`): once a start
        self._wake = asyncio.Event()

    @property
    def decisions(self) -> dict[bytes, dict[str, Any]]:
        """The latest decision on each trade (`dispute_record`)."""
        return self.record.decisions

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every decision in order, the last `dispute_record.HISTORY_KEPT`."""
        return self.record.history

    @property
    def replica(self) -> Any:
        return self.adapter.node.replicas[self.adapter.chain]

    @property
    def state(self) -> Any:
        return self.replica.app.state

    @property
    def clock(self) -> MeterClock:
        """Where market intervals lie on the wall clock (`dispute_time.ReplicaTime.clock`)."""
        return self.time.clock(self.replica)

    def chain_time(self) -> ChainTime:
        """The replica's time for the resolver (`dispute_time.ReplicaTime.chain_time`)."""
        return self.time.chain_time(self.replica)

    # --- what arrives ---------------------------------------------------------------------------------------

    def on_commit(self, committed: Any) -> None:
        """A final block of the MGMC chain: the trades its `settle` transactions name become candidates."""
        block = decode_block(committed.block)
        committed_readings: set[tuple[bytes, int]] = set()
        settles: set[bytes] = set()
        for tx in block.txs:
            if tx.kind == "settle":
                settles.add(tx.body["trade"])
            elif tx.kind == "der_commitment":  # it may complete a waiting dispute's metering
                committed_readings.add((tx.sender, int(tx.body["interval"])))
        self.candidates |= settles
        self._retry_unresolved(committed_readings)
        self._retry_siblings(settles)
        for trade, until in self.deadlines.items():  # the chain's time reached a dispute's deadline
            if block.header.time >= until and self.pending.get(trade) == float("inf"):
                self.pending[trade] = 0.0
        for trade, due in list(self.reveals.items()):  # reveals due: look whether any came
            if block.header.time >= due:
                del self.reveals[trade]
                self.candidates.add(trade)
        self._wake.set()

    def look_everywhere(self) -> None:
        """Every trade on the replica becomes a candidate (at start: disputes made while the DSO was down)."""
        self._looked = True
        items = getattr(self.state, "items", None)
        if items is None:
            return
        for key, _ in items():
            if key.startswith(TRADE_PREFIX):
                self.candidates.add(key[len(TRADE_PREFIX) :])
        self._wake.set()

    # --- what it does --------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, period_s: float = 5.0) -> None:
        if not self._looked:  # (a readings post may have made the first pass already: `_read_back`)
            self.look_everywhere()
        while not stop.is_set():
            await self.settle_due()
            try:
                await asyncio.wait_for(self._wake.wait(), period_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def settle_due(self) -> None:
        """One pass: new candidates that are disputed join the pending ones; every pending one that is due is
        resolved and, when the DSO can vouch for an energy, settled."""
        self._read_back()
        self._take_candidates()
        for trade in sorted(self.pending):
            if self.pending[trade] <= self.now():
                await self.settle_one(trade)
        await self.kept.settled()  # the sets it forgot gone from the file too, without holding up the loop

    def _take_candidates(self) -> None:
        """New candidates that are disputed join the pending ones, with the readings they read."""
        found, self.candidates = self.candidates, set()
        now_ms = int(self.replica.app.tip.time)
        for trade in sorted(found):
            where = query.settlement(self.state, trade)
            if where is None or trade in self.failed or trade in self.pending:
                continue
            record = query.trade(self.state, trade)
            if record is not None and with_dso(record, now_ms) is not None:
                self.pending[trade] = 0.0
                self.reads[trade] = self._readings_of(trade)
                self._warn_unmapped(trade, record)
                continue
            due = None if record is None else reveals_due(record) or withheld_due(record)
            if due is not None:  # both committed: taken up at the reveal deadline if either kept it back
                self.reveals[trade] = due

    def _warn_unmapped(self, trade: bytes, record: dict[str, Any] | None) -> None:
        """Log once per run, as an error, a trade the DSO takes up whose party it cannot map to a node key
        (review14 K1: an MGMC trading under its node key, or an anonym missing from the DSO's config): the
        resolver takes that side as unmetered (a seller settles at 0 at the deadline), which the operator
        should hear about rather than find in the records."""
        if record is None or trade in self.unmapped:
            return
        for side in ("seller", "buyer"):
            if record[side] not in self.nodes:
                self.unmapped.add(trade)
                log.error("trade %s: its %s %s is no anonym the DSO enrolled (an MGMC trading under its node key, "
                          "or one missing from the DSO's config): the DSO cannot read its meter and settles it as "
                          "an unmetered side at the deadline", trade.hex(), side, record[side].hex())  # fmt: skip

    async def settle_one(self, trade: bytes) -> None:
        where, record = query.settlement(self.state, trade), query.trade(self.state, trade)
        now_ms = int(self.replica.app.tip.time)
        if where is None or record is None or with_dso(record, now_ms) is None:  # settled, agreed, ...
            self.done(trade)
            if where is not None and trade in self.decisions and not self.decisions[trade]["settled"]:
                self.decide(trade, {"settled": False, "outcome": f"no longer disputed: {where['state']}"})
            return
        decision = resolve(
            self.state,
            trade,
            self.clock,
            self.nodes,
            self.sealed,
            self.chain_time(),
            self.meterless,
            self.signing,
        )
        if isinstance(decision, Unresolved):
            self.pending[trade] = float("inf")  # until its readings arrive or the chain reaches its deadline
            if decision.until_ms is not None:
                self.deadlines[trade] = decision.until_ms
            self.decide(trade, {"settled": False, "outcome": "unresolved", **to_json(decision)})
            return
        assert isinstance(decision, Vouched)
        body: dict[str, Any] = {"trade": trade, "delivered": decision.delivered}
        if decision.shorts is not None:  # a priced trade: the DSO names both sides' shortfalls
            body["seller_short"], body["buyer_short"] = decision.shorts
        result = await self.adapter.submit(self.dso_key, "settle", body, precheck=True)
        after = query.settlement(self.state, trade)
        doc = {**to_json(decision), "statements": _statements(where)}
        if result.ok and after is not None and after["state"] == "settled":
            self.done(trade)
            self.decide(trade, {**doc, "settled": True, "outcome": "settled", "txid": result.txid.hex(),
                                "settlement": _jsonable(after["settlement"])})  # fmt: skip
            return
        refusal = result.detail.split(":", 1)[0] if result.reason == "refused" else ""
        if refusal in REFUSED_FOR_GOOD:  # the same settle would be refused the same way at every retry
            self.done(trade)
            self.failed.add(trade)
            log.error("dispute %s: the chain refuses the DSO's settle for good, not retried: %s",
                      trade.hex()[:16], result.detail)  # fmt: skip
            self.decide(trade, {**doc, "settled": False, "outcome": "failed", "detail": result.detail})
            return
        self.pending[trade] = self.now() + self.retry_s
        self.decide(trade, {**doc, "settled": False, "outcome": result.reason or "not settled",
                            "detail": result.detail})  # fmt: skip

    def done(self, trade: bytes) -> None:
        """The trade needs the DSO no more: so neither do its parties' readings of its interval, unless another
        pending dispute needs them (an MGMC sends them again if the DSO asks: `unresolved`)."""
        self.pending.pop(trade, None)
        self.deadlines.pop(trade, None)
        read = self.reads.pop(trade, None) or self._readings_of(trade)
        needed = {key for other in self.pending for key in self.reads.get(other, ())}
        for key in read - needed:
            self.sealed.pop(key, None)
        self.kept.forget_soon(read - needed)  # (its writer thread: after the writes asked before)

    def _readings_of(self, trade: bytes) -> set[tuple[bytes, int]]:
        """The (node, commitment interval) readings that resolving `trade` may read (`disputes.read_nodes`): the
        window's commitment intervals and as far beyond as a signing meter's clock may take the resolver
        (`MeterClock.reachable`, review16 C1: `sealed_readings._read_for_clock`), so at most
        2 x `CLOCK_REACH_COMMITS` more per node, held only while the dispute is pending."""
        record = query.trade(self.state, trade)
        if record is None:
            return set()
        # its parties' and their disputed trades' counterparties': those shares go by the counterparties' meters
        nodes = read_nodes(self.state, trade, self.nodes)
        return {(n, k) for n in nodes for k in self.clock.reachable(int(record["interval"]))}

    def decide(self, trade: bytes, doc: dict[str, Any]) -> None:
        """Record a decision when it says something new about the trade (`dispute_record.DisputeRecord`)."""
        self.record.decide(trade, (query.trade(self.state, trade) or {}).get("interval"), doc)

    def snapshot(self) -> dict[str, Any]:
        """The disputes the DSO knows and how each was decided (latest decision first by trade)."""
        return self.record.snapshot(list(self.pending))

    def decision(self, trade: bytes) -> dict[str, Any] | None:
        return self.record.decision(trade)


def _statements(where: dict[str, Any]) -> dict[str, int]:
    return {party: int(s["delivered"]) for party, s in (where.get("statements") or {}).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


__all__ = [  # signing_meters moved to meter_clock, beside SigningMeters; importers of dispute_node still find it
    "REFUSED_FOR_GOOD",
    "TRADE_PREFIX",
    "DisputeSettler",
    "ReadingsNotKept",
    "ReadingsNotNeeded",
    "ReadingsRefused",
    "signing_meters",
]
