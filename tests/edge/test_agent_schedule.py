"""The trading agent's plan is not judged by the controller-silence timer (review16 N1, E21).

Before, the agent's schedule (`agent_dispatch.plan_schedule`: valid from its dispatch for four intervals and
30 s, set at most twice an interval) went into the slot an MQTT controller's schedule goes into, and the
holder's silence timer counted it like one: `current()` was None `dispatch.schedule_timeout_s` (default 120 s)
after each dispatch. At real 15-minute intervals an edge dispatched its plan for 2 minutes and sat in the safe
state for the other 13. Now the agent's plan is followed while it is valid and its task lives, ahead of an
MQTT controller's schedules, which keep their timer. A real `EdgeDaemon` on a `ManualClock` (wall = monotonic),
the agent's plan set by the trader's own `MarketAgent._dispatch`.

Review17 S-A: the plan of interval t is followed until the end of t + 1 (the day's last interval: its own end),
not four intervals and 30 s whatever came after, so after the day or an interval that failed before its
dispatch a live controller's schedule (or the safe state) takes over within an interval
(`agent_dispatch.plan_valid_until`). E23: past that end a plan is bridged while the agent says it works on the
plan's interval or the next (`MarketAgent.working_on`), at most d926202's four intervals and 30 s from its
dispatch (`agent_dispatch.set_plan`): an agent behind its slots is followed from plan to plan with no safe tick,
also where it first falls behind (E22's gap in slot 38), and the day's last interval dispatched after its end
until the agent is done with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from peergrid_controller.schedule import Plan
from peergrid_edge import agent_dispatch as agent_dispatch_module
from peergrid_edge.agent_dispatch import bridge_until, plan_valid_until
from peergrid_edge.clock import ManualClock, SystemClock
from peergrid_edge.config import EdgeSettings, MarketSettings
from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.dispatch import Decision, Schedule, decide
from peergrid_edge.drivers import Snapshot
from peergrid_edge.schedule_holder import ScheduleHolder
from peergrid_edge.schedule_holder import log as holder_log
from peergrid_edge.task_watch import TaskDied
from peergrid_edge.trader import MarketAgent

START = 1_000_000.0
INTERVAL_S = 900.0  # a deployed market's interval
FIRST = 7  # the market's first interval, whose slot starts at START
R16_S = 4 * INTERVAL_S + 30  # R16's schedule length (and `plan_schedule`'s before review17 S-A)
NEXT_END = 2 * INTERVAL_S  # interval 7's plan, dispatched in its slot: followed until interval 8's end
SCENARIO_INTERVALS = 96  # the stand-in MG's day (`Microgrid.intervals`): interval 95 is its last


def market(tmp_path: Path, intervals: int | None = None) -> MarketSettings:
    """The market section of an edge trading at real 15-minute intervals from interval 7 at START (`t0`,
    `interval_s`, `first_interval` and `intervals` are read here); `intervals` 1 makes 7 the day's last."""
    return MarketSettings.model_validate(
        {"scenario": str(tmp_path / "s.yaml"), "anonym_key_file": str(tmp_path / "a.key"), "t0": START,
         "interval_s": INTERVAL_S, "first_interval": FIRST, "intervals": intervals}
    )  # fmt: skip


def with_market(daemon: EdgeDaemon, settings: MarketSettings) -> None:
    """The daemon's market section, the one its agent trades by (`MarketAgent(daemon, settings.market)`), set
    after construction so the daemon makes no agent of its own."""
    daemon.settings = daemon.settings.model_copy(update={"market": settings})


@contextmanager
def edge(data_dir: Path, clock: ManualClock, dispatch: dict[str, Any] | None = None) -> Iterator[EdgeDaemon]:
    """An edge with one battery (fresh for the whole test, reporting 0 W) and the default dispatch settings
    unless `dispatch` says otherwise."""
    device = {"name": "bat1", "nature": "battery", "host": "127.0.0.1", "port": 9, "stale_after_s": 10_000,
              "control": {"max_w": 5000, "ramp_w_per_s": 0, "safe_w": 0}}  # fmt: skip
    doc = {"node_id": "n", "mg": "mg1", "data_dir": str(data_dir), "devices": [device]}
    daemon = EdgeDaemon(
        EdgeSettings.model_validate({**doc, **({"dispatch": dispatch} if dispatch else {})}), clock
    )
    state = daemon.states["bat1"]
    reading: dict[str, float | None] = {
        "power_w": 0.0,
        "setpoint_w": 0.0,
        "rating_w": 5000.0,
        "soc_pct": 50.0,
    }
    state.last_good = Snapshot("bat1", "battery", True, clock.wall(), reading=reading)
    state.last_good_mono = clock.monotonic()
    try:
        yield daemon
    finally:
        daemon.store.close()


def plan(battery_kw: float) -> Plan:
    zero = (0.0,)
    return Plan(0.0, zero, zero, zero, (False,), zero, (battery_kw,), zero, zero, {})


def stand_in(daemon: EdgeDaemon, settings: MarketSettings, working: int | None = None) -> SimpleNamespace:
    """A trading agent with what `MarketAgent._dispatch` reads, on the daemon's market section; `working_on`
    (the interval its loop is on) is what the test sets: None, as here by default, says nothing of its work,
    so its plans are followed by their own times alone."""
    with_market(daemon, settings)
    mg = SimpleNamespace(pv=[], intervals=SCENARIO_INTERVALS)
    return SimpleNamespace(d=daemon, mg=mg, s=settings, working_on=working, held=None)


def agent_dispatch(
    daemon: EdgeDaemon, settings: MarketSettings, t: int, battery_kw: float, agent: Any = None
) -> list[Decision]:
    """The trader's own `_dispatch` of interval t's plan (plan_schedule, set_plan, one dispatch tick) on a
    stand-in agent (`agent`, else one that says nothing of its work); the actuator records the tick's decision
    instead of writing over Modbus."""
    decisions = record_decisions(daemon)
    agent = stand_in(daemon, settings) if agent is None else agent
    asyncio.run(MarketAgent._dispatch(agent, t, plan(battery_kw)))
    return decisions


def record_decisions(daemon: EdgeDaemon) -> list[Decision]:
    decisions: list[Decision] = []

    async def perform(decision: Decision) -> None:
        decisions.append(decision)

    async def feed(_views: Any) -> None:
        return None

    daemon.actuator.perform = perform  # type: ignore[method-assign]
    daemon.actuator.feed = feed  # type: ignore[method-assign]
    return decisions


def tick(daemon: EdgeDaemon) -> Decision:
    """One dispatch tick, as the daemon's loop runs it: the decision its actuator would perform."""
    decisions = record_decisions(daemon)
    asyncio.run(daemon.dispatch_once(daemon.settings.dispatch.period_s))
    (decision,) = decisions
    return decision


def writes(decision: Decision) -> dict[str, float]:
    return {f"{w.device}.{w.setpoint}": w.value for w in decision.writes}


def dispatching(daemon: EdgeDaemon) -> str:
    """The next tick's reason: 'schedule N' while dispatch follows one, else why it is safe."""
    return decide({}, daemon.current_schedule(), daemon.clock.wall(), 1.0).reason


def message(interval: int, valid_from: float, valid_until: float, power_w: float = 3000.0) -> bytes:
    body = {"interval": interval, "valid_from": valid_from, "valid_until": valid_until,
            "setpoints": {"bat1": {"power_w": power_w}}}  # fmt: skip
    return json.dumps(body).encode()


def send(daemon: EdgeDaemon, payload: bytes) -> None:
    daemon._on_schedule(daemon.schedule_topic, payload)


# --- R16's script: 900-s intervals, the default timeout -----------------------------------------------------


def test_the_agents_plan_at_900_s_intervals_is_in_force_899_s_after_its_dispatch_at_the_default_timeout(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path)
    with edge(tmp_path, clock) as daemon:
        assert daemon.settings.dispatch.schedule_timeout_s == 120.0  # the default, the README's example
        (first,) = agent_dispatch(daemon, settings, 7, -2.0)
        assert first.mode == "schedule" and writes(first) == {"bat1.power_w": -2000.0}
        plan_7 = daemon.current_schedule()
        assert plan_7 is not None and (plan_7.valid_from, plan_7.valid_until) == (START, START + NEXT_END)
        for after in (0.0, 60.0, 119.0, 121.0, 300.0, 899.0, NEXT_END - 0.5):
            clock.now = START + after
            decision = tick(daemon)
            assert (decision.mode, decision.reason) == ("schedule", "schedule 7"), after
            assert writes(decision) == {"bat1.power_w": -2000.0}, after  # the battery still reports 0 W
        assert daemon.schedule is plan_7  # /metrics' schedule interval: the plan in force
        # the plan runs out with no new one (a live agent stuck somewhere): the safe state at its valid_until
        clock.now = START + NEXT_END
        decision = tick(daemon)
        assert (decision.mode, decision.reason) == ("safe", "schedule 7 not valid now")
        assert writes(decision) == {"bat1.power_w": 0.0}  # its safe_w


def test_the_agents_next_plan_replaces_the_last_one_and_carries_dispatch_on(tmp_path: Path) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path)
    with edge(tmp_path, clock) as daemon:
        agent_dispatch(daemon, settings, 7, -2.0)
        for t in (8, 9, 10):  # one dispatch an interval, each 900 s after the last: never a safe tick
            clock.now += INTERVAL_S - 1
            assert dispatching(daemon) == f"schedule {t - 1}"
            clock.now += 1
            (decision,) = agent_dispatch(daemon, settings, t, -0.1 * t)
            assert decision.reason == f"schedule {t}" and writes(decision) == {
                "bat1.power_w": pytest.approx(-100.0 * t)
            }
        assert daemon.schedule_at is None  # the agent's plans never started a controller's silence timer


def test_a_controllers_schedule_still_goes_safe_after_the_silence_timer(tmp_path: Path) -> None:
    """The same schedule as R16's (valid 3630 s), from an MQTT controller that then goes quiet."""
    clock = ManualClock(START, wall_offset=0.0)
    with edge(tmp_path, clock) as daemon:
        send(daemon, message(7, START, START + R16_S, -2000.0))
        for after, reason in ((0.0, "schedule 7"), (119.0, "schedule 7"), (120.0, "schedule 7"),
                              (120.5, "no schedule"), (899.0, "no schedule")):  # fmt: skip
            clock.now = START + after
            decision = tick(daemon)
            assert decision.reason == reason, after
        assert decision.mode == "safe" and writes(decision) == {"bat1.power_w": 0.0}


# --- the two sources on one edge ------------------------------------------------------------------------------


def test_the_agents_plan_wins_over_a_controllers_schedule_while_it_is_valid_and_the_controller_is_fallback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path)
    with (
        edge(tmp_path, clock, {"schedule_timeout_s": 60.0}) as daemon,
        caplog.at_level(logging.INFO, logger=holder_log.name),
    ):
        # before the agent's first plan the controller's schedule is followed
        send(daemon, message(1, START, START + 10_000.0, 3000.0))
        assert dispatching(daemon) == "schedule 1"
        clock.now += 10
        (decision,) = agent_dispatch(daemon, settings, 7, -2.0)
        assert decision.reason == "schedule 7" and writes(decision) == {"bat1.power_w": -2000.0}
        # the agent's set is no sign of the controller's life: its timer runs from its last message
        assert daemon.schedule_at == START
        # a controller's message is judged against the controller's own schedules, not the agent's plan
        # (which started 10 s after it): taken, its timer restarted, and the agent's plan still followed
        send(daemon, message(1, START, START + 10_000.0, 2500.0))
        assert daemon.schedule_intake.ignored_total == 0 and daemon.schedule_at == clock.now
        assert dispatching(daemon) == "schedule 7" and daemon.schedule is not None
        assert daemon.schedule.interval == 7 and daemon.schedules.schedule is not None
        assert daemon.schedules.schedule.setpoints == {"bat1": {"power_w": 2500.0}}
        # said once in the journal: taken, not followed (the first message, before the plan, said nothing)
        said = [
            r.getMessage() for r in caplog.records if r.name == holder_log.name and "taken" in r.getMessage()
        ]
        assert said == [
            f"schedule 1 from the controller taken; dispatch follows the trading agent's plan 7 until "
            f"{START + NEXT_END:.3f}"
        ]
        # the agent's plan runs out while the controller still speaks: the controller's schedule takes over
        clock.now = START + NEXT_END - 30
        send(daemon, message(1, START, START + 10_000.0, 2400.0))
        clock.now = START + NEXT_END
        decision = tick(daemon)
        assert decision.reason == "schedule 1" and writes(decision) == {"bat1.power_w": 2400.0}
        # the controller falls silent too: the safe state (naming the agent's plan that ran out)
        clock.now += 61
        assert dispatching(daemon) == "schedule 7 not valid now"


def test_a_controller_quiet_behind_the_agents_plan_is_not_followed_once_the_plan_runs_out(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path)
    with edge(tmp_path, clock, {"schedule_timeout_s": 60.0}) as daemon:
        send(daemon, message(1, START, START + 100_000.0, 3000.0))
        agent_dispatch(daemon, settings, 7, -2.0)
        for t in (8, 9):  # the agent dispatches every interval; the controller said nothing since
            clock.now += INTERVAL_S
            agent_dispatch(daemon, settings, t, -2.0)
            assert dispatching(daemon) == f"schedule {t}"
        clock.now += NEXT_END  # the agent's last plan ran out: a dead controller's schedule is no fallback
        assert dispatching(daemon) == "schedule 9 not valid now"


# --- review17 S-A: no plan outlives the day or a failed interval by more than one interval -------------------


def test_an_interval_that_fails_before_its_dispatch_leaves_the_plan_before_it_until_its_own_end(
    tmp_path: Path,
) -> None:
    """Interval 8 fails before its dispatch ("interval 8 failed", the loop goes on): interval 7's setpoints run
    through interval 8 (its bargaining and DSO verdict, as on any interval) and end with it."""
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path)
    with edge(tmp_path, clock, {"schedule_timeout_s": 60.0}) as daemon:
        clock.now = START + 60  # interval 7 bargained for a minute, then dispatched
        agent_dispatch(daemon, settings, 7, -2.0)
        plan_7 = daemon.current_schedule()
        assert plan_7 is not None and plan_7.valid_until == START + NEXT_END
        clock.now = START + NEXT_END - 0.5  # interval 8 failed: no plan of its own
        assert dispatching(daemon) == "schedule 7"
        send(daemon, message(20, clock.now, clock.now + 600, power_w=1500.0))  # a live controller
        clock.now = START + NEXT_END  # interval 8 over: the controller's schedule, not 7's setpoints
        decision = tick(daemon)
        assert decision.reason == "schedule 20" and writes(decision) == {"bat1.power_w": 1500.0}
        clock.now += 61  # the controller quiet too: the safe state, naming the plan that ran out
        decision = tick(daemon)
        assert (decision.mode, decision.reason) == ("safe", "schedule 7 not valid now")
        assert writes(decision) == {"bat1.power_w": 0.0}


def test_the_days_last_interval_is_followed_until_its_own_end(tmp_path: Path) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path, intervals=1)  # interval 7 is the day's last
    with edge(tmp_path, clock) as daemon:
        clock.now = START + 60
        (decision,) = agent_dispatch(daemon, settings, 7, -2.0)
        assert decision.reason == "schedule 7" and writes(decision) == {"bat1.power_w": -2000.0}
        plan_7 = daemon.current_schedule()
        assert plan_7 is not None and plan_7.valid_until == START + INTERVAL_S
        clock.now = START + INTERVAL_S - 0.5
        assert tick(daemon).reason == "schedule 7"
        clock.now = START + INTERVAL_S  # the day's trading is over: settle_day, the uplift - no setpoints
        decision = tick(daemon)
        assert (decision.mode, decision.reason) == ("safe", "schedule 7 not valid now")
        assert writes(decision) == {"bat1.power_w": 0.0}


def test_r17_a_live_controller_is_followed_once_the_days_last_plan_ended(tmp_path: Path) -> None:
    """R17's script (s1_stale_plan.py): the day's last interval's plan, a live controller sending +1.5 kW at
    1.2 and 2.0 intervals after its start. Before, interval 7's -2 kW ran on at all four instants."""
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path, intervals=1)
    with edge(tmp_path, clock) as daemon:
        agent_dispatch(daemon, settings, 7, -2.0)
        clock.now = START + 1.2 * INTERVAL_S  # interval 7 over; the agent lives (settle_day), sends no plan
        send(daemon, message(9, clock.wall(), clock.wall() + 600, power_w=1500.0))
        seen = []
        for after in (1.2, 2.0, 3.0, 4.0):
            clock.now = START + after * INTERVAL_S
            if after == 2.0:
                send(daemon, message(10, clock.wall(), clock.wall() + 600, power_w=1500.0))
            decision = tick(daemon)
            seen.append((decision.mode, decision.reason, writes(decision)))
        follows = {"bat1.power_w": 1500.0}
        assert seen == [
            ("schedule", "schedule 9", follows),
            ("schedule", "schedule 10", follows),
            ("safe", "schedule 7 not valid now", {"bat1.power_w": 0.0}),  # the controller quiet (120 s)
            ("safe", "schedule 7 not valid now", {"bat1.power_w": 0.0}),
        ]


def test_an_agent_behind_its_slots_keeps_its_plan_until_its_next_dispatch(tmp_path: Path) -> None:
    """d926202's need: with 30 MGMCs an interval's work outlasted two slots and each interval starts when the
    one before ended; a plan dispatched after its slot ended is followed while the agent works on its interval
    and the next, so the agent's next plan, one interval's work later, takes over from it with no safe tick."""
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path)
    with edge(tmp_path, clock) as daemon:
        agent = stand_in(daemon, settings, working=7)
        clock.now = START + 2.5 * INTERVAL_S  # interval 7 dispatched 2.5 slots late
        agent_dispatch(daemon, settings, 7, -2.0, agent)
        plan_7 = daemon.current_schedule()
        assert (
            plan_7 is not None and plan_7.valid_until == START + 2.5 * INTERVAL_S + R16_S
        )  # its bridge's end
        assert daemon.schedules.plan is not None and daemon.schedules.plan.valid_until == START + NEXT_END
        agent.working_on = 8
        clock.now += 2.4 * INTERVAL_S  # its work and interval 8's bargaining took 2.4 slots
        assert dispatching(daemon) == "schedule 7"
        (decision,) = agent_dispatch(daemon, settings, 8, -1.0, agent)
        assert decision.reason == "schedule 8" and writes(decision) == {"bat1.power_w": -1000.0}


LAB_S = 2.5  # E22's lab: 2.5-s slots from interval 36


def test_an_agent_that_first_falls_behind_its_slots_has_no_safe_tick(tmp_path: Path) -> None:
    """E22's gap (slot 38 of a 2.5-s lab run): interval 37 dispatched in its slot is valid by the clock to the
    end of 38, but interval 38's work (started late) dispatches it 1 s into slot 39; before, dispatch sat in the
    safe state for that second. Now plan 37 is followed while the agent works on 38, 38's plan (behind) while
    it works on 39, and every tick of the run follows a plan. Ticks every 0.1 s on a manual clock."""
    clock = ManualClock(START, wall_offset=0.0)
    settings = MarketSettings.model_validate(
        {"scenario": str(tmp_path / "s.yaml"), "anonym_key_file": str(tmp_path / "a.key"), "t0": START,
         "interval_s": LAB_S, "first_interval": 36, "intervals": 4}
    )  # fmt: skip

    def at(k: int, into: float) -> float:  # `into` seconds after interval k's slot starts
        return START + (k - 36) * LAB_S + into

    script = [  # (when, the interval the agent's loop is on, the interval it dispatches then or None)
        (at(36, 0.0), 36, None), (at(36, 0.8), 36, 36), (at(37, 0.0), 37, None), (at(37, 0.9), 37, 37),
        (at(37, 2.3), 38, None),  # 37's DSO verdict and settle took to the end of its slot: 38 starts late
        (at(39, 1.0), 38, 38),  # ... and is dispatched 1 s into slot 39: behind its slots from here
        (at(39, 2.2), 39, None), (at(40, 1.9), 39, 39),  # 39 dispatched 1.9 s into the day's end slot 40
    ]  # fmt: skip
    with edge(tmp_path, clock) as daemon:
        agent = stand_in(daemon, settings)
        seen: list[tuple[float, str]] = []
        now = at(36, 0.0)
        for when, working, dispatched in script:
            while now < when - 1e-9:  # the daemon's ticks until the agent's next step
                clock.now = now
                seen.append((round(now - START, 1), tick(daemon).reason))
                now = round(now + 0.1, 6)
            clock.now = when
            agent.working_on = working
            if dispatched is not None:
                (decision,) = agent_dispatch(daemon, settings, dispatched, -0.1 * dispatched, agent)
                seen.append((round(when - START, 1), decision.reason))
    followed = [reason for when, reason in seen if when >= 0.8]  # from the first dispatch on
    assert followed and all(r.startswith("schedule ") and "not valid" not in r for r in followed)
    by_time = dict(seen)  # the last word at each tenth of a second from START
    assert (
        by_time[7.5] == by_time[8.4] == "schedule 37"
    )  # slot 39 until 38's dispatch (before: the safe state)
    assert by_time[8.5] == by_time[10.0] == by_time[11.8] == "schedule 38"  # behind: through 39's work
    assert by_time[11.9] == "schedule 39"  # the day's last, dispatched 1.9 s after its end


def test_a_plan_past_its_slots_is_bridged_only_while_the_agent_works_on_its_interval_or_the_next(
    tmp_path: Path,
) -> None:
    """Interval 7's plan (dispatched in its slot) past the end of 8: followed while the agent is on 7 or 8, up
    to four intervals and 30 s from its dispatch; never once it moved on to 9 (8 failed before its dispatch: a
    live controller's schedule, else the safe state, as by the clock alone), nor after its day ended, nor past
    the bridge's end."""
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path)
    with edge(tmp_path, clock, {"schedule_timeout_s": 60.0}) as daemon:
        agent = stand_in(daemon, settings, working=7)
        clock.now = START + 60
        agent_dispatch(daemon, settings, 7, -2.0, agent)
        bridge_end = START + 60 + R16_S
        seen = []
        for now, working in ((NEXT_END + 1, 7), (NEXT_END + 1, 8), (bridge_end - START - 1, 8),
                             (bridge_end - START, 8), (NEXT_END + 1, 9), (NEXT_END + 1, None)):  # fmt: skip
            clock.now, agent.working_on = START + now, working
            decision = tick(daemon)
            current = daemon.current_schedule()
            seen.append((working, decision.reason, None if current is None else current.valid_until))
        assert seen == [
            (7, "schedule 7", bridge_end),  # its own interval's DSO answer came late: the latest plan
            (8, "schedule 7", bridge_end),  # the next one's dispatch is late (E22's gap)
            (8, "schedule 7", bridge_end),
            (8, "schedule 7 not valid now", START + NEXT_END),  # a live agent stuck on 8: not for ever
            (9, "schedule 7 not valid now", START + NEXT_END),  # interval 8 failed: the clock's rule
            (None, "schedule 7 not valid now", START + NEXT_END),  # its day is over
        ]
        assert daemon.schedule_at is None  # the bridge never touched the controller's silence timer
        clock.now, agent.working_on = START + NEXT_END + 1, 9  # 8 failed, and a live controller speaks
        send(daemon, message(20, clock.now, clock.now + 600, power_w=1500.0))
        assert tick(daemon).reason == "schedule 20"


def test_the_days_last_interval_dispatched_after_its_end_is_followed_and_held_while_the_agent_is_on_it(
    tmp_path: Path,
) -> None:
    """Behind its slots on the day's last interval: dispatched 5 s after its end while the agent works on it,
    it is followed and held in full as any interval dispatched behind its slot (PLAN_CONFIRMED, what a
    meterless MG states by: before, the safe state and False); once the agent is done with its day (settle_day,
    the uplift stage) the plan is not followed."""
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path, intervals=1)
    with edge(tmp_path, clock) as daemon:
        clock.now = START + INTERVAL_S + 5
        agent = stand_in(daemon, settings, working=7)
        (decision,) = agent_dispatch(daemon, settings, 7, -2.0, agent)
        assert (decision.mode, decision.reason) == ("schedule", "schedule 7")
        assert writes(decision) == {"bat1.power_w": -2000.0} and agent.held is True
        clock.now += 30  # its DSO verdict and settle
        assert tick(daemon).reason == "schedule 7"
        agent.working_on = None  # its loop ended: settle_day
        decision = tick(daemon)
        assert (decision.mode, decision.reason) == ("safe", "schedule 7 not valid now")
        assert writes(decision) == {"bat1.power_w": 0.0}


def test_the_days_last_interval_dispatched_after_its_end_by_an_agent_that_says_nothing_is_not_followed(
    tmp_path: Path,
) -> None:
    """By the clock alone (an agent that does not say what it works on) the day's last interval's plan ends
    with its slot: dispatched after it, its plan drives nothing (the safe state here), and the dispatch does not
    say it was held in full, though the safe setpoint it wrote was confirmed."""
    clock = ManualClock(START, wall_offset=0.0)
    settings = market(tmp_path, intervals=1)
    with edge(tmp_path, clock) as daemon:
        clock.now = START + INTERVAL_S + 5
        agent = stand_in(daemon, settings)
        (decision,) = agent_dispatch(daemon, settings, 7, -2.0, agent)
        assert (decision.mode, decision.reason) == ("safe", "schedule 7 not valid now")
        assert agent.held is False


def test_the_plan_needs_the_daemons_market_section(tmp_path: Path) -> None:
    """The plan is timed by the market's slots: a daemon without the market section its agent trades by (or
    with another interval) is refused plainly, not given some validity."""
    clock = ManualClock(START, wall_offset=0.0)
    with edge(tmp_path, clock) as daemon:
        mg: Any = SimpleNamespace(pv=[], intervals=SCENARIO_INTERVALS)
        with pytest.raises(ValueError, match="market section"):
            agent_dispatch_module.plan_schedule(daemon, mg, INTERVAL_S, 7, plan(-2.0))
        with_market(daemon, market(tmp_path))
        with pytest.raises(ValueError, match="market section"):
            agent_dispatch_module.plan_schedule(daemon, mg, 60.0, 7, plan(-2.0))


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.0, 2e9),  # t0
    st.floats(0.5, 3600.0),  # interval_s
    st.integers(0, 90),  # first_interval
    st.one_of(st.none(), st.integers(1, 96)),  # market.intervals
    st.integers(0, 120),  # t past first_interval
    st.floats(0.001, 0.999),  # the dispatch's place in its slot (off its bounds: float rounding)
    st.integers(0, 3),  # slots behind
)
def test_no_plan_outlives_its_next_interval_nor_the_day_by_the_clock_and_its_bridge_is_bounded(
    t0: float, interval_s: float, first: int, intervals: int | None, k: int, at: float, behind: int
) -> None:
    """By the clock, interval t's plan covers the rest of t and, unless t is the day's last, all of t + 1, and
    ends by then, wherever it was dispatched; its bridge (followed while the agent works on t or t + 1) ends
    four intervals and 30 s from the dispatch."""
    s = MarketSettings.model_validate(
        {"scenario": "s.yaml", "anonym_key_file": "a.key", "t0": t0, "interval_s": interval_s,
         "first_interval": first, "intervals": intervals}
    )  # fmt: skip
    day = 96
    last = day - 1 if intervals is None else min(day - 1, first + intervals - 1)
    t = first + k
    if t > last:
        return

    def start(j: int) -> float:
        return t0 + (j - first) * interval_s

    wall = start(t) + (at + behind) * interval_s
    until = plan_valid_until(s, day, t)
    if t == last:
        assert until == start(t + 1)  # never past the day
    else:
        assert until == start(t + 2)
        if behind == 0:
            assert until - wall >= interval_s  # all of the next interval covered
    assert bridge_until(s, wall) == wall + 4 * interval_s + 30  # d926202's bound


# --- the agent's task -----------------------------------------------------------------------------------------


class Agent:
    """A trading agent that dispatches interval 7's plan (through the trader's own `_dispatch`, one minute into
    its slot; the day's last when `last`) and then raises, or returns (its day done)."""

    def __init__(self, daemon: EdgeDaemon, tmp_path: Path, raises: bool, last: bool = False) -> None:
        self.daemon, self.tmp_path, self.raises, self.last = daemon, tmp_path, raises, last
        self.followed: list[str] = []
        self.task: asyncio.Task[Any] | None = None

    async def run(self) -> None:
        self.task = asyncio.current_task()
        wall = self.daemon.clock.wall()
        settings = MarketSettings.model_validate(
            {"scenario": str(self.tmp_path / "s.yaml"), "anonym_key_file": str(self.tmp_path / "a.key"),
             "t0": wall - 60, "interval_s": INTERVAL_S, "first_interval": FIRST,
             "intervals": 1 if self.last else None}
        )  # fmt: skip
        with_market(self.daemon, settings)
        # on interval 7 while it runs (so its plan would be bridged: only the task's death ends it when it raises);
        # its day done, on none, as the trader's loop leaves it
        agent = SimpleNamespace(
            d=self.daemon, mg=SimpleNamespace(pv=[], intervals=96), s=settings, working_on=7
        )
        await MarketAgent._dispatch(agent, 7, plan(-2.0))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        self.followed.append(dispatching(self.daemon))
        if self.raises:
            raise KeyError("a bug mid-interval")
        agent.working_on = None

    def status(self) -> dict[str, Any]:
        return {}


class ShiftedClock(SystemClock):
    """The system clock with a wall the test moves on (the daemon's loops sleep in real time)."""

    shift = 0.0

    def wall(self) -> float:
        return time.time() + self.shift


def settings_for(tmp_path: Path) -> EdgeSettings:
    return EdgeSettings.model_validate({
        "node_id": "mgmc-test", "mg": "mg1", "data_dir": str(tmp_path / "data"),
        "broker": {"host": "127.0.0.1", "port": 9}, "dispatch": {"enabled": False},
    })  # fmt: skip


def test_the_agents_plan_is_not_followed_once_its_task_died(tmp_path: Path) -> None:
    async def main() -> tuple[EdgeDaemon, Agent]:
        daemon = EdgeDaemon(settings_for(tmp_path))
        agent = Agent(daemon, tmp_path, raises=True)
        daemon.agent = agent  # type: ignore[assignment]
        with pytest.raises(TaskDied):
            await asyncio.wait_for(daemon.run(install_signals=False), 10)
        return daemon, agent

    daemon, agent = asyncio.run(main())
    assert agent.followed == ["schedule 7"]  # followed while its task lived
    plan_7 = daemon.schedules.plan
    assert plan_7 is not None and plan_7.valid_at(daemon.clock.wall())  # still valid by its own times
    assert daemon.current_schedule() is None and dispatching(daemon) == "no schedule"


def test_the_plan_of_an_agent_whose_day_ended_is_followed_until_the_last_intervals_end(
    tmp_path: Path,
) -> None:
    """Its task returned, no death (`task_watch`): the last interval's plan runs on as the agent left it until
    that interval's end, then the safe state (a live controller's schedule, were there one: the R17 test)."""

    async def returned(agent: Agent) -> None:
        while agent.task is None or not agent.task.done():
            await asyncio.sleep(0.01)

    async def main() -> tuple[Agent, list[str]]:
        clock = ShiftedClock()
        daemon = EdgeDaemon(settings_for(tmp_path), clock)
        agent = Agent(daemon, tmp_path, raises=False, last=True)
        daemon.agent = agent  # type: ignore[assignment]
        run = asyncio.create_task(daemon.run(install_signals=False))
        await asyncio.wait_for(returned(agent), 10)  # its task returned while the daemon runs on
        assert not run.done()
        after = [dispatching(daemon)]  # a minute into its 15-minute slot
        clock.shift = INTERVAL_S - 60  # the last interval ended
        after.append(dispatching(daemon))
        daemon.stop()
        await asyncio.wait_for(run, 10)
        return agent, after

    agent, after = asyncio.run(main())
    assert agent.followed == ["schedule 7"] and after == ["schedule 7", "schedule 7 not valid now"]


# --- any order of both sources' events ------------------------------------------------------------------------

TIMEOUT_S = 60.0
events = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0.0, 200.0)),
        # a controller's message: its start and length relative to now
        st.tuples(st.just("controller"), st.floats(-100.0, 100.0), st.floats(1.0, 300.0)),
        # the agent's plan: its start and length relative to now, and how far its bridge reaches past its end
        st.tuples(
            st.just("agent"),
            st.floats(-10.0, 10.0),
            st.floats(1.0, 300.0),
            st.one_of(st.none(), st.floats(-50.0, 400.0)),
        ),
        # the interval the agent says it works on, relative to its last plan's (None: none)
        st.tuples(st.just("working"), st.one_of(st.none(), st.integers(-1, 2))),
        st.tuples(st.just("agent dies")),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(events)
# the bridge's branches for sure: followed past its end on its interval and the next, then not once on a later one
@example([("agent", 0.0, 10.0, 100.0), ("working", 0), ("advance", 20.0), ("working", 1), ("working", 2)])
@example([("controller", 0.0, 200.0), ("agent", 0.0, 10.0, 100.0), ("working", 1), ("advance", 20.0),
          ("agent dies",)])  # fmt: skip
def test_the_agents_plans_never_touch_the_controllers_schedules_and_win_exactly_while_valid_and_alive(
    script: list[tuple[Any, ...]],
) -> None:
    """Beside a twin holder fed the controller's messages only: the controller's schedules, their silence timer
    and the intake's counts are the twin's at every step, and the holder follows the agent's plan exactly while
    it is valid and the agent lives, bridged to its bridge's end while the agent works on its interval or the
    next, else the twin's schedule (or, with none, the plan that is not valid now)."""
    clock = ManualClock(START, wall_offset=0.0)
    mixed, twin = ScheduleHolder(clock, TIMEOUT_S), ScheduleHolder(clock, TIMEOUT_S)
    alive, working = [True], [None]
    mixed.agent_alive = lambda: alive[0]
    plan_: Schedule | None = None
    bridge: float | None = None
    for n, event in enumerate(script):
        if event[0] == "advance":
            clock.now += event[1]
        elif event[0] == "controller":
            payload = message(n, clock.now + event[1], clock.now + event[1] + event[2])
            mixed.take(payload)
            twin.take(payload)
        elif event[0] == "agent":
            plan_ = Schedule(1000 + n, clock.now + event[1], clock.now + event[1] + event[2], {})
            bridge = None if event[3] is None else plan_.valid_until + event[3]
            mixed.set_plan(plan_, bridge, lambda: working[0])
        elif event[0] == "working":
            working[0] = None if event[1] is None or plan_ is None else plan_.interval + event[1]
        else:
            alive[0] = False
        current, controllers = mixed.current(), twin.current()
        assert mixed.schedule == twin.schedule and mixed.ahead == twin.ahead
        assert mixed.schedule_at == twin.schedule_at and mixed.intake.ignored == twin.intake.ignored
        ruling: Schedule | None = None
        if plan_ is not None and alive[0]:
            on_it = working[0] is not None and working[0] - plan_.interval in (0, 1)
            if plan_.valid_at(clock.now):
                ruling = plan_
            elif bridge is not None and plan_.valid_until <= clock.now < bridge and on_it:
                ruling = replace(plan_, valid_until=bridge)  # followed past its end: valid to its bridge's
        assert mixed.in_force == (ruling or mixed.schedule)  # what /metrics shows
        assert mixed.plan_rules() is (ruling is not None)
        if ruling is not None:
            assert current == ruling and current is not None and current.valid_at(clock.now)
        elif controllers is not None or not alive[0]:
            assert current == controllers
        else:
            assert current is plan_


def test_one_script_follows_the_controller_then_the_plan_then_the_run_out_plan_then_nothing() -> None:
    """Each branch of the property's rule in one fixed script: the property passes on none vacuously."""
    clock = ManualClock(START, wall_offset=0.0)
    holder = ScheduleHolder(clock, TIMEOUT_S)
    alive = [True]
    holder.agent_alive = lambda: alive[0]
    holder.take(message(1, START, START + 1000.0))
    plan_ = Schedule(2, START + 5.0, START + 100.0, {})
    holder.set_plan(plan_)
    seen = [holder.current()]  # the plan has not started: the controller's
    clock.now += 10
    seen.append(holder.current())  # the plan
    clock.now += 100
    seen.append(holder.current())  # the plan ran out: the controller's, quiet for 110 s: the plan (not valid)
    alive[0] = False
    seen.append(holder.current())
    assert [None if s is None else s.interval for s in seen] == [1, 2, 2, None]
    assert not plan_.valid_at(clock.now)
