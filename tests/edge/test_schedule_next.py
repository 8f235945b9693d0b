"""A schedule that arrives before its start waits for it; the schedule in force runs on until then (E19).

Before, an early schedule (the next interval's, sent ahead as any controller does) replaced the one in force,
and dispatch (`decide` at the wall clock) went to the devices' safe state until the new one started. Now the
daemon holds it as the next schedule and puts it in force at its start exactly, logging "schedule N in force".
A real `EdgeDaemon` on a `ManualClock`, as tests/edge/test_schedule_late.py drives it.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_schedule_late import ignored_lines

from peergrid_edge.clock import ManualClock
from peergrid_edge.config import EdgeSettings
from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.dispatch import Schedule, decide
from peergrid_edge.schedule_holder import log as holder_log
from peergrid_edge.schedule_intake import AHEAD_MAX, REASONS, ScheduleIntake

TIMEOUT_S = 60.0
START = 1_000.0  # the clock's wall time at the start (wall offset 0: its steps are exact floats)


def message(interval: int, valid_from: float, valid_until: float, limit_w: float = 5000.0) -> bytes:
    body: dict[str, Any] = {
        "interval": interval,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "setpoints": {"pv1": {"limit_w": limit_w}},
    }
    return json.dumps(body).encode()


@contextmanager
def edge(data_dir: Path, clock: ManualClock, timeout_s: float = TIMEOUT_S) -> Iterator[EdgeDaemon]:
    dispatch = {"schedule_timeout_s": timeout_s}
    settings = EdgeSettings.model_validate(
        {"node_id": "n", "mg": "mg1", "data_dir": str(data_dir), "dispatch": dispatch}
    )
    daemon = EdgeDaemon(settings, clock)
    try:
        yield daemon
    finally:
        daemon.store.close()


def send(daemon: EdgeDaemon, payload: bytes) -> None:
    daemon._on_schedule(daemon.schedule_topic, payload)


def dispatching(daemon: EdgeDaemon) -> str:
    """The next dispatch tick's reason: 'schedule <interval>' while it follows one, else why it is safe."""
    return decide({}, daemon.current_schedule(), daemon.clock.wall(), 1.0).reason


def counts(**reasons: int) -> dict[str, int]:
    return {reason: reasons.get(reason, 0) for reason in REASONS}


def switches(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The holder's "schedule N in force" lines: its logger only, as caplog's handler also catches a stray
    thread's record from an earlier test in the same worker."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == holder_log.name and r.getMessage().endswith("in force")
    ]


def test_the_schedule_in_force_runs_on_while_the_next_waits_and_the_switch_is_at_its_start_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    with edge(tmp_path, clock) as daemon, caplog.at_level(logging.INFO, logger="peergrid.edge"):
        send(daemon, message(5, 900.0, 1100.0))
        clock.now = 1050.0
        send(daemon, message(6, 1100.0, 1200.0, limit_w=3000.0))  # the next interval's, 50 s early
        assert daemon.schedule is not None and daemon.schedule.interval == 5
        assert daemon.next_schedule is not None and daemon.next_schedule.interval == 6
        assert daemon.schedule_at == 1050.0  # the early message is a sign of the controller's life
        assert dispatching(daemon) == "schedule 5" and switches(caplog) == []
        clock.now = math.nextafter(1100.0, -math.inf)  # the last instant of schedule 5
        assert dispatching(daemon) == "schedule 5" and daemon.next_schedule is not None
        clock.now = (
            1100.0  # schedule 5's end is schedule 6's start: no instant between them in the safe state
        )
        assert dispatching(daemon) == "schedule 6"
        assert daemon.next_schedule is None and daemon.schedule is not None
        assert daemon.schedule.setpoints == {"pv1": {"limit_w": 3000.0}}
        assert dispatching(daemon) == "schedule 6"
        assert switches(caplog) == ["schedule 6 in force"]  # once, at the switch
        metric = [
            ln for ln in daemon.metrics_text().splitlines() if ln.startswith("peergrid_edge_market_schedule")
        ]
        assert metric == ["peergrid_edge_market_schedule_interval 6"]
        assert daemon.schedule_intake.ignored_total == 0


def test_the_metrics_show_the_schedule_in_force_not_the_one_waiting_and_switch_without_a_dispatch_tick(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    with edge(tmp_path, clock) as daemon:
        send(daemon, message(5, 900.0, 1100.0))
        send(daemon, message(6, 1100.0, 1200.0))

        def shown() -> list[str]:
            return [
                ln
                for ln in daemon.metrics_text().splitlines()
                if ln.startswith("peergrid_edge_market_schedule")
            ]

        assert shown() == ["peergrid_edge_market_schedule_interval 5"]
        clock.now = 1100.0  # no dispatch tick ran: a scrape at the start already shows the next in force
        assert shown() == ["peergrid_edge_market_schedule_interval 6"]


def test_a_next_held_is_replaced_by_its_revision_a_later_one_waits_after_it_an_earlier_one_is_stale(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    with edge(tmp_path, clock, timeout_s=1000.0) as daemon:  # no quiet here
        send(daemon, message(5, 900.0, 1100.0))
        send(daemon, message(7, 1200.0, 1300.0))
        send(daemon, message(7, 1200.0, 1300.0, limit_w=1000.0))  # a revision: the same start
        assert daemon.next_schedule is not None
        assert daemon.next_schedule.setpoints == {"pv1": {"limit_w": 1000.0}}
        with caplog.at_level(logging.WARNING, logger="peergrid.edge.daemon"):
            send(daemon, message(6, 1100.0, 1200.0))  # starts after now, before the next held: stale
        assert ignored_lines(caplog) == [
            "ignored a schedule: stale: schedule 6 starts at 1100.000, before schedule 7 (from 1200.000), which "
            "has not ended"
        ]
        assert daemon.schedule_intake.ignored == counts(stale=1)
        assert daemon.next_schedule.interval == 7 and dispatching(daemon) == "schedule 5"
        # later still: it waits after the next held (E20; with one slot it replaced it and interval 7 was lost)
        send(daemon, message(8, 1300.0, 1400.0))
        assert [s.interval for s in daemon.schedules.ahead] == [7, 8]
        # a revision of the schedule in force is taken in force and leaves those held alone
        send(daemon, message(5, 900.0, 1100.0, limit_w=2000.0))
        assert daemon.schedule is not None and daemon.schedule.setpoints == {"pv1": {"limit_w": 2000.0}}
        assert [s.interval for s in daemon.schedules.ahead] == [7, 8]
        clock.now = 1200.0
        assert dispatching(daemon) == "schedule 7" and daemon.schedule.setpoints == {
            "pv1": {"limit_w": 1000.0}
        }
        clock.now = 1300.0
        assert dispatching(daemon) == "schedule 8" and daemon.schedules.ahead == ()
        assert daemon.schedule_intake.ignored == counts(stale=1)


def test_a_revision_arriving_after_the_next_started_but_before_any_tick_stays_in_force(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The switch is made before a message is judged, not only at a dispatch tick: the next held, once started,
    must not later replace the revision of itself that came in between."""
    clock = ManualClock(START, wall_offset=0.0)
    with edge(tmp_path, clock) as daemon, caplog.at_level(logging.INFO, logger="peergrid.edge"):
        send(daemon, message(6, 1100.0, 1200.0))  # nothing in force yet: held
        assert dispatching(daemon) == "no schedule" and daemon.next_schedule is not None
        clock.now = 1110.0
        send(daemon, message(6, 1100.0, 1200.0, limit_w=1500.0))  # no tick since its start; a revision
        assert switches(caplog) == ["schedule 6 in force"] and daemon.next_schedule is None
        assert dispatching(daemon) == "schedule 6"
        assert daemon.schedule is not None and daemon.schedule.setpoints == {"pv1": {"limit_w": 1500.0}}


def test_the_controller_going_quiet_with_a_next_held_goes_safe_and_its_next_message_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    with edge(tmp_path, clock) as daemon, caplog.at_level(logging.INFO, logger="peergrid.edge"):
        send(daemon, message(5, 990.0, 1300.0))
        clock.now = 1010.0
        send(daemon, message(6, 1100.0, 1400.0))  # the last word before the controller goes quiet
        clock.now = 1010.0 + TIMEOUT_S  # 70 s after schedule 5 came, 60 after the next: not quiet yet
        assert dispatching(daemon) == "schedule 5"
        clock.now = math.nextafter(1010.0 + TIMEOUT_S, math.inf)
        assert dispatching(daemon) == "no schedule"  # quiet: safe although schedule 5 is valid
        clock.now = 1100.0
        assert dispatching(daemon) == "no schedule"  # the switch is made, the quiet still holds
        assert daemon.next_schedule is None and daemon.schedule is not None and daemon.schedule.interval == 6
        assert switches(caplog) == ["schedule 6 in force"]
        clock.now = 1120.0
        send(daemon, message(6, 1100.0, 1400.0))  # the controller speaks again: a replay of the one in force
        assert dispatching(daemon) == "schedule 6" and daemon.schedule_at == 1120.0


def test_a_far_ahead_next_keeps_the_next_correct_one_out_only_while_its_controller_is_not_quiet(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    with edge(tmp_path, clock) as daemon:
        send(daemon, message(5, 990.0, 2000.0))
        send(daemon, message(9, 4e9, 4e9 + 900))  # a wrong clock's schedule, far ahead
        clock.now = 1030.0
        send(daemon, message(6, 1100.0, 1200.0))  # before the far one: stale while it is fresh
        assert daemon.schedule_intake.ignored == counts(stale=1)
        send(daemon, message(5, 990.0, 2000.0))  # the controller keeps its current one alive meanwhile
        clock.now = 1000.0 + TIMEOUT_S + 1.0  # the far one has waited longer than the silence timeout
        send(daemon, message(6, 1100.0, 1200.0))
        assert daemon.next_schedule is not None and daemon.next_schedule.interval == 6
        assert daemon.schedule_intake.ignored == counts(stale=1) and dispatching(daemon) == "schedule 5"
        clock.now = 1100.0
        assert dispatching(daemon) == "schedule 6"


def test_a_restart_holds_nothing_until_the_controller_sends_again(tmp_path: Path) -> None:
    """Nothing of the schedules is persisted: a restarted daemon is in the safe state until a message comes,
    as it always was; the next held before the restart is lost with the one in force, and a resend of it
    waits for its start again."""
    clock = ManualClock(START, wall_offset=0.0)
    with edge(tmp_path, clock) as daemon:
        send(daemon, message(5, 900.0, 1100.0))
        send(daemon, message(6, 1100.0, 1200.0))
        assert dispatching(daemon) == "schedule 5"
    clock.now = 1050.0
    with edge(tmp_path, clock) as restarted:
        assert restarted.schedule is None and restarted.next_schedule is None
        assert dispatching(restarted) == "no schedule"
        send(restarted, message(6, 1100.0, 1200.0))  # the controller resends the next one early
        assert dispatching(restarted) == "no schedule" and restarted.next_schedule is not None
        send(restarted, message(5, 900.0, 1100.0))  # and the current one
        assert dispatching(restarted) == "schedule 5"
        clock.now = 1100.0
        assert dispatching(restarted) == "schedule 6"


INTERVAL_S = 100.0
LEAD_MAX = (AHEAD_MAX - 1) * INTERVAL_S  # the farthest ahead a schedule is sent: AHEAD_MAX are held at most


@settings(max_examples=40, deadline=None)
@given(
    leads=st.lists(st.floats(0.0, LEAD_MAX, exclude_max=True), min_size=1, max_size=6),
    resend=st.lists(st.booleans(), min_size=6, max_size=6),
    ticks=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=20),
)
def test_a_controller_sending_each_schedule_early_never_leaves_a_gap(
    leads: list[float], resend: list[bool], ticks: list[float]
) -> None:
    """Schedule k covers [k*L, (k+1)*L) and is sent anywhere up to AHEAD_MAX - 1 intervals early, in start
    order (some again later, a revision): at every instant from the first one's start to the last one's end
    the schedule in force is the one valid then. With E19's one slot, k+1 sent before k started was lost."""
    n = len(leads)
    firsts, sent = [], -math.inf
    for k, lead in enumerate(leads, 1):
        sent = max(sent, k * INTERVAL_S - lead)  # a controller sends its schedules in start order
        firsts.append((sent, k))
    again = [((at + k * INTERVAL_S) / 2, k) for at, k in firsts if resend[k - 1]]
    sends = sorted(firsts + again)
    end = (n + 1) * INTERVAL_S  # the last one's end (excluded: a tick rounded onto it is dropped)
    checks = [at for t in ticks if (at := INTERVAL_S + t * n * INTERVAL_S) < end]
    checks += [float(k) * INTERVAL_S for k in range(1, n + 1)]  # every clock edge
    events = sorted([(at, 0, k) for at, k in sends] + [(at, 1, 0) for at in checks])
    with tempfile.TemporaryDirectory() as data_dir:
        clock = ManualClock(0.0, wall_offset=0.0)
        # it speaks at least once in AHEAD_MAX + 1 intervals: never quiet here
        with edge(Path(data_dir), clock, timeout_s=(AHEAD_MAX + 1) * INTERVAL_S) as daemon:
            for at, kind, k in events:
                clock.now = at
                if kind == 0:
                    send(daemon, message(k, k * INTERVAL_S, (k + 1) * INTERVAL_S))
                    continue
                in_force = daemon.current_schedule()
                assert in_force is not None and in_force.valid_at(at)
                assert in_force.interval == int(at // INTERVAL_S)
                held = [s.valid_from for s in daemon.schedules.ahead]
                assert held == sorted(set(held)) and all(start > at for start in held)
            assert daemon.schedule_intake.ignored_total == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 50.0), st.floats(-100.0, 300.0), st.floats(1.0, 200.0)),
        min_size=1,
        max_size=8,
    )
)
def test_at_any_time_the_schedule_in_force_has_started_and_a_next_held_has_not(
    messages: list[tuple[float, float, float]],
) -> None:
    """Any messages at any times, in any order of their windows (late, stale, early, revisions): the daemon
    never puts in force a schedule before its start and never holds as next one that has started."""
    with tempfile.TemporaryDirectory() as data_dir:
        clock = ManualClock(0.0, wall_offset=0.0)
        with edge(Path(data_dir), clock) as daemon:
            for i, (step, start, length) in enumerate(messages):
                clock.now += step
                send(daemon, message(i, start, start + length))
                in_force, held = daemon.current_schedule(), daemon.next_schedule
                assert in_force is None or in_force.valid_from <= clock.wall()
                assert held is None or held.valid_from > clock.wall()


TIMES = st.floats(-1e6, 1e6, allow_nan=False)


OFFSETS = st.floats(1e-3, 1e3)  # after now: a schedule held ahead has not started


def at(which: int, starts: list[float], now: float) -> float:
    """The start of the `which`th held (-1: one second after the last one held, or after now)."""
    if which == -1:
        return max([now, *starts]) + 1.0
    return starts[which] if which < len(starts) else now


@given(
    TIMES,
    st.lists(st.tuples(OFFSETS, st.floats(1.0, 1e3), st.booleans()), max_size=AHEAD_MAX + 1),
    # where it starts: from now, or at one held's start (-1: just after the last one held)
    st.floats(-1e3, 1e3) | st.integers(-1, AHEAD_MAX),
    st.floats(1.0, 1e3),
)
def test_those_held_ahead_order_only_early_schedules_and_only_while_they_are_fresh(
    now: float, held: list[tuple[float, float, bool]], where: float | int, length: float
) -> None:
    """Judged with schedules held ahead (`ahead`, each with whether it is quiet): a schedule starting by now is
    judged as without them; an early one is refused only as stale (a fresh one held starts after it, none with
    its start) or as ahead_full (AHEAD_MAX held start before it, none with its start); else it is taken."""
    by_start = {now + offset: (span, quiet) for offset, span, quiet in held}
    starts = sorted(s for s in by_start if s > now)  # held ahead: after now, one per start
    ahead = [(Schedule(i, s, s + by_start[s][0], {}), by_start[s][1]) for i, s in enumerate(starts)]
    start = now + where if isinstance(where, float) else at(where, starts, now)
    end = start + length
    if not start < end:
        return  # a far time and a short length round to one float: malformed, test_schedule_late covers it
    with_ahead, without = ScheduleIntake(), ScheduleIntake()
    taken = with_ahead.take(message(99, start, end), now, None, False, ahead)
    if start <= now:
        assert (taken is None) == (without.take(message(99, start, end), now) is None)
        assert with_ahead.ignored == without.ignored
        return
    same = start in starts
    fresh_later = [s for s, quiet in ahead if s.valid_from > start and not quiet]
    before = [s for s in starts if s < start]
    if taken is not None:
        assert same or (not fresh_later and len(before) < AHEAD_MAX)
    elif fresh_later and not same:
        assert with_ahead.ignored == counts(stale=1)
    else:
        assert not same and len(before) >= AHEAD_MAX and with_ahead.ignored == counts(ahead_full=1)
