"""The market view of the live closed loop: each interval's bargaining as the MGMC chain recorded it.

Promises: `LiveMarket.report()` returns the market view's JSON (the same shape as the lab simulation's,
`console.market`): per trading interval the sellers' price in every bargaining round (from the final `offer`
and `move` transactions in the DSO's MGMC-chain replica, which follows the chain without voting), the agreed
trades and their settlement (from the chain state the market contract wrote), the rounds cap of one bargaining
(`round_cap`: the MGMC genesis' `max_rounds`, None when it sets none) and the round the last re-bargaining of a
reopened interval numbers on from (`reopened_at`, None when never reopened; `reopens`, how many times it was),
so the view can tell a bargaining stopped at the cap from one still moving; an interval a day-ahead exchange
session's clear closed (`--dayahead`: no offer, no move, its trades the clear's) is listed too, with that
session's name in `forward` (None for an interval bargained intraday), where before the view waited for a
bargaining that never came all day (U3); and - when the lab gives the MGMCs' interval records
(`mgmc_records`) - each MG's cost under P2P and under the conventional market; in
the pilot those stay private to the MGMCs and the view says so. A record belongs to the trading key it names
(`anonym`; a record without one, to the MG its file is named after: mgmc-<mg>.jsonl). Of an MG's records of an
interval its last interval record counts (an MGMC may write one again), readable or not; an error record (no cost
field) says the interval failed only where the MG has no interval record of it, before or after, as the edge's own
day summary reads them (`day_summary.collect`; R42-6: the edge writes one only where the interval raised before
its record). The interval's welfare sums every MG's: its trading keys', the enrolled MGs' and those of any MG whose
records file holds a record (R42-5: one that did not trade dropped out unnamed, and the card read as whole). It is
given once every key in its trades has its record: while a trader's may still come it is `welfare.waiting` (named)
and no figure is given - a seller writes its record before its buyers do, and a welfare of the sellers alone read
as P2P costing more than the conventional market (U2's lab: p2p 0.000 against 4.785); an MG that did not trade is
named there too, but the figure is given without it (on a chain without an interval clock an MGMC stopped for the
day would hold back every later welfare). An MG's record will not come (`welfare.missing`: name -> why) when its
MGMC's record of the interval says it failed, when its records went on past the interval without one, or when no
record names a trading key (not an enrolled anonym) and every MGMC's records went on past the interval, or when
its record of the interval is unreadable (a cost that is not a finite number, or one of the three missing:
`unreadable`, MG -> which field and why; Python's json takes NaN and Infinity, which the route answered as null: a
cost shown as '—', a saving and welfare computed without it); an enrolled MG no record names yet is waited for,
until the interval is over by more than the chain's settlement window (with `overdue`, `records_overdue`: the MGMC
chain's head, block time, past the interval's end on the chain's interval clock plus genesis `settle_wait_ms`, the
time a party has to state its delivery), when it is missing too: it 'wrote no record for interval N' (closing23:
an MGMC that never wrote one was waited for for good, and no welfare was ever given; a record that comes later
still counts). A chain without an interval clock gives no such time: there it is waited for, named. A figure that
leaves out any MG, waited for or missing, is `welfare.partial` (false where no figure is given): the welfare of
the MGs with records (their costs with their P2P payments, `cost_p2p`), not the physical sum, which is fair only
over every party (R38 on f7e23ea: an unenrolled trader's interval showed 'waiting for 3fa2b1c0' for good).
Trading keys are shown by the MG names the DSO enrolled them under, else by the MG whose records name them, else
by their first 8 hex digits. An interval the DSO node missed (D8's record: it ended while the node was down, so
nothing of it was checked against the network, no contract, no switching) carries why in `missed` (None for any
other), told by the console as the node records it (`note_missed`), and is listed whether or not anything of it
is on the chain (before, the view said nothing of a miss: an interval traded without the network check read as
any other, and one nobody bargained in was not listed at all).
A report is one market day's (`market_days`: day = t // intervals per day, from the loop's interval length):
`report(day)` that day's intervals, each with its `day` and `hours_of_day` beside `hours` (from interval 0, as
before), or without a day those of the day the view follows (the newest interval's, but not one a day-ahead clear
closed ahead of time that nobody has delivered yet, as the page's `newest`), with `days` (each listed day: first,
last, how many, how many missed) to pick another from; a day none of whose intervals is listed raises
LookupError. The chain's state is asked of that day's intervals only (U7-10: a pilot of three days ran `hours`
past 24 with no day, and a month in, ~3,000 intervals, the page listed and the report built every one at each
head). The days are listed from the chain's state, and the blocks read are those the shown day needs
(`console.market_chain`): from the head down to its sellers' opening offers, and at each new head the blocks it
added; a day picked further back reads on down to it, each block once (C7: the first report read every block from
genesis, minutes a year into a pilot's 2-s blocks). A replica that keeps no state to ask (the scripted tests'
stand-ins), or where no enrolled anonym holds a position (the traders are keys the loop's MGs do not name), has
every block read, as before.
Reads only: blocks from the store (any thread), state through `call` (the node's loop); the records are read at
each new head. `note_missed`, on the node's loop, never waits for a report (one waits on that loop, D10).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peergrid_dso.console.market_chain import ChainReading, listed, openings
from peergrid_dso.console.market_days import check_listed, day_fields, day_of, days, of_day
from peergrid_dso.console.mgmc_records import Records, read_records, unreadable_cost

__all__ = ["LiveMarket", "records_overdue", "unreadable_cost"]  # unreadable_cost: where it was read before

MICRO = 1e6


class LiveMarket:
    def __init__(
        self,
        replica: Any,  # the node's MGMC-chain ChainReplica
        call: Callable[[Callable[[], Any]], Any],  # runs a function on the node's event loop
        anonyms: dict[str, str],  # anonym hex -> MG name
        interval_hours: float,
        mgmc_records: Path | None = None,
        overdue: Callable[[int], bool] | None = None,  # on the node's loop: interval t's records are overdue
    ) -> None:
        self.replica, self.call, self.anonyms = replica, call, anonyms
        self.interval_hours, self.mgmc_records, self.overdue = interval_hours, mgmc_records, overdue
        self._overdue: set[int] = set()  # intervals found overdue (they stay so: the clock is fixed by then)
        self._lock = threading.Lock()
        self._chain = ChainReading()  # what the MGMC blocks read so far say (`console.market_chain`)
        self._records = Records()
        self._closed: set[int] = set()  # closed by a trade (`_chain.closed`) or a clear (`_forward`)
        self._offered: set[int] = set()  # intervals the chain's state says a seller offered in
        self._listed_to: int | None = None  # the newest interval the state was asked of (`listed`)
        self._unread: set[int] = set()  # intervals of a cleared session not yet found closed by it
        self._forward: dict[int, str] = {}  # interval -> the exchange session whose clear closed it
        self._missed: dict[int, str] = {}  # interval -> why the DSO node missed it (`interval_missed`)
        # guards `_missed` and how often it changed, never held across `call`: `note_missed` runs on the node's
        # loop, which a report holding `_lock` waits on in `call` (under `_lock` it stalled the node until the
        # report's call timed out, 10 s, and the view failed)
        self._noted = threading.Lock()
        self._missed_version = 0
        self._seen: tuple[int, int] | None = None  # the (head, missed version) the reports in `_cache` are of
        self._cache: dict[int | None, dict[str, Any]] = {}  # day asked (None: the one followed) -> its report

    def note_missed(self, t: int, why: str) -> None:
        """Interval t the DSO node missed, and why (its record's `missed`): the next report lists it, saying so."""
        with self._noted:  # no new block may come with it: the view must not wait for one
            self._missed[t] = why
            self._missed_version += 1

    def _name(self, key: str) -> str:
        """A trading key's (hex) name: its enrolled MG's, else the MG whose records name it, else its head."""
        return self.anonyms.get(key) or self._records.keys.get(key) or key[:8]

    def report(self, day: int | None = None) -> dict[str, Any]:
        """The view of market day `day` (None: the day the view follows); LookupError where no interval of `day`
        is listed (see the module's contract)."""
        store = self.replica.store
        with self._lock:
            head = int(store.head_height())
            with self._noted:
                missed, version = set(self._missed), self._missed_version
            if self._seen != (head, version):
                self._seen, self._cache = (head, version), {}
                self._chain.up(store, head)  # the blocks since the last report (at the first: none)
                found = self.call(self._listing)
                if found is None:  # a replica that keeps no state to ask (a scripted stand-in): every block
                    self._chain.down(store, None)
                else:
                    offered, forward, self._listed_to = found
                    self._offered |= offered
                    self._forward.update(forward)
                self._records = read_records(self.mgmc_records)
            if day in self._cache:
                return self._cache[day]
            every = sorted(set(self._chain.rounds) | self._offered | set(self._forward) | missed)
            listed = days(every, self.interval_hours, missed)
            shown = self._following(every) if day is None else day
            check_listed(day, listed)
            intervals = of_day(every, shown, self.interval_hours)
            self._read_day(store, intervals)
            trades, reopened, overdue = self.call(
                lambda: (self._trades(intervals), self._reopened_at(intervals), self._now_overdue(intervals))
            )
            self._overdue.update(overdue)
            out = [self._interval(t, trades.get(t, []), reopened.get(t)) for t in intervals]
        source = f"live: the DSO's replica of the MGMC chain (height {head})"
        if self.mgmc_records is None:
            source += "; MG costs stay private to the MGMCs"
        else:
            source += "; MG costs from the MGMCs' interval records"
        doc = {"status": "ready" if out else "computing", "source": source, "intervals": out, "height": head,
               "day": shown, "days": listed}  # fmt: skip
        if not out:
            doc["waiting"] = "waiting for the first interval's bargaining on the MGMC chain…"
        with self._lock:
            if self._seen == (head, version):  # not a report of an older head than the one cached meanwhile
                self._cache[day] = doc
        return doc

    def _listing(self) -> tuple[set[int], dict[int, str], int] | None:
        """On the node's loop: the intervals the chain's state says were offered in or closed by a day-ahead clear
        (`market_chain.listed`), from a day before the newest asked last time (at the first report: from interval
        0), and the newest asked now; None where the replica keeps no state or no enrolled anonym holds a position
        (every block is read then, as before C7)."""
        state = self.replica.app.state
        if state is None:
            return None
        per_day = max(1, round(24 / self.interval_hours))
        start = 0 if self._listed_to is None else max(0, self._listed_to - per_day)
        newest = max(self._chain.rounds, default=0)
        return listed(state, self.anonyms, newest, start, self._offered | set(self._forward))

    def _openings(self, intervals: list[int]) -> set[tuple[int, str]] | None:
        """On the node's loop: the opening offers the blocks must show for `intervals` (`market_chain.openings`);
        None where the replica keeps no state (every block is read then)."""
        state = self.replica.app.state
        return None if state is None else openings(state, intervals)

    def _read_day(self, store: Any, intervals: list[int]) -> None:
        """Read the blocks `intervals` need: down to their sellers' opening offers, which every later position,
        trade and reopening of them follows (`market_chain`); and which of them a day-ahead clear closed."""
        needed = self.call(functools.partial(self._openings, intervals))
        self._chain.up(store, int(store.head_height()))  # the state asked may be a block past `head`
        self._chain.down(store, needed)
        self._unread |= self._chain.cleared() - set(self._forward)
        if self._unread:
            self._forward.update(self.call(self._cleared))
            self._unread -= set(self._forward)
        self._closed = self._chain.closed | set(self._forward)

    def _following(self, every: list[int]) -> int | None:
        """The day the view follows: the newest listed interval's, passing over those a day-ahead clear closed
        ahead of time that nobody has delivered yet (no MG's cost record, no settlement on the chain): a
        --dayahead chain closes a day at once, and the view opened on its end (U3). With none delivered, the
        newest bargained or missed interval's day, else the first listed one's; None with none listed. The chain
        is asked a day's worth at a time."""
        ahead = []  # the newest intervals a clear closed, newest first, down to the newest bargained or missed
        newest = every[0] if every else None  # (none bargained or missed: the first, where none is delivered)
        for t in reversed(every):
            if t not in self._forward:
                newest = t
                break
            ahead.append(t)
        per_day = max(1, round(24 / self.interval_hours))
        for start in range(0, len(ahead), per_day):
            chunk = ahead[start : start + per_day]
            settled: set[int] = self.call(functools.partial(self._settled, chunk))
            for due in chunk:
                if due in self._records.costs or due in settled:
                    return day_of(due, self.interval_hours)
        return None if newest is None else day_of(newest, self.interval_hours)

    def _settled(self, intervals: list[int]) -> set[int]:
        """On the node's loop: those of `intervals` with a settled trade on the chain."""
        from peergrid_ledger import query

        state = self.replica.app.state
        return {t for t in intervals if any(rec.get("settlement") for _, rec in query.trades(state, t))}

    def _cleared(self) -> dict[int, str]:
        """On the node's loop: which intervals of a cleared session the clear closed, by the session its market
        record names (a clear in parts closes some now and the rest at its next part)."""
        from peergrid_ledger.contracts import market

        state = self.replica.app.state
        found = {t: market.interval_record(state, t).get("session") for t in sorted(self._unread)}
        return {t: str(session) for t, session in found.items() if session is not None}

    def _trades(self, intervals: list[int]) -> dict[int, list[dict[str, Any]]]:
        """On the node's loop: the agreed trades of each interval with their settlement (chain state)."""
        from peergrid_ledger import query

        state = self.replica.app.state
        return {t: [rec for _, rec in query.trades(state, t)] for t in intervals if t in self._closed}

    def _reopened_at(self, intervals: list[int]) -> dict[int, tuple[int, int]]:
        """On the node's loop: for each reopened interval, the round its last re-bargaining numbers on from and
        how many times it was reopened."""
        from peergrid_ledger.contracts.market_state import reopening

        state = self.replica.app.state
        return {
            t: (int(done["round"]), int(done["reopens"]))
            for t in intervals
            if (done := reopening(state, t)) is not None
        }

    def _unreported(self, t: int, parties: set[str]) -> tuple[list[str], dict[str, str], bool]:
        """Of every MG the interval's welfare sums (the trading keys `parties`, hex; the enrolled MGs; the MGs
        with records), those whose record of t may still come (their names) and those whose record will not,
        with why (see the module's contract); and whether a trader is among those waited for."""
        rec = self._records
        costs, written = rec.costs.get(t, {}), rec.written.get(t, set())
        waiting: list[str] = []
        missing: dict[str, str] = {}
        trader_waits = False
        everyone_past = bool(rec.last) and all(last > t for last in rec.last.values())
        for key, name, mg, trader in self._everyone(parties):
            if mg is not None and mg in costs:
                continue
            if mg is not None and (why := rec.unreadable.get(t, {}).get(mg)) is not None:
                missing[name] = f"its MGMC's record of this interval is unreadable: {why}"
            elif mg is not None and mg in written:
                missing[name] = "its MGMC's record of this interval says it failed"
            elif mg is not None and rec.last[mg] > t:
                missing[name] = "its MGMC's records went on past this interval without one"
            elif trader and mg is None and key not in self.anonyms and everyone_past:
                missing[name] = "no MGMC's record names this trading key, which is not an enrolled anonym"
            else:
                waiting.append(name)
                trader_waits = trader_waits or trader
        if waiting and t in self._overdue:
            why = f"it wrote no record for interval {t} within the chain's settlement window after its end"
            missing |= {name: why for name in waiting}
            waiting, trader_waits = [], False
        return sorted(waiting), dict(sorted(missing.items())), trader_waits

    def _everyone(self, parties: set[str]) -> list[tuple[str | None, str, str | None, bool]]:
        """Every MG an interval's welfare sums, once each, as (its trading key or None, its name, the MG whose
        records are its or None, whether it traded): the trading keys `parties` (hex), then the enrolled MGs,
        then the MGs whose records files hold any record (R42-5: a non-trader left out read as whole)."""
        rec = self._records
        found: list[tuple[str | None, str, str | None, bool]] = []
        seen: set[str] = set()  # names and MGs taken
        keys = [(key, True) for key in sorted(parties)]
        keys += [(key, False) for key in sorted(self.anonyms) if key not in parties]
        for key, trader in keys:
            name = self._name(key)
            mg = rec.keys.get(key) or (name if name in rec.last else None)  # the MG whose records are its
            if not trader and (name in seen or mg in seen):
                continue  # an MG enrolled under two keys, or a trader's
            found.append((key, name, mg, trader))
            seen |= {name} | ({mg} if mg else set())
        found += [(None, mg, mg, False) for mg in sorted(rec.last) if mg not in seen]
        return found

    def _now_overdue(self, intervals: list[int]) -> list[int]:
        """On the node's loop: those of `intervals` whose records became overdue (one call for them all: every
        MG's record is waited for now, and an MGMC stopped for the day left one waited for in each interval)."""
        check = self.overdue
        return [] if check is None else [t for t in intervals if t not in self._overdue and check(t)]

    def _interval(
        self, t: int, trades: list[dict[str, Any]], reopened: tuple[int, int] | None
    ) -> dict[str, Any]:
        reopened_at, reopens = reopened or (None, 0)
        sellers = {self._name(key): by_round for key, by_round in self._chain.rounds.get(t, {}).items()}
        rounds = max((r for by_round in sellers.values() for r in by_round), default=0)
        prices: list[dict[str, Any]] = []
        last_two: list[dict[str, float]] = []
        for r in range(1, rounds + 1):
            now = {}
            for seller, by_round in sorted(sellers.items()):
                known = [k for k in by_round if k <= r]
                if known:
                    price, kwh = by_round[max(known)]
                    now[seller] = price
                    prices.append({"round": r, "seller": seller, "price": round(price, 6),
                                   "quantity_kwh": round(kwh, 3), "accepted": True})  # fmt: skip
            last_two = [*last_two[-1:], now]
        converged = t in self._closed and (rounds == 1 or (len(last_two) == 2 and last_two[0] == last_two[1]))
        agreed, settlements = [], []
        for tr in trades:
            seller, buyer = self._name(tr["seller"].hex()), self._name(tr["buyer"].hex())
            agreed.append({"seller": seller, "buyer": buyer, "quantity_kwh": tr["quantity"] / 1000,
                           "price": tr["price"] / 1000})  # fmt: skip
            done = tr.get("settlement")
            if done:
                settlements.append({"seller": seller, "buyer": buyer, "delivered_kwh": done["delivered"] / 1000,
                                    "amount": round(done["amount"] / MICRO, 6), "ok": True})  # fmt: skip
        costs = self._records.costs.get(t, {})
        p2p = {mg: round(c["cost_p2p"], 4) for mg, c in costs.items()}
        conventional = {mg: round(c["cost_conventional"], 4) for mg, c in costs.items()}
        parties = {key.hex() for tr in trades for key in (tr["seller"], tr["buyer"])}
        waiting, missing, trader_waits = (
            self._unreported(t, parties) if self.mgmc_records is not None else ([], {}, False)
        )
        partial = bool(waiting or missing)
        p2p_welfare = None
        if costs and not trader_waits:  # whole: the physical costs (payments cancel); else the reporters' own
            counted = ("cost_p2p",) if partial else ("cost_p2p", "p2p_money")
            p2p_welfare = round(-sum(c[k] for c in costs.values() for k in counted), 4)
        return {
            "interval": t,
            "hours": [round(t * self.interval_hours, 4), round((t + 1) * self.interval_hours, 4)],  # from t 0
            **day_fields(t, self.interval_hours),  # its market day and its hours in that day (U7-10)
            "rounds": rounds,
            "converged": converged,
            "closed": t in self._closed,
            "round_cap": self.replica.app.genesis.params.max_rounds or None,  # 0: the chain sets no cap
            "reopened_at": reopened_at,
            "reopens": reopens,  # how many times the DSO reopened it (U3-3: two read as 'after a reopening')
            "forward": self._forward.get(t),  # the day-ahead exchange session whose clear closed it, or None
            "missed": self._missed.get(t),  # why the DSO node never checked it (it was down), or None
            "prices": prices,
            "trades": agreed,
            "settlements": settlements,
            "cost_p2p": p2p,
            "cost_conventional": conventional,
            "unreadable": dict(sorted(self._records.unreadable.get(t, {}).items())),  # MG -> field and why
            "welfare": {
                "p2p": p2p_welfare,
                "conventional": None if p2p_welfare is None else round(-sum(conventional.values()), 4),
                "central": None,  # the centralised optimum is the report's, not computed live
                "waiting": waiting,  # the MGs whose interval record may still come (a trader's: no figure)
                "missing": missing,  # those whose record will not, with why: the figures are the others'
                "partial": p2p_welfare is not None and partial,  # the figures leave out those named above
            },
        }


def records_overdue(replica: Any, t: int) -> bool:
    """On the node's loop: whether every MGMC's record of interval t is overdue: the MGMC chain's head (block
    time) is past t's end on the chain's interval clock by more than genesis `settle_wait_ms`. False on a
    chain without an interval clock (genesis `settle_interval_ms` 0)."""
    from peergrid_ledger.contracts.market_clock import interval_end

    params = replica.app.genesis.params
    end = interval_end(replica.app.state, params, t)
    return end is not None and int(replica.store.tip().time) > end + int(params.settle_wait_ms)
