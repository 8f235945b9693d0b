"""The schedules the edge daemon holds: the one dispatch follows, the next one waiting for its start.

Promises: `ScheduleHolder.current()` is the schedule in force while the controller speaks, None once it has
been silent for longer than `timeout_s` (its silence timer: the monotonic time `schedule_at` of the last
schedule taken, in force or next), so dispatch falls back to the devices' safe state. `take(payload)` is the
intake of one schedule message: judged by `ScheduleIntake` against the schedules as they stand at that moment
(a next whose start came is in force first), taken through `set`, or logged, counted by reason and ignored, the
schedules held kept. `set(schedule)` puts one in force now, or, when it starts after the wall clock, holds it
as the next one (replacing the one held) while the one in force runs on until its start: a controller that
sends the next interval's schedule early no longer throws the MG into the safe state for the rest of this one
(E19). The next is put in force once the wall clock reaches its start (`advance`, called by every reader),
logged as "schedule N in force" on the daemon's logger. Assumes: the clock the daemon runs on; nothing is
persisted (a restarted daemon holds nothing until the controller sends again). Never raises on any bytes.
"""

from __future__ import annotations

import logging

from peergrid_edge.clock import Clock
from peergrid_edge.dispatch import Schedule
from peergrid_edge.schedule_intake import ScheduleIntake

# the daemon's logger: "schedule N in force" stays where an operator's journal filter has found it
log = logging.getLogger("peergrid.edge")


class ScheduleHolder:
    def __init__(self, clock: Clock, timeout_s: float) -> None:
        self.clock = clock
        self.timeout_s = timeout_s  # dispatch.schedule_timeout_s: the controller's silence allowed
        self.schedule: Schedule | None = None  # the schedule in force: dispatch follows it while valid
        self.schedule_at: float | None = None  # monotonic time the last schedule was taken (either kind)
        self.next_schedule: Schedule | None = None  # one taken before its start: in force from it on
        self.next_at: float | None = None  # monotonic time the next one was taken
        self.intake = ScheduleIntake()  # parses each schedule message, counts the ignored ones

    def take(self, payload: bytes) -> None:
        # None: logged, counted by reason and ignored, the schedule held kept - also one over already or older
        # than it (a late or replayed message), which would have sent the devices to their safe state
        self.advance()  # judged against the schedules as they stand now, a next whose start came in force
        quiet = self.schedule is not None and self.current() is None  # the controller went quiet
        ahead_quiet = self.next_at is not None and self.clock.monotonic() - self.next_at > self.timeout_s
        schedule = self.intake.take(
            payload, self.clock.wall(), self.schedule, quiet, self.next_schedule, ahead_quiet
        )
        if schedule is not None:
            self.set(schedule)

    def set(self, schedule: Schedule) -> None:
        """In force now, or held as the next one when it starts after the wall clock. Either way a sign of
        the controller's life: its silence timer restarts."""
        self.advance()  # a next whose start came must not later replace this one
        now = self.clock.monotonic()
        if schedule.valid_from > self.clock.wall():
            self.next_schedule, self.next_at = schedule, now
        else:
            self.schedule = schedule
        self.schedule_at = now

    def advance(self) -> None:
        """The next schedule in force once the wall clock reaches its start (its start is in it)."""
        following = self.next_schedule
        if following is not None and following.valid_from <= self.clock.wall():
            self.schedule, self.next_schedule, self.next_at = following, None, None
            log.info("schedule %d in force", following.interval)

    def current(self) -> Schedule | None:
        self.advance()
        if self.schedule is None or self.schedule_at is None:
            return None
        if self.clock.monotonic() - self.schedule_at > self.timeout_s:
            return None  # the controller went quiet
        return self.schedule
