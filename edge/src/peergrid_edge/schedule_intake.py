"""The daemon's intake of schedule messages: each taken, or logged, counted by reason and ignored.

Promises: `ScheduleIntake.take(payload, now, held, quiet)` is the message's `Schedule`
(`dispatch.parse_schedule`) when the daemon should take it at wall-clock `now` in place of `held` (the last
schedule it took), or None: then one log line, "ignored a schedule: <why>", as the daemon always logged it,
and `ignored[reason]` counts it, so an operator sees on `/metrics` (`exposition`:
`peergrid_edge_schedules_ignored_total{reason}`) a controller or a broker feeding the Pi bad, late or replayed
schedules, not only in its journal. Reasons (`REASONS`): `not_json` (the bytes are not a JSON document),
`not_finite` (NaN, Infinity or a literal beyond a float anywhere, or a time or setpoint too large for a float),
`invalid` (JSON of finite numbers that is no schedule: a missing or mistyped field, a time or setpoint that is
no number, an end before its start, an unknown setpoint), `expired` (its end is not after `now`: it can never
be valid, and taking it would throw a running MGMC out of its good schedule into the safe state), `stale` (it
starts before `held`, which has not ended: older than the schedule in force, a late or replayed message).
A message carries no issue time or sequence, so its start is its age: a controller's next schedule starts no
earlier than the one before it, and a revision of an interval starts with it and is taken (so is a replay of
the schedule in force itself: it changes nothing but the controller's silence timer). One that starts after
`now` is also judged against `ahead`, the next schedule the daemon holds for its start (E19), by the same
rule: the same start is a revision and is taken, a later one too (the controller's newest word: it replaces
`ahead`), an earlier one is stale (a controller's schedules come in start order: one starting between now and
the next held is a late or replayed message), unless `ahead` has waited longer than `schedule_timeout_s`
(`ahead_quiet`): a next dated far ahead by a wrong clock keeps no later correction out for good. Never raises
on any bytes; never keeps or sets a schedule (the caller keeps the ones it had).
"""

from __future__ import annotations

import logging
from typing import Any

from peergrid_edge.dispatch import Schedule, ScheduleError, parse_schedule
from peergrid_edge.telemetry import NotFinite, loads_finite

# the daemon's logger: "ignored a schedule" stays where an operator's journal filter has always found it
log = logging.getLogger("peergrid.edge.daemon")

REASONS = ("not_json", "not_finite", "invalid", "expired", "stale")


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


class ScheduleIntake:
    def __init__(self) -> None:
        self.ignored: dict[str, int] = dict.fromkeys(REASONS, 0)

    def take(
        self,
        payload: bytes,
        now: float,
        held: Schedule | None = None,
        quiet: bool = False,
        ahead: Schedule | None = None,
        ahead_quiet: bool = False,
    ) -> Schedule | None:
        """`now`: the daemon's wall clock (s), the time `decide` judges validity by; `held`: the schedule in
        force (None: none); `quiet`: that one came more than `schedule_timeout_s` ago; `ahead`: the next one
        held for its start (None: none), `ahead_quiet`: taken more than `schedule_timeout_s` ago."""
        try:
            schedule = parse_schedule(payload)
        except ScheduleError as exc:
            self._ignore(reason_of(payload), str(exc))
            return None
        late = lateness(schedule, now, held, quiet)
        if late is None and schedule.valid_from > now:
            late = lateness(schedule, now, ahead, ahead_quiet)  # an early one is ordered by the next too
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
