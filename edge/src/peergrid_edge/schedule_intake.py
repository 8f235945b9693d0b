"""The daemon's intake of schedule messages: each taken, or logged, counted by reason and ignored.

Promises: `ScheduleIntake.take(payload, now, held, quiet, ahead)` is the message's `Schedule`
(`dispatch.parse_schedule`) when the daemon should take it at wall-clock `now` beside `held` (the schedule in
force) and `ahead` (the ones held for their start, E19/E20), or None: then one log line, "ignored a schedule:
<why>", as the daemon always logged it, and `ignored[reason]` counts it, so an operator sees on `/metrics`
(`exposition`: `peergrid_edge_schedules_ignored_total{reason}`) a controller or a broker feeding the Pi bad,
late or replayed schedules, not only in its journal. Reasons (`REASONS`): `not_json` (the bytes are not a JSON
document), `not_finite` (NaN, Infinity or a literal beyond a float anywhere, or a time or setpoint too large
for a float), `invalid` (JSON of finite numbers that is no schedule: a missing or mistyped field, a time or
setpoint that is no number, an end before its start, an unknown setpoint, a seq that is no integer from 0 to
2**63-1), `expired` (its end is not after `now`: it can never be valid, and taking it would throw a running
MGMC out of its good schedule into the safe state), `stale` (it starts before `held`, which has not ended, or
after now but before a schedule held for its start: older than one held, a late or replayed message),
`replayed` (it has the start of one held, and both carry a seq, and its seq is not larger: a message the
controller sent before, redelivered by a broker or replayed on the bus; taking it would restart the
controller-silence timer, so a replay of the last schedule would keep a Pi whose controller died out of its
safe state for as long as the replays come), `ahead_full` (it starts after every one held for its start and
AHEAD_MAX wait already).
A schedule's age is its start, then its seq: the schedules held are the newest by (start, seq). A message
without a seq (or one judged against a schedule held without one) keeps the rule from before seq: a revision
of an interval starts with it and is taken, so is a resend of the schedule in force (it changes nothing but the
silence timer). A controller's seq must never go back, across its own restarts too (its wall clock in
milliseconds will do): a smaller one for an interval held is `replayed` until that interval's end. An early
one (starting after `now`) is judged against `ahead` too: the same start as one held is a revision of it (or a
replay, by seq), a start after all of them joins them, one before a held one that it does not match is stale
(a controller's schedules come in start order), unless every such later one has waited longer than
`schedule_timeout_s` (quiet): a schedule dated far ahead by a wrong clock keeps no later correction out for
good. Never raises on any bytes; never keeps or sets a schedule (the caller keeps the ones it had).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from peergrid_edge.dispatch import Schedule, ScheduleError, parse_schedule
from peergrid_edge.telemetry import NotFinite, loads_finite

# the daemon's logger: "ignored a schedule" stays where an operator's journal filter has always found it
log = logging.getLogger("peergrid.edge.daemon")

REASONS = ("not_json", "not_finite", "invalid", "expired", "stale", "replayed", "ahead_full")
# the schedules held for their start: a controller sends the next interval's ahead, perhaps a few; more buys
# nothing, as it must speak within `schedule_timeout_s` anyway for dispatch to follow them, and can send them then
AHEAD_MAX = 4


def reason_of(payload: bytes) -> str:
    """Which of `not_json`, `not_finite` and `invalid` a schedule message that `parse_schedule` refused is (read
    again only for a refused one: the parse says why in words, this says it as a label)."""
    try:
        document = loads_finite(payload)
    except NotFinite:
        return "not_finite"
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return "not_json"
    return "not_finite" if _beyond_float(document) else "invalid"


def _beyond_float(document: Any) -> bool:
    """Whether a parsed JSON document holds an integer no float can hold (json reads 400 digits as an int).
    Walked without recursion: the document may be nested as deep as json reads."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                float(value)
            except OverflowError:
                return True
    return False


def lateness(
    schedule: Schedule, now: float, held: Schedule | None, quiet: bool = False
) -> tuple[str, str] | None:
    """(`expired` or `stale`, why) for a well-formed schedule the daemon must not take at `now` in place of
    `held`, the last one it took (`quiet`: taken more than `schedule_timeout_s` ago), None for one it takes.
    Its end at `now` is expired: `Schedule.valid_at` excludes the end. Only a `held` that has not ended orders
    what comes after it, and one that has not started either only while its controller is not quiet: one
    schedule dated far ahead by a wrong clock must not keep every later one out for good."""
    if schedule.valid_until <= now:
        ago = now - schedule.valid_until
        return "expired", (
            f"expired: schedule {schedule.interval} ended at {schedule.valid_until:.3f}, {ago:.3f} s before "
            f"now ({now:.3f})"
        )
    if held is None or held.valid_until <= now or (quiet and held.valid_from > now):
        return None
    if schedule.valid_from < held.valid_from:
        return "stale", (
            f"stale: schedule {schedule.interval} starts at {schedule.valid_from:.3f}, before schedule "
            f"{held.interval} (from {held.valid_from:.3f}), which has not ended"
        )
    return None


def replay(schedule: Schedule, held: Schedule | None) -> tuple[str, str] | None:
    """(`replayed`, why) for a schedule with `held`'s start whose seq is not larger than `held`'s, None when
    either carries no seq (the rule from before seq: the same start is a revision) or its seq is larger."""
    if held is None or schedule.valid_from != held.valid_from or schedule.seq is None or held.seq is None:
        return None
    if schedule.seq > held.seq:
        return None
    return "replayed", (
        f"replayed: schedule {schedule.interval} (from {schedule.valid_from:.3f}) carries seq {schedule.seq}, "
        f"not after seq {held.seq} of schedule {held.interval} held with that start"
    )


def ahead_of(
    schedule: Schedule, ahead: Sequence[tuple[Schedule, bool]], ahead_max: int = AHEAD_MAX
) -> tuple[str, str] | None:
    """(`replayed`, `stale` or `ahead_full`, why) for an early schedule (starting after now) the daemon must not
    take beside `ahead`, the ones held for their start with whether each is quiet (taken more than
    `schedule_timeout_s` ago); None for one it takes."""
    start = schedule.valid_from
    for held, _ in ahead:
        if held.valid_from == start:
            return replay(schedule, held)  # a revision of one held, or a replay of it
    later = [held for held, quiet in ahead if held.valid_from > start and not quiet]
    if later:
        first = min(later, key=lambda held: held.valid_from)
        return "stale", (
            f"stale: schedule {schedule.interval} starts at {start:.3f}, before schedule {first.interval} "
            f"(from {first.valid_from:.3f}), which has not ended"
        )
    before = [held for held, _ in ahead if held.valid_from < start]  # the later ones are quiet: replaced
    if len(before) >= ahead_max:
        return "ahead_full", (
            f"ahead_full: schedule {schedule.interval} starts at {start:.3f}, after the {len(before)} schedules "
            f"held for their start (at most {ahead_max}; the nearest: schedule {before[0].interval} from "
            f"{before[0].valid_from:.3f})"
        )
    return None


class ScheduleIntake:
    def __init__(self) -> None:
        self.ignored: dict[str, int] = dict.fromkeys(REASONS, 0)

    def take(
        self,
        payload: bytes,
        now: float,
        held: Schedule | None = None,
        quiet: bool = False,
        ahead: Sequence[tuple[Schedule, bool]] = (),
        ahead_max: int = AHEAD_MAX,
    ) -> Schedule | None:
        """`now`: the daemon's wall clock (s), the time `decide` judges validity by; `held`: the controller's
        schedule in force (None: none; the trading agent's plan is no part of the controller's sequence and is
        never passed here: `schedule_holder`); `quiet`: that one came more than `schedule_timeout_s` ago; `ahead`: the ones held
        for their start, in start order, each with whether it came more than `schedule_timeout_s` ago."""
        try:
            schedule = parse_schedule(payload)
        except ScheduleError as exc:
            self._ignore(reason_of(payload), str(exc))
            return None
        late = lateness(schedule, now, held, quiet) or replay(schedule, held)
        if late is None and schedule.valid_from > now:
            late = ahead_of(schedule, ahead, ahead_max)  # an early one is ordered by those held ahead too
        if late is not None:
            self._ignore(*late)
            return None
        return schedule

    def _ignore(self, reason: str, why: str) -> None:
        self.ignored[reason] += 1
        log.warning("ignored a schedule: %s", why)

    @property
    def ignored_total(self) -> int:
        return sum(self.ignored.values())
