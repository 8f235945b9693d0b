"""This MG's PCC readings after a trading interval: what its statement says it metered, and what the DSO needs.

Promises: `statement_wh(leaves, window, party, quantity, total, max_gap_ms)` is the Wh this MG states for one
trade as its `party`: its PCC meter's counter over a market interval's window `[start_ms, end_ms)`, read from
its own reading leaves (`commitments.reading_leaf`, the ones it seals into its `der_commitment`s), shared pro
rata over its `total` agreed Wh on that side, or `Unmetered` saying why it cannot tell yet. The reading and the
share are `peergrid_ledger.metering`'s, the very code the DSO vouches with (dso-server `disputes.resolve`), and
the leaves are those of the same commitment intervals (`metering.commitment_intervals`). Pro rata, while the
DSO shares by what the counterparties' meters prove (`metering.meter_shares`, review11 F2): an MGMC sees only
its own meter (the others' readings stay on their MGMCs, only roots are on the chain), and a counterparty's
statement is its word, not its meter; so the edge keeps the rule it can prove, and where a counterparty fell
short (its statement then differs) the DSO decides from all the meters. In the common case, every trade
delivered in full, the two rules give the same Wh and honest statements agree (tests/edge/test_pcc_share.py).
Pure: no I/O, no clock; `MgMetering` is the trading agent's thin shell: its statements from the edge store,
and the readings posted to the DSO (`dispute_readings.DisputeReadings`) for every trade the DSO settles with
them (`readings_needed`: by `takeup.waits_for_dso` and `metering.meters_read`, the rules the DSO node goes by,
`disputes.read_nodes`).
Never states from a guess: no reading after the window's end yet means `Unmetered`, not a number. A window
read past its end whose start (or end) no readings bracket — the MGMC's first reading came after the
interval started: it started or restarted in it — is not stated by either side (`Unprovable`, logged once):
the ledger's `metering.metered` is the one rule the DSO settles by too (dso-server `sealed_readings`), so
the edge never states a delivery the DSO calls unmetered. Why (E7): before, a seller stated the counter from
its first reading in the window; the DSO, taking the trade up (a dispute with the buyer's statement, or a
lone word from `LONE_FROM`), settled it "seller not metered", 0 Wh (U6's mg5, back 5 s into interval 53:
44.5 kWh stated, 0 paid). `MgMetering.start_unseen` tells the trading agent, before it offers, that an
interval's start has passed unmetered, so a restarted MGMC does not trade an interval it cannot meter.
A counter that never counted is not a missing reading: SunSpec says an accumulator's 0 as "not accumulated"
(the leaf leaves the quantity out); `counting_leaves` reads it as 0 where that is never in this side's favour,
or proven: a seller always, a buyer only where some reading shows its import counter; a buyer whose meter,
read past the end, never counted an import states nothing (`Unprovable`).
A counter that went back further than a roll-over explains, or jumped forward further than the MG's posted
connection carries between two readings (`metering.CounterBroken`, L3: a raised scale factor reads ten times
the Wh), is no energy: this side states nothing for the interval's trades, and says so once per interval and
side at WARNING (`MgMetering.statement`), as the DSO settles them: that side unmetered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from peergrid_edge.dispute_readings import DisputeReadings
from peergrid_edge.settle_book import PendingSettle
from peergrid_ledger.metering import (
    COUNTER,
    CounterBroken,
    Unmetered,
    commitment_intervals,
    counter_at,
    counting_leaves,
    metered,
    metered_as_dispute,
    meters_read,
    samples,
    trade_share,
)
from peergrid_ledger.takeup import Kind, waits_for_dso, with_dso

log = logging.getLogger("peergrid.edge.trader")

# whether the DSO priced both parties of a trade (`market_state.cover_prices` on the MG's replica)
Priced = Callable[[dict[str, Any]], bool]


class Unprovable(Unmetered):
    """The window is read past its end but a boundary is not bracketed (the meter's first reading came after
    the interval started: the MGMC started or restarted in it; or an outage at a boundary): the DSO would
    settle this side unmetered, so it states nothing, for good, never "not metered yet"."""


def statement_wh(
    leaves: Iterable[bytes], window: tuple[int, int], party: str, quantity: int, total: int, max_gap_ms: int,
    *, most_w: int | None = None,
) -> int:  # fmt: skip
    """What this MG states for one trade as its `party` ("buyer": what arrived, "seller": what left): its PCC
    meter's counter over the window (`provable_wh`), its share pro rata over its `total` agreed Wh on that
    side (`metering.trade_share`: the shared rule where the counterparties' meters are not known)."""
    return trade_share(provable_wh(leaves, window, party, max_gap_ms, most_w=most_w), quantity, total)


def provable_wh(
    leaves: Iterable[bytes],
    window: tuple[int, int],
    party: str,
    max_gap_ms: int,
    *,
    most_w: int | None = None,
) -> Fraction:
    """The Wh this MG's meter proves crossed its PCC over `window` on its `party`'s counter: the ledger's
    `metered`, the DSO's very rule (readings at most `max_gap_ms` apart bracketing both boundaries). Not read
    to its end yet: `Unmetered` (wait), as `metered` says it. Read past its end (a reading at or after it)
    with a boundary not bracketed: `Unprovable`, for good, whichever side: the DSO would settle this side
    unmetered, so no figure of it is stated (a seller's count from its first reading in the window was one,
    E7; a buyer's would be a lower bound of what arrived, paying less than it got). A roll-over of the counter
    counts at most what a meter of `most_w` W counts between two readings (the MG's posted connection,
    `counter_roll.posted_w`, as the DSO reads it; None: 10 MW, none posted)."""
    leaves = counting_leaves(list(leaves), party)
    try:
        return metered(leaves, window, COUNTER[party], max_gap_ms, most_w=most_w)
    except Unmetered as exc:
        why = exc
    # a reading that does not decode, two meters, a reset: raised here
    found = samples(leaves, COUNTER[party], most_w=most_w)
    end = window[1]
    if not any(at >= end for at, _ in found):
        try:  # every PCC meter reading, only to tell whether it was read past the end
            read = samples(counting_leaves(leaves, "seller"), COUNTER["seller"], most_w=most_w)
        except CounterBroken:
            raise why from None  # a buyer's export counter broken: its own import counter still waits
        if party != "seller" and any(at >= end for at, _ in read):
            raise Unprovable(
                f"as the buyer it states nothing: its PCC meter, read past the window's end, shows no "
                f"{COUNTER[party]} counter (never counted an import, or has none)"
            )
        raise why  # not read to its end yet: the statement waits
    raise Unprovable(f"as the {party} it states nothing the DSO would not meter ({why})")


def start_unseen(
    leaves: Iterable[bytes], start_ms: int, now_ms: int, max_gap_ms: int, *, most_w: int | None = None
) -> str | None:
    """Why this MG's PCC meter can no longer measure a window starting at `start_ms` by the ledger's rule
    (`metering.counter_at`: two readings at most `max_gap_ms` apart around it), known at `now_ms`: its start
    has passed and no reading at or before it is near enough for one still to come to bracket it (the MGMC
    started or restarted after it). None: bracketed, not passed yet, or a reading after it may still come.
    Read on the export counter as a seller counts it (`counting_leaves`): every PCC meter reading's time."""
    if now_ms < start_ms:
        return None
    try:
        found = samples(counting_leaves(list(leaves), "seller"), COUNTER["seller"], most_w=most_w)
    except Unmetered as exc:  # two meters, a reset or jump: nothing is measured around it
        return str(exc)
    try:
        counter_at(found, start_ms, max_gap_ms)
        return None
    except Unmetered as exc:
        before = [at for at, _ in found if at <= start_ms]
        if before and start_ms - before[-1] <= max_gap_ms and now_ms < before[-1] + max_gap_ms:
            return None  # the reading after the start may still come within the gap
        first = f"; its first reading after it at {found[0][0]} ms" if found and not before else ""
        return f"{exc}{first}"


def readings_needed(
    trades: Iterable[tuple[bytes, dict[str, Any]]], me: bytes, now_ms: int | None = None,
    priced: Priced | None = None,
) -> list[bytes]:  # fmt: skip
    """The trades of an interval (`trades`: its latest closing) that the DSO settles with `me`'s PCC readings
    and that `me` posts them for here: those that wait for the DSO's word at the chain's time `now_ms`
    (`peergrid_ledger.takeup.waits_for_dso`, the rule the DSO node takes them up by; None: no chain time, so
    no unrevealed one) - a disputed one though `me` is no party (a party posts for its own, `MgMetering.
    disputed`), one on one party's word (F4), on two commitments neither revealed by the reveal deadline
    (K3b) or one revealed beside one kept back (D4), `me` a party or not, and `me`'s own trade on the DSO's
    vouch (review13 F2): the seller's meter for what it delivered, the buyer's where the DSO reads it
    (`_buyer_read`, D2/D3; `priced` None: not known, it posts), both for a withheld seller's hold (review15
    M4). Whose readings the DSO reads is `metering.meters_read`'s (dso-server `disputes.read_nodes` alike):
    the parties', and `me`'s where `me`'s own purchase from the trade's seller, or sale to its buyer, is
    disputed too (`metering.metered_as_dispute`: any vouch is - an agreement's, V4 9074113, or a withheld
    party's hold, review16 M1, D3); without seller_vouched an agreed one settles on the parties' word and its
    counterparty's meter is not read.
    A trade on one party's word counts only once the DSO meters it (`takeup.takes_up`: from `LONE_FROM` of
    the contract's wait) where the chain's time is known. Why (E4, U4's F7): on a sealed chain every trade
    stands on one commitment between its parties' two commitments, for a block or two; an edge that started
    posting then met a DSO that had dropped the trade again (both committed: the parties' until the reveal
    deadline) and logged "refused (409): no pending dispute" for each such trade; 44 of 44 of the lab's lone
    words were that transient, every one settled without the DSO."""
    trades = list(trades)
    return [
        tid
        for tid, d in trades
        if _posts_for(waits_for_dso(d, now_ms), d, me)
        and not _lone_before_metered(d, now_ms)
        and me in meters_read(trades, tid)
        and (priced is None or _buyer_read(tid, d, me, trades, priced, now_ms))
    ]


def _lone_before_metered(trade: dict[str, Any], now_ms: int | None) -> bool:
    """A trade on one party's word that the DSO does not meter yet at the chain's time `now_ms` (the other
    party may still join it); False at an unknown time (it posts at once, as before)."""
    if now_ms is None:
        return False
    found = with_dso(trade, now_ms)
    return found is not None and found.kind == "lone" and now_ms < found.meters_from_ms


def _buyer_read(tid: bytes, trade: dict[str, Any], me: bytes, trades: list[Any], priced: Priced,
                now_ms: int | None) -> bool:  # fmt: skip
    """Whether the DSO reads `me`'s meter for its own vouched purchase (no `release`): for its own shortfall
    where it priced the trade (D2), for the seller's share where the seller has another trade shared by the
    meters (`metering.metered_as_dispute`; alone, the seller's share is its meter's whatever the buyer's);
    else never (D3: before, every buyer posted for each vouched purchase, on an unpriced chain too)."""
    if "vouch" not in trade or "release" in trade["vouch"] or me != trade["buyer"] or priced(trade):
        return True
    seller = trade["seller"]
    return any(t["seller"] == seller and metered_as_dispute(t, now_ms) for other, t in trades if other != tid)


def _posts_for(kind: Kind | None, trade: dict[str, Any], me: bytes) -> bool:
    """`me` posts its readings for a trade waiting for the DSO for `kind` (`readings_needed`): a dispute where
    it is no party (a party posts for its own), every other kind (vouching, lone, unrevealed, withheld) a
    party or a sibling's counterparty alike, where `meters_read` names it (and `_buyer_read`, a vouch's)."""
    return kind is not None and (kind != "disputed" or me not in (trade["seller"], trade["buyer"]))


def counterparties_done(trades: Iterable[tuple[bytes, dict[str, Any]]], me: bytes) -> bool:
    """True when no trade of the interval but `me`'s own can still need `me`'s readings: every trade that
    could read them (`metering.meters_read` counting the trades that may still be disputed: one beside a
    trade of `me`'s that is disputed or not settled yet) is settled or superseded."""
    trades = list(trades)
    return all(
        d.get("settlement") is not None or "superseded" in d
        for tid, d in trades
        if me not in (d["seller"], d["buyer"]) and me in meters_read(trades, tid, may_dispute=True)
    )


class ReadingStore(Protocol):
    """The edge store's reading side (`store.EdgeStore`)."""

    def leaves(self, interval: int) -> list[bytes]: ...

    def is_sealed(self, interval: int) -> bool: ...


class MgMetering:
    """The trading agent's metering: what this MG states for a trade (`statement`, the `Settler`'s metering),
    from when (`not_before`), and a disputed trade's readings posted to the DSO (`disputed`).

    `meter_poll_s` is the PCC meter's poll period (0: the MG has no PCC meter); a boundary is measured by two
    readings at most three polls apart (one missed poll on either side; the lab gives the DSO the same,
    `closedloop.disputes_section`). `trades(t)` is interval t's latest closing, `window_of(t)` its wall-clock
    window (ms), `dso_url` the DSO server's base URL (None: disputes are logged, no readings posted),
    `priced` whether the DSO priced a trade's parties on the replica (`readings_needed`; None: not known),
    `roll_w(t)` the power bounding a roll-over of its meter's counters in interval t: its anonym's connection
    capacity posted on the replica, as the DSO reads it (`counter_roll.posted_w`, R38-2; None: none posted,
    10 MW), `dso_ca_file` the CA that verifies an https `dso_url` (`DisputeReadings`; None: the system's)."""

    def __init__(
        self, store: ReadingStore, meter_poll_s: float, commit_interval_s: float,
        window_of: Callable[[int], tuple[int, int]], trades: Callable[[int], list[tuple[bytes, dict[str, Any]]]],
        me: bytes, node: bytes, dso_url: str | None, priced: Priced | None = None,
        roll_w: Callable[[int], int | None] | None = None, dso_ca_file: Path | None = None,
    ) -> None:  # fmt: skip
        self.store, self.poll_s, self.commit_s = store, meter_poll_s, commit_interval_s
        self.window_of, self.trades, self.me, self.node, self.dso_url = window_of, trades, me, node, dso_url
        self.priced, self.roll_w, self.dso_ca_file = priced, roll_w, dso_ca_file
        self.max_gap_ms = max(1, round(3 * meter_poll_s * 1000))
        # interval -> dispatch read-back confirmed its plan in full (the trader fills it at dispatch and, after
        # a restart, from the verdicts its interval records kept: resume.recorded_verdicts)
        self.confirmed: dict[int, bool] = {}
        self.following: set[asyncio.Task[bool]] = set()
        # trades it cannot state from its meter (`Unprovable`): warned once, the words kept for `not_stated`
        self.unprovable: dict[bytes, str] = {}
        # (interval, party) whose counter is no energy (`CounterBroken`, L3): warned once for all its trades
        self.broken: dict[tuple[int, str], str] = {}
        # trades whose readings it posts for the DSO (`counterparty_disputes`) -> their interval and follower;
        # the first interval of the day `forget` last started: its next call keeps the trades from there on
        self.counterparty: dict[bytes, tuple[int, asyncio.Task[bool]]] = {}
        self.day_before: int | None = None

    @property
    def counterparty_followed(self) -> set[bytes]:
        """The trades `counterparty_disputes` follows or followed, as `forget` keeps them."""
        return set(self.counterparty)

    def not_before(self, interval: int) -> float:
        """When a statement for `interval` may go (wall s): its end, and one meter poll after it."""
        return self.window_of(interval)[1] / 1000 + self.poll_s

    def start_unseen(self, interval: int, now_ms: int) -> str | None:
        """Why this MG's PCC meter cannot measure `interval` as the DSO will (`start_unseen` over its stored
        readings around the window's start, at the wall clock's `now_ms`), or None: the trading agent offers
        nothing in such an interval (E7: a restarted MGMC that sold into one was settled 0 Wh, "seller not
        metered", for energy it delivered, and an unmetered buyer holds up its seller's other trades until
        their deadline). An MG without a PCC meter: None (it states from its dispatch read-back)."""
        if not self.poll_s:
            return None
        start = self.window_of(interval)[0]
        leaves, most_w = self._readings(interval, (start, start))
        return start_unseen(leaves, start, now_ms, self.max_gap_ms, most_w=most_w)

    def _readings(self, interval: int, window: tuple[int, int]) -> tuple[list[bytes], int | None]:
        """The stored reading leaves of the commitment intervals around `window` (ms) and the power bounding a
        roll-over of the meter's counters in `interval` (`roll_w`; None: none posted)."""
        spans = commitment_intervals(window, round(self.commit_s * 1000), self.max_gap_ms)
        leaves = [leaf for c in spans for leaf in self.store.leaves(c)]
        return leaves, None if self.roll_w is None else self.roll_w(interval)

    def statement(self, pending: PendingSettle) -> int | None:
        """The Wh this MG states for a trade: its PCC meter's share (`statement_wh`) from its stored readings;
        None while no reading after the interval's end is stored. An MG without a PCC meter states the agreed
        quantity only when dispatch read-back confirmed that interval's plan in full, else nothing."""
        mine = [tr for tid, tr in self.trades(pending.interval) if tr[pending.party] == self.me]
        trade = next((tr for tid, tr in self.trades(pending.interval) if tid == pending.trade), None)
        if trade is None:
            return None
        quantity = int(trade["quantity"])
        if not self.poll_s:
            verdict = self.confirmed.get(pending.interval)
            if verdict is None:
                log.info("interval %d: trade %s not stated: no PCC meter and no dispatch verdict of the interval "
                         "(none recorded, or its record unreadable)", pending.interval, pending.trade.hex()[:16])  # fmt: skip
            return quantity if verdict else None
        total = max(quantity, sum(int(tr["quantity"]) for tr in mine))
        window = self.window_of(pending.interval)
        leaves, most_w = self._readings(pending.interval, window)
        try:
            return statement_wh(
                leaves, window, pending.party, quantity, total, self.max_gap_ms, most_w=most_w
            )
        except Unprovable as exc:
            if pending.trade not in self.unprovable:
                self.unprovable[pending.trade] = f"not stated: its PCC meter cannot prove its side ({exc})"
                log.warning(
                    "interval %d: trade %s not stated: its PCC meter cannot prove its side (%s); its "
                    "counterparty's statement or the DSO settles it",
                    pending.interval, pending.trade.hex()[:16], exc,
                )  # fmt: skip
            return None
        except CounterBroken as exc:
            # for good (no later reading mends it): said once, not as 'not metered yet' at every try
            if (pending.interval, pending.party) not in self.broken:
                self.broken[pending.interval, pending.party] = (
                    f"not stated: {exc}; the interval is unmetered for its PCC meter"
                )
                log.warning(
                    "interval %d: its trades as the %s are not stated: %s; the interval is unmetered for its "
                    "PCC meter (the counterparty's statement or the DSO settles them, never on this meter)",
                    pending.interval, pending.party, exc,
                )  # fmt: skip
            return None
        except Unmetered as exc:
            log.info(
                "interval %d: trade %s not metered yet: %s", pending.interval, pending.trade.hex()[:16], exc
            )
            return None

    def not_stated(self, pending: PendingSettle) -> str | None:
        """Why `statement` gave None for good for this trade (its counter broke in the interval, or its side
        is unprovable), in the words it warned with; None: it may still state (the Settler's `not_stated`)."""
        return self.broken.get((pending.interval, pending.party)) or self.unprovable.get(pending.trade)

    def forget(self, before: int | None, held: Iterable[PendingSettle]) -> None:
        """Drop what no statement will read again: the dispatch verdicts (`confirmed`) and broken counters of
        intervals before `before` (a new day's first interval; None: every interval, the run's end), and the
        unprovable trades' words, but for the trades the Settler still `held` (their statements may still be
        made, `statement` and `not_stated`). Why (P6): one `confirmed` entry per interval, kept for as long as
        the process ran; a broken counter or a restarted MGMC added one per interval or trade too.
        The trades `counterparty_disputes` followed are kept for the new day and the day before (from the call
        before's `before`; a run's first call keeps all), and while their follower runs: a watcher outlives its
        day and must not follow one twice; a restart's pick-up follows the day's and the day before's afresh
        (E14: before, one entry per such trade for as long as the process ran)."""
        held = list(held)
        intervals, trades = {p.interval for p in held}, {p.trade for p in held}

        def needed(interval: int) -> bool:
            return (before is not None and interval >= before) or interval in intervals

        self.confirmed = {t: v for t, v in self.confirmed.items() if needed(t)}
        self.broken = {k: v for k, v in self.broken.items() if needed(k[0])}
        self.unprovable = {k: v for k, v in self.unprovable.items() if k in trades}
        since, self.day_before = self.day_before, before
        self.counterparty = {
            tid: (t, task)
            for tid, (t, task) in self.counterparty.items()
            if not task.done() or (before is not None and (since is None or t >= since))
        }

    def disputed(
        self, pending: PendingSettle, every_s: float, until: float, now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> asyncio.Task[bool] | None:  # fmt: skip
        """Post the sealed PCC readings around a disputed trade's interval to the DSO once they are sealed,
        and again whenever the DSO says they are missing, until it decided or `until` (a task; None without
        a DSO to post to)."""
        if not self.dso_url:
            log.warning("interval %d: trade %s is disputed; no DSO API configured to post the readings to",
                        pending.interval, pending.trade.hex()[:16])  # fmt: skip
            return None
        return self.follow(pending.interval, pending.trade, every_s, until, now, sleep)

    def counterparty_disputes(
        self, interval: int, every_s: float, until: float, now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]], now_ms: int | None = None,
    ) -> list[asyncio.Task[bool]]:  # fmt: skip
        """Follow (`follow`) each trade of `interval` that the DSO settles with this MG's readings and that no
        dispute of its own brings there (`readings_needed` at the chain's time `now_ms`: a counterparty's
        dispute, a lone statement, an unrevealed sealed trade, its own vouched trade), once per trade: the new
        tasks.
        Why: the DSO shares a party's energy by what its counterparties' meters prove and waits for an
        unmetered one until the dispute's deadline (an hour by default), then takes it least in its favour;
        an MG whose own trades all agreed would otherwise never post, and the dispute would wait it out."""
        if not self.dso_url:
            return []
        started = []
        for trade in readings_needed(self.trades(interval), self.me, now_ms, self.priced):
            if trade in self.counterparty:
                continue
            log.info("interval %d: trade %s waits for the DSO: posting this MG's readings",
                     interval, trade.hex()[:16])  # fmt: skip
            started.append(self.follow(interval, trade, every_s, until, now, sleep))
            self.counterparty[trade] = interval, started[-1]
        return started

    def follow(
        self, interval: int, trade: bytes, every_s: float, until: float, now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> asyncio.Task[bool]:  # fmt: skip
        """The task posting this MG's sealed readings around `interval` for the disputed `trade`, again while
        the DSO says they are missing, until it decided the trade or `until` (needs `dso_url`)."""
        assert self.dso_url is not None
        store = self.store
        poster = DisputeReadings(
            self.dso_url, self.node, lambda r: [(c, store.leaves(c)) for c in r if store.is_sealed(c)],
            round(self.commit_s * 1000), self.max_gap_ms, ca_file=self.dso_ca_file,
        )  # fmt: skip
        window = self.window_of(interval)
        # the last readings that bracket the window's end are sealed one commitment interval after them
        not_before = window[1] / 1000 + self.max_gap_ms / 1000 + self.commit_s
        task = asyncio.ensure_future(poster.follow(trade, window, not_before, every_s, until, now, sleep))
        self.following.add(task)
        task.add_done_callback(self.following.discard)
        return task
