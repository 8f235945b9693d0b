"""Market days: which day of a chain that trades day after day an interval belongs to, and its hours in that day.

Promises: pure functions of interval numbers and the length of an interval in hours (the loop's
`interval_minutes` / 60), no clock. Day k holds the intervals that start in hours [24k, 24k + 24) counted from
interval 0's start (the market's epoch), which where the length divides a day is t // (intervals per day): the
edges' days (`market.days`, `agent_day.day_of`). An interval's `hours_of_day` are its start and end in hours from
its day's start (its end may be 24.0). `days` summarises the listed intervals by day (first, last, how many, how
many the DSO node missed): what the console lists to pick a day from, so no page lists or fetches a long-running
chain's intervals at once (a month of 15-minute intervals is ~3,000; U7-10: the view ran on past 24 hours, no day).
Never raises on an interval number; `interval_hours` must be positive (the loop's settings hold it so).
`check_listed` is the one refusal of a day none of whose intervals is listed (LookupError, `not_listed`'s words).
`named(first, last, interval_hours)` names an interval or a run of them as the console's alarms do, with its day
and clock time as the views say it ('interval 37 (day 0, 09:15–09:30)', 'intervals 95-97 (day 0, 23:45 – day
1, 00:30)'; C7: 'interval 37' alone on a pilot 200 days in said not which day); without a length, the number
alone. The clock is the market's: 00:00 is interval 0's start (the market's epoch), not midnight.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

MINUTES_PER_DAY = 1440


def _start_minute(t: int, interval_hours: float) -> float:
    # rounded: 10-minute intervals are 1/6 h, and t x (1/6) x 60 must land on a whole minute at a day's start
    return round(t * interval_hours * 60, 6)


def day_of(t: int, interval_hours: float) -> int:
    """The market day interval t starts in (day 0 holds interval 0)."""
    return int(_start_minute(t, interval_hours) // MINUTES_PER_DAY)


def hours_of_day(t: int, interval_hours: float) -> list[float]:
    """Interval t's start and end in hours from its day's start, e.g. [9.0, 9.25] for t 132 of 15 minutes."""
    start = (_start_minute(t, interval_hours) - day_of(t, interval_hours) * MINUTES_PER_DAY) / 60
    return [round(start, 4), round(start + interval_hours, 4)]


def day_fields(t: int, interval_hours: float) -> dict[str, Any]:
    """What the console's views say of interval t's day: `day` and `hours_of_day`."""
    return {"day": day_of(t, interval_hours), "hours_of_day": hours_of_day(t, interval_hours)}


def days(intervals: Iterable[int], interval_hours: float, missed: Iterable[int] = ()) -> list[dict[str, Any]]:
    """The days the listed intervals fall in, in order: each its `day`, `first` and `last` listed interval, how
    many are listed (`intervals`) and how many of them the DSO node missed (`missed`)."""
    missed = set(missed)
    found: dict[int, dict[str, Any]] = {}
    for t in sorted(intervals):
        k = day_of(t, interval_hours)
        day = found.setdefault(k, {"day": k, "first": t, "last": t, "intervals": 0, "missed": 0})
        day["last"] = t
        day["intervals"] += 1
        day["missed"] += t in missed
    return list(found.values())


def of_day(intervals: list[int], day: int | None, interval_hours: float) -> list[int]:
    """Of `intervals` (sorted), those of market day `day`; none for None."""
    if day is None:
        return []
    start = bisect.bisect_left(intervals, day, key=lambda t: day_of(t, interval_hours))
    end = bisect.bisect_left(intervals, day + 1, key=lambda t: day_of(t, interval_hours))
    return intervals[start:end]


def check_listed(day: int | None, listed: list[dict[str, Any]]) -> None:
    """LookupError (`not_listed`) where market day `day` is asked for and none of its intervals is `listed`
    (`days`' summary); None asks for no day in particular."""
    if day is not None and all(d["day"] != day for d in listed):
        raise LookupError(not_listed(day, listed))


def not_listed(day: int, listed: list[dict[str, Any]]) -> str:
    """Why market day `day` cannot be shown, naming those that can (`days`' summary)."""
    if not listed:
        return f"no interval of market day {day} is listed (none is yet)"
    first, last = listed[0]["day"], listed[-1]["day"]
    held = f"day {first} is" if first == last else f"days {first}-{last} are ({len(listed)} with any)"
    return f"no interval of market day {day} is listed ({held})"


def clock(hours: float) -> str:
    """Hours from a day's start as the page's clock shows them: 9.25 -> '09:15' (a day's end: '24:00')."""
    minutes = round(hours * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def named(first: int, last: int | None = None, interval_hours: float | None = None) -> str:
    """Interval `first` (to `last`: a run) as an alarm names it, with its market day and clock time where the
    interval length is known, e.g. 'intervals 13-14 (day 0, 03:15–03:45)'; else 'intervals 13-14'."""
    last = first if last is None else last
    span = f"interval {first}" if last == first else f"intervals {first}-{last}"
    if interval_hours is None:
        return span
    start, end = day_of(first, interval_hours), day_of(last, interval_hours)
    begins, ends = clock(hours_of_day(first, interval_hours)[0]), clock(hours_of_day(last, interval_hours)[1])
    when = f"day {start}, {begins}–{ends}" if start == end else f"day {start}, {begins} – day {end}, {ends}"
    return f"{span} ({when})"
