"""The schedules the edge daemon holds: the one dispatch follows, the ones waiting for their start.

Promises: `ScheduleHolder.current()` is the schedule in force while the controller speaks, None once it has
been silent for longer than `timeout_s` (its silence timer: the monotonic time `schedule_at` of the last
schedule taken, in force or ahead), so dispatch falls back to the devices' safe state. `take(payload)` is the
intake of one schedule message: judged by `ScheduleIntake` against the schedules as they stand at that moment
(one whose start came is in force first), taken through `set`, or logged, counted by reason and ignored, the
schedules held and the silence timer left as they were: a replay of a message taken before (`replayed`, by
its seq) is no sign of the controller's life. `set(schedule)` puts one in force now, or, when it starts after
the wall clock, holds it `ahead` (at most `AHEAD_MAX`, in start order; one with the start of one held replaces
it) while the one in force runs on until the first one's start: a controller that sends the next intervals'
schedules early neither throws the MG into the safe state for the rest of this one (E19) nor loses the next
one because the one after it came too (E20). A schedule held ahead is put in force once the wall clock
reaches its start (`advance`, called by every reader; if several started since, the last of them), logged as
"schedule N in force" on the daemon's logger. Assumes: the clock the daemon runs on.
Nothing is persisted, on purpose: a restarted daemon holds nothing and is in the safe state until its
controller sends again. The silence timer is the monotonic clock of this process; a schedule read back from
disk would be in force with no sign that its controller still lives, which is what the safe state is for, and
a controller that keeps a Pi under a schedule sends within `schedule_timeout_s` anyway. What a restart also
loses is the seq of the schedules held: with nothing held, the first replay of a message still in its window is
taken, and after it only one with a larger seq, so a replayer buys at most one silence window per message its
controller sent for that interval, in the order they were sent, and none past the interval's end.
Never raises on any bytes.
"""

from __future__ import annotations

import logging

from peergrid_edge.clock import Clock
from peergrid_edge.dispatch import Schedule
from peergrid_edge.schedule_intake import AHEAD_MAX, ScheduleIntake

# the daemon's logger: "schedule N in force" stays where an operator's journal filter has found it
log = logging.getLogger("peergrid.edge")


class ScheduleHolder:
    def __init__(self, clock: Clock, timeout_s: float, ahead_max: int = AHEAD_MAX) -> None:
        self.clock = clock
        self.timeout_s = timeout_s  # dispatch.schedule_timeout_s: the controller's silence allowed
        self.ahead_max = ahead_max
        self.schedule: Schedule | None = None  # the schedule in force: dispatch follows it while valid
        self.schedule_at: float | None = None  # monotonic time the last schedule was taken (either kind)
        # taken before their start, in start order, each with the monotonic time it was taken
        self.held_ahead: list[tuple[Schedule, float]] = []
        self.intake = ScheduleIntake()  # parses each schedule message, counts the ignored ones

    @property
    def ahead(self) -> tuple[Schedule, ...]:
        """The schedules waiting for their start, the nearest first."""
        return tuple(schedule for schedule, _ in self.held_ahead)

    @property
    def next_schedule(self) -> Schedule | None:
        """The first of them: in force from its start on."""
        return self.held_ahead[0][0] if self.held_ahead else None

    def take(self, payload: bytes) -> None:
        # None: logged, counted by reason and ignored, the schedules held kept - also one over already, older
        # than one held or a replay of one (a late or replayed message), which would have sent the devices to
        # their safe state or kept them out of it
        self.advance()  # judged against the schedules as they stand now, one whose start came in force
        quiet = self.schedule is not None and self.current() is None  # the controller went quiet
        now = self.clock.monotonic()
        ahead = [(schedule, now - at > self.timeout_s) for schedule, at in self.held_ahead]
        schedule = self.intake.take(payload, self.clock.wall(), self.schedule, quiet, ahead, self.ahead_max)
        if schedule is not None:
            self.set(schedule)

    def set(self, schedule: Schedule) -> None:
        """In force now, or held ahead when it starts after the wall clock: in place of the one held with its
        start, else after those that start before it, the ones starting after it dropped (the intake passes
        such a one only when they are quiet: the controller's newer word) and, when `ahead_max` start before
        it, not held (logged). Either way a sign of the controller's life: its silence timer restarts."""
        self.advance()  # one whose start came must not later replace this one
        now = self.clock.monotonic()
        self.schedule_at = now
        start = schedule.valid_from
        if start <= self.clock.wall():
            self.schedule = schedule
            return
        for i, (held, _) in enumerate(self.held_ahead):
            if held.valid_from == start:
                self.held_ahead[i] = (schedule, now)
                return
        before = [(held, at) for held, at in self.held_ahead if held.valid_from < start]
        for held, _ in self.held_ahead[len(before) :]:
            log.info(
                "schedule %d (from %.3f) no longer held: schedule %d starts before it",
                held.interval,
                held.valid_from,
                schedule.interval,
            )
        if len(before) >= self.ahead_max:
            self.held_ahead = before
            log.warning(
                "schedule %d (from %.3f) not held: %d schedules wait for their start already",
                schedule.interval,
                start,
                len(before),
            )
            return
        self.held_ahead = [*before, (schedule, now)]

    def advance(self) -> None:
        """The last schedule held ahead whose start the wall clock reached in force (its start is in it)."""
        wall = self.clock.wall()
        started = [schedule for schedule, _ in self.held_ahead if schedule.valid_from <= wall]
        if started:
            self.held_ahead = self.held_ahead[len(started) :]
            self.schedule = started[-1]
            log.info("schedule %d in force", started[-1].interval)

    def current(self) -> Schedule | None:
        self.advance()
        if self.schedule is None or self.schedule_at is None:
            return None
        if self.clock.monotonic() - self.schedule_at > self.timeout_s:
            return None  # the controller went quiet
        return self.schedule
