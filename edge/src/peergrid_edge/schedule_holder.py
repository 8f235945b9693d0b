"""The schedules the edge daemon holds: the one dispatch follows, the ones waiting for their start.

Two sources, kept apart. A controller's schedules come as MQTT messages (`take`) and are judged by its silence
timer; the trading agent in this process sets its plan (`set_plan`) and is judged by the plan's own validity
and its task's life. `current()` is the schedule dispatch follows now: the agent's plan while it is valid at
the wall clock (or bridged, below) and the agent's task has not died (`agent_alive`), else the controller's,
else the agent's plan that has not started or has run out (`decide` then says "schedule N not valid now"),
else None, so dispatch falls back to the devices' safe state. The agent wins while its plan is valid because that plan carries the
trades the MG agreed on the chain and the DSO checked: a schedule from elsewhere would leave them undelivered
and metered short; the controller's schedules are what dispatch follows before the agent's first plan, once
its plan ran out with no new one, and if its task died (the daemon then stops anyway: `task_watch`). (Before
E21 both shared one slot, the last set won and the agent's plan fell to the safe state `schedule_timeout_s`
after each dispatch: 13 of every 15 minutes at the default, review16 N1.)
The controller's side: its schedule in force is None once it has been silent for longer than `timeout_s`
(its silence timer: the monotonic time `schedule_at` of the last of its schedules taken, in force or ahead;
the agent's plans never restart it, as a live agent says nothing of a dead controller). `take(payload)` is the
intake of one schedule message: judged by `ScheduleIntake` against the controller's schedules as they stand at
that moment (one whose start came is in force first; the agent's plan is no part of the controller's
sequence), taken through `set`, or logged, counted by reason and ignored, the schedules held and the silence
timer left as they were: a replay of a message taken before (`replayed`, by its seq) is no sign of the
controller's life. `set(schedule)` puts one in force now, or, when it starts after the wall clock, holds it
`ahead` (at most `AHEAD_MAX`, in start order; one with the start of one held replaces it) while the one in
force runs on until the first one's start: a controller that sends the next intervals' schedules early neither
throws the MG into the safe state for the rest of this one (E19) nor loses the next one because the one after
it came too (E20). A schedule held ahead is put in force once the wall clock reaches its start (`advance`,
called by every reader; if several started since, the last of them), logged as "schedule N in force" on the
daemon's logger. The agent's side: `set_plan` replaces its plan (its latest word, never judged: it is this
process's own); its `valid_until` (`agent_dispatch.plan_valid_until`: the end of the next interval, the day's
last interval its own end) bounds how long it is followed by the clock alone. Past it the plan is bridged,
up to its `bridge_until` (`agent_dispatch.bridge_until`: four intervals and 30 s from its dispatch), while the
agent lives and says it still works on the plan's interval or the next one (`working`, read at each look):
an agent that falls behind its slots is followed until its next plan with no safe-state gap between (E22's
1 s in slot 38 of a 2.5-s lab), and the day's last interval dispatched after its end is followed until the
agent is done with it (its dispatch then says held, as any behind interval's: E22's `plan_confirmed` false);
never once the agent moved past the next interval (one failed before its dispatch), its day is over or its
task died. A bridged plan is the plan with `valid_until` at its bridge's end (what `decide` and /metrics see
while it rules). Assumes: the clock the daemon runs on.
Nothing is persisted, on purpose: a restarted daemon holds nothing and is in the safe state until its
controller sends again or its agent dispatches. The silence timer is the monotonic clock of this process; a
schedule read back from disk would be in force with no sign that its controller still lives, which is what the
safe state is for, and a controller that keeps a Pi under a schedule sends within `schedule_timeout_s` anyway.
What a restart also loses is the seq of the schedules held: with nothing held, the first replay of a message
still in its window is taken, and after it only one with a larger seq, so a replayer buys at most one silence
window per message its controller sent for that interval, in the order they were sent, and none past the
interval's end.
Never raises on any bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from peergrid_edge.clock import Clock
from peergrid_edge.dispatch import Schedule
from peergrid_edge.schedule_intake import AHEAD_MAX, ScheduleIntake

# the daemon's logger: "schedule N in force" stays where an operator's journal filter has found it
log = logging.getLogger("peergrid.edge")


def _alive() -> bool:
    return True  # no agent task to watch (none runs, or the daemon's `run` has not started it)


def _nowhere() -> int | None:
    return None  # an agent that says nothing of its work: its plan is followed by its own times alone


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
        self.plan: Schedule | None = None  # the trading agent's latest plan (`set_plan`): no silence timer
        # the plan as followed past its valid_until while the agent works on its interval or the next (None: never)
        self.bridged: Schedule | None = None
        # the interval the agent's loop is on (None: none), given with its plan (`set_plan`)
        self.agent_working: Callable[[], int | None] = _nowhere
        # whether the agent's task has not died: the daemon's `run` wires it to the task it starts
        self.agent_alive: Callable[[], bool] = _alive

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
        quiet = self.schedule is not None and self.controller_current() is None  # the controller went quiet
        now = self.clock.monotonic()
        ahead = [(schedule, now - at > self.timeout_s) for schedule, at in self.held_ahead]
        schedule = self.intake.take(payload, self.clock.wall(), self.schedule, quiet, ahead, self.ahead_max)
        if schedule is not None:
            self.set(schedule)
            # taken but not followed: said in the journal, where an operator looks for the controller's schedules
            ruling = self.agent_plan()
            if ruling is not None:
                log.info(
                    "schedule %d from the controller taken; dispatch follows the trading agent's plan %d "
                    "until %.3f",
                    schedule.interval,
                    ruling.interval,
                    ruling.valid_until,
                )

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

    def set_plan(
        self,
        plan: Schedule,
        bridge_until: float | None = None,
        working: Callable[[], int | None] | None = None,
    ) -> None:
        """The trading agent's plan, in place of its last one: followed while it is valid at the wall clock and
        the agent's task lives, ahead of the controller's schedules; the controller's silence timer left alone.
        `bridge_until`: past its `valid_until`, it is followed up to then while `working()` (the interval the
        agent is on, None: none) is the plan's interval or the next (None: never past `valid_until`)."""
        self.plan = plan
        ends = plan.valid_until if bridge_until is None else bridge_until
        self.bridged = replace(plan, valid_until=ends) if ends > plan.valid_until else None
        self.agent_working = _nowhere if working is None else working

    def agent_plan(self) -> Schedule | None:
        """The agent's plan as dispatch follows it now (the module's contract), None when it does not rule: valid
        at the wall clock, or bridged while the agent works on its interval or the next; its task alive."""
        plan = self.plan
        if plan is None or not self.agent_alive():
            return None
        wall = self.clock.wall()
        if plan.valid_at(wall):
            return plan
        bridged = self.bridged
        if bridged is None or not bridged.valid_at(wall):
            return None
        return bridged if self.agent_working() in (plan.interval, plan.interval + 1) else None

    def plan_rules(self) -> bool:
        """Whether dispatch follows the agent's plan now (`agent_plan`)."""
        return self.agent_plan() is not None

    @property
    def in_force(self) -> Schedule | None:
        """The schedule in force by its source (the agent's plan while it rules, else the controller's), the
        silence timer aside: what /metrics names as the schedule interval."""
        self.advance()
        ruling = self.agent_plan()
        return self.schedule if ruling is None else ruling

    def controller_current(self) -> Schedule | None:
        """The controller's schedule in force, None once the controller has been silent for `timeout_s`."""
        self.advance()
        if self.schedule is None or self.schedule_at is None:
            return None
        if self.clock.monotonic() - self.schedule_at > self.timeout_s:
            return None  # the controller went quiet
        return self.schedule

    def current(self) -> Schedule | None:
        """The schedule dispatch follows now (the module's contract: the agent's plan first)."""
        self.advance()  # the controller's side moves on at its starts whoever is followed ("schedule N in force")
        ruling = self.agent_plan()
        if ruling is not None:
            return ruling
        controller = self.controller_current()
        if controller is not None or not self.agent_alive():
            return controller
        return self.plan  # not started or run out: `decide` names it ("not valid now") and goes safe
