"""The daemon's intake of schedule messages: each parsed, or logged, counted by reason and ignored.

Promises: `ScheduleIntake.take(payload)` is the message's `Schedule` (`dispatch.parse_schedule`), or None for a
message that is not one (not JSON, a number that is not finite anywhere, a field missing or wrong): then one
log line, "ignored a schedule: <why>", as the daemon always logged it, and `ignored[reason]` counts it, so an
operator sees on `/metrics` (`exposition`: `peergrid_edge_schedules_ignored_total{reason}`) a controller or a
broker feeding the Pi bad schedules, not only in its journal. Reasons (`REASONS`): `not_json` (the bytes are
not a JSON document), `not_finite` (NaN, Infinity or a literal beyond a float anywhere, or a time or setpoint
too large for a float), `invalid` (JSON of finite numbers that is no schedule: a missing or mistyped field, a
time or setpoint that is no number, an end before its start, an unknown setpoint). Never raises on any bytes;
never keeps or sets a schedule (the caller keeps the one it had).
"""

from __future__ import annotations

import logging
from typing import Any

from peergrid_edge.dispatch import Schedule, ScheduleError, parse_schedule
from peergrid_edge.telemetry import NotFinite, loads_finite

# the daemon's logger: "ignored a schedule" stays where an operator's journal filter has always found it
log = logging.getLogger("peergrid.edge.daemon")

REASONS = ("not_json", "not_finite", "invalid")


def reason_of(payload: bytes) -> str:
    """Which of `REASONS` a schedule message that `parse_schedule` refused is (read again only for a refused
    one: the parse says why in words, this says it as a label)."""
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


class ScheduleIntake:
    def __init__(self) -> None:
        self.ignored: dict[str, int] = dict.fromkeys(REASONS, 0)

    def take(self, payload: bytes) -> Schedule | None:
        try:
            return parse_schedule(payload)
        except ScheduleError as exc:
            self.ignored[reason_of(payload)] += 1
            log.warning("ignored a schedule: %s", exc)
            return None

    @property
    def ignored_total(self) -> int:
        return sum(self.ignored.values())
