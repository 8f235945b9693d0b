"""What the trading agent's records say of the day's spend before the interval it resumes at: the rationality
guard's budget on a restart (`guard.start_budget`), read in one pass over the record file's lines of the day
(`resume.record_lines`, `resume.of_day`; split from resume.py, which reads where the agent joins, its
counterfactual and its verdicts from the same lines).

Promises: `recorded_spend` reads the day's budget and what the recorded intervals before the resumed one cost
(their `cost_p2p` less the clean premium the owner paid, `PREMIUM_PAID`, as the running budget was charged:
`RecordedSpend.resumed`) and the shortfall a DSO change had left where an interval failed
(`BUDGET_SHORT`: `RecordedSpend.short`), so a restarted agent never starts a fresh allowance mid-day nor gives a
shortfall back, and what `RecordedSpend.unknown` needs to say when they cannot (a torn line, an interval this
MG ran with no recorded cost): the guard then resumes with no allowance left. (Before, the budget and the
unknown spend were two passes, each line parsed twice.) A torn line is the day's where it is legibly the day's
or follows the day's last whole line (`_legible`: review19 F4). `took_part` reads the chain's word on an
interval the records lost. Pure apart from reading the record file; never writes anything; never raises on
what the file holds (a line it cannot read is logged once, naming it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peergrid_edge.resume import DAMAGED, REPLACED, finite, of_day, record_lines, record_object
from peergrid_ledger import query
from peergrid_ledger.contracts import market as contract

log = logging.getLogger("peergrid.edge.trader")

BUDGET_DAY = "budget_day"
"""The interval record's key for the guard's budget at the day's start (conventional day cost + allowance)."""
PREMIUM_PAID = "clean_premium_paid"
"""The interval record's key for the clean premium the owner paid in it (`guard.premium_paid`), written only where
it is above 0: the budget was charged the record's `cost_p2p` less it, and a restart charges the same (a record
without it, no premium or written before the key, reads as it did)."""
BUDGET_SHORT = "budget_short"
"""A failed interval's record key for the shortfall a DSO change had left (`guard.DayBudget.short`: how far the
budget stood below the conventional value of the MG's state), which failing closed keeps; written only where it
is above 0, so a record without it (0, or written before the key) reads as it did."""


@dataclass(frozen=True)
class RecordedSpend:
    """What the agent's records say of the day's spend before interval `t` (`spend_of`): the day's budget at its
    start (`BUDGET_DAY`, the same in every record of the day; None: no record before t holds it), each interval's
    `cost_p2p` before t (the last record of an interval counting), the first interval before t whose record
    holds the day's budget, the first line that cannot be read (named; None: every line reads), and the shortfall
    the day's last failed interval before t recorded (`BUDGET_SHORT`; 0: none, or a failed record without it)."""

    t: int
    day: float | None
    costs: Mapping[int, float]
    started: int | None
    torn: str | None
    short: float = 0.0

    @property
    def resumed(self) -> tuple[float, float] | None:
        """(the day's budget at its start, what the records before t cost), the budget a restarted agent goes
        on with, never a fresh allowance mid-day; None: no record before t holds it (one starts afresh)."""
        return None if self.day is None else (self.day, sum(self.costs.values()))

    def unknown(self, first: int, traded: Callable[[int], bool]) -> str | None:
        """Why the records cannot say what the day cost before t, naming the interval (None: they can), so
        that the guard resumes with no allowance left instead of giving a cost back (review17 K-A):
        - a line that cannot be read: a crash tears the last line written, the record of the interval just
          dispatched and paid (its interval is named where its start is still legible);
        - an interval before t with no readable `cost_p2p` although the day's budget had started by it (a
          record holds `budget_day` for it or an earlier one: a crash between the interval's close and its
          record, or intervals missed while the agent was down), or one from `first` on where the chain shows
          this MG took part in it (`traded(k)`: the day's only record lost). An interval the records say
          failed holds no cost either: what it cost is unknown alike.
        An interval before the first record with no part on the chain is one the agent did not run (it started
        later): nothing to know there; nor at the day's first interval when no record before it holds a budget
        (a damaged line there is an earlier day's: it charges this one nothing)."""
        start, t = self.started, self.t
        if self.torn is not None and (
            t > first or start is not None
        ):  # a day's first start owes nothing to it
            return self.torn
        for k in range(first if start is None else min(first, start), t):
            if k in self.costs:
                continue
            if start is not None and k >= start:
                return f"interval {k} has no recorded cost (the day's budget started at interval {start})"
            if traded(k):
                return f"interval {k} has no recorded cost (the chain shows this MG took part in it)"
        return None


def recorded_spend(record_file: Path | None, t: int, day: str | None = None) -> RecordedSpend:
    """`spend_of` the record file's lines of `day` before interval t, best effort per line as the other start-up
    reads (a line that may have held a budget or a cost and was skipped is logged once)."""
    spend, errors = spend_of(record_lines(record_file), t, day)
    for error in errors:
        log.warning("record %s: %s", record_file, error)
    return spend


def spend_of(lines: Iterable[str], t: int, stamp: str | None = None) -> tuple[RecordedSpend, list[str]]:
    """What the record's lines of the day `stamp` say of its spend before t, each line parsed once, and why a
    line that may have held a budget or a cost was skipped (one entry per line). A line that cannot be read is
    the day's torn line where it is legibly the day's (`_legible`) or, its day not legible, the last whole line
    before it is (a crash tears the last line written; review19 F4: a torn stage record or unstamped line was
    every later day's). The day's first record torn is not: `traded(k)` on the chain notices its interval. The
    shortfall is the last failed record's before t (the latest interval; a torn one's is unknown, and a restart
    goes on without it: the line's number may be torn short)."""
    day: float | None = None
    costs: dict[int, float] = {}
    started: int | None = None
    torn: str | None = None
    failed: tuple[int, float] | None = None  # the latest failed interval before t and its recorded shortfall
    errors: list[str] = []
    after_the_days = False  # the last whole line before this one is of the day `stamp`
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        found, why, whole = _budget_line(line, stamp)
        damaged = DAMAGED if REPLACED in line else ""
        if why is not None or damaged:
            errors.append(f"line {number}{damaged}: {why or 'read as it stands'}")
        interval, legible_day = _legible(line)
        if whole is not None:  # a whole line's day is its stamp's
            the_days = after_the_days = whole
        else:
            the_days = stamp is None or (after_the_days if legible_day is None else legible_day == stamp)
        if why is not None and torn is None and the_days:
            named = "a record of an unknown interval" if interval is None else f"interval {interval}'s record"
            torn = f"{named} (line {number}) cannot be read ({why})"
        if found is None or found[0] >= t:
            continue
        k, budget, cost, short = found
        if budget is not None:
            day = budget
            started = k if started is None else min(started, k)
        if cost is not None:
            costs[k] = cost
        if short is not None and (failed is None or k >= failed[0]):
            failed = (k, short)
    return RecordedSpend(t, day, costs, started, torn, 0.0 if failed is None else failed[1]), errors


def _budget_line(
    line: str, stamp: str | None
) -> tuple[tuple[int, float | None, float | None, float | None] | None, str | None, bool | None]:
    """One record line's (interval, day's budget, cost as charged: `cost_p2p` less `PREMIUM_PAID`, shortfall)
    where a record of the day `stamp` holds a budget or a cost, or says the interval failed (its shortfall, 0
    where it names none; None: not a failed record), why it was skipped (a premium that is not a finite
    number at or above 0 too: the cost it charged is unknown), and whether the line is a whole record of that
    day (None: it is not a JSON object)."""
    doc, refused = record_object(line)
    if doc is None:
        return None, f"{refused}: a cost it held is not counted", None
    if not of_day(doc, stamp):
        return None, None, False
    if BUDGET_DAY not in doc and "cost_p2p" not in doc and "error" not in doc:
        return None, None, True
    k, budget, cost = doc.get("interval"), doc.get(BUDGET_DAY), doc.get("cost_p2p")
    failed, short, premium = "error" in doc, doc.get(BUDGET_SHORT, 0.0), doc.get(PREMIUM_PAID, 0.0)
    if type(k) is not int:
        if BUDGET_DAY not in doc and "cost_p2p" not in doc:
            return None, None, True  # a failed record naming no interval number: nothing it says is read
        return None, f"a budget or cost of interval {k!r:.40}, not an interval number: skipped", True
    if not all(v is None or finite(v) for v in (budget, cost)):
        why = f"interval {k}'s budget or cost is not a number ({budget!r:.20}, {cost!r:.20}): skipped"
        return None, why, True
    if not (finite(premium) and premium >= 0):
        return None, f"interval {k}'s {PREMIUM_PAID} is not a premium ({premium!r:.20}): skipped", True
    if cost is not None:  # the budget was charged the cost less the premium (`guard.premium_paid`)
        cost = float(cost) - float(premium)
    if failed and not (finite(short) and short >= 0):
        return None, f"interval {k}'s {BUDGET_SHORT} is not a shortfall ({short!r:.20}): skipped", True
    return (k, _number(budget), _number(cost), _number(short) if failed else None), None, True


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def took_part(state: Any, t: int, me: bytes) -> bool:
    """Whether the MGMC chain shows `me` (this MG's trading key) in interval t: a seller or buyer of its
    bargaining, or a party to one of its agreed trades (a forward trade too). Only its agent posts with it."""
    return (
        me in contract.members(state, t, "sellers")
        or me in contract.members(state, t, "buyers")
        or any(me in (trade["seller"], trade["buyer"]) for _, trade in query.trades(state, t))
    )


_LEGIBLE = re.compile(r'\s*\{(?:"interval":\s*(?P<interval>\d+)[,}]\s*)?(?:"day":\s*"(?P<day>[^"\\]*)"[,}])?')
"""The trader writes each record's interval first (where it names one) and its day next (`stamped`), so a line
torn after them still says both: an interval record `{"interval": k, "day": "...", ...}`, a stage record
`{"day": "...", ...}` (review19 F4: it was read only after an interval)."""


def _legible(line: str) -> tuple[str | None, str | None]:
    """The interval and the day a (torn) line still says whole at its start (`_LEGIBLE`; None: not legible)."""
    found = _LEGIBLE.match(line)
    return (None, None) if found is None else (found.group("interval"), found.group("day"))
