"""A late or replayed schedule message never throws a running MGMC out of the schedule it holds (E16).

Before, the daemon took any well-formed schedule: one already over when it arrived (a late or replayed message)
replaced the good one and dispatch went to the safe state. Now `schedule_intake` ignores, logs once and counts
a schedule whose end is not after the daemon's wall clock (`expired`) and one that starts before the schedule
held while that has not ended (`stale`: older than it; a message's start is its age, then its optional seq:
test_schedule_replay.py).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_edge.clock import ManualClock
from peergrid_edge.config import EdgeSettings
from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.dispatch import Schedule, decide
from peergrid_edge.schedule_intake import REASONS, ScheduleIntake, lateness

SETPOINTS = {"pv1": {"limit_w": 5000.0}}
HELD = Schedule(7, 100.0, 200.0, SETPOINTS)  # in force from 100 to 200 (wall s)


def message(interval: int, valid_from: float, valid_until: float) -> bytes:
    body = {
        "interval": interval,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "setpoints": SETPOINTS,
    }
    return json.dumps(body).encode()


def counts(**reasons: int) -> dict[str, int]:
    return {reason: reasons.get(reason, 0) for reason in REASONS}


def ignored_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The daemon's "ignored a schedule" lines caplog caught: its handler also catches any other logger's
    warnings, e.g. a thread an earlier test in the same worker left behind (seen once in a full run)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "peergrid.edge.daemon" and r.getMessage().startswith("ignored a schedule")
    ]


def test_an_expired_schedule_is_ignored_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    intake = ScheduleIntake()
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.daemon"):
        assert intake.take(message(6, 20.0, 90.0), 150.0, HELD) is None
    assert intake.ignored == counts(expired=1)
    assert ignored_lines(caplog) == [
        "ignored a schedule: expired: schedule 6 ended at 90.000, 60.000 s before now (150.000)"
    ]


@pytest.mark.parametrize("held", [HELD, None])
def test_the_clock_edge_a_schedule_ending_now_is_expired_one_ending_after_it_is_taken(
    held: Schedule | None,
) -> None:
    now = 150.0
    intake = ScheduleIntake()
    assert intake.take(message(8, 120.0, now), now, held) is None  # valid_at excludes its end: never valid
    assert intake.ignored == counts(expired=1)
    just_after = math.nextafter(now, math.inf)
    taken = intake.take(message(8, 120.0, just_after), now, held)
    assert taken is not None and taken.valid_at(now) and intake.ignored == counts(expired=1)
    starts_now = intake.take(message(9, now, 300.0), now, held)  # its start is in it
    assert starts_now is not None and starts_now.valid_at(now)


def test_a_schedule_older_than_the_one_held_is_stale_even_one_valid_now(
    caplog: pytest.LogCaptureFixture,
) -> None:
    intake = ScheduleIntake()
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.daemon"):
        assert intake.take(message(6, 90.0, 300.0), 150.0, HELD) is None  # a replay of the schedule before
    assert intake.ignored == counts(stale=1)
    assert ignored_lines(caplog) == [
        "ignored a schedule: stale: schedule 6 starts at 90.000, before schedule 7 (from 100.000), which has "
        "not ended"
    ]


def test_a_replay_that_starts_in_the_future_but_before_a_future_schedule_held_is_stale() -> None:
    ahead = Schedule(9, 400.0, 500.0, SETPOINTS)  # sent early: starts after now
    intake = ScheduleIntake()
    assert intake.take(message(8, 300.0, 400.0), 150.0, ahead) is None
    assert intake.ignored == counts(stale=1)


def test_a_revision_of_the_schedule_held_and_the_next_ones_are_taken() -> None:
    intake = ScheduleIntake()
    revision = intake.take(message(7, 100.0, 200.0), 150.0, HELD)  # the same window: starts with it
    following = intake.take(message(8, 160.0, 260.0), 150.0, HELD)  # starts after it, now or ahead
    ahead = intake.take(message(9, 200.0, 300.0), 150.0, HELD)
    assert [s.interval for s in (revision, following, ahead) if s is not None] == [7, 8, 9]
    assert intake.ignored_total == 0


def test_once_the_schedule_held_has_ended_it_orders_nothing() -> None:
    intake = ScheduleIntake()
    taken = intake.take(message(6, 90.0, 300.0), 200.0, HELD)  # HELD ended at 200: nothing in force
    assert taken is not None and taken.valid_at(200.0) and intake.ignored_total == 0


def test_a_far_ahead_schedule_from_a_quiet_controller_keeps_no_later_one_out() -> None:
    """One schedule dated far ahead (a wrong clock) would hold every correct one out as stale until its start;
    it does so only while its controller is not quiet (`schedule_timeout_s`), not for good."""
    wrong = Schedule(7, 4e9, 4e9 + 900, SETPOINTS)
    intake = ScheduleIntake()
    assert intake.take(message(8, 150.0, 250.0), 160.0, wrong, quiet=False) is None
    taken = intake.take(message(8, 150.0, 250.0), 160.0, wrong, quiet=True)
    assert taken is not None and intake.ignored == counts(stale=1)
    # a schedule held that has started orders what comes after it quiet or not: a replay is still one
    assert lateness(Schedule(6, 90.0, 300.0, SETPOINTS), 150.0, HELD, quiet=True) is not None


def test_a_malformed_message_counts_by_its_malformation_not_its_time() -> None:
    intake = ScheduleIntake()
    expired_and_bad = json.dumps({"interval": 1, "valid_from": 1.0, "valid_until": 2.0, "setpoints": []})
    assert intake.take(expired_and_bad.encode(), 150.0, HELD) is None
    assert intake.ignored == counts(invalid=1)


TIMES = st.floats(-1e6, 1e6, allow_nan=False)


@given(TIMES, TIMES, TIMES, TIMES, TIMES, st.booleans(), st.booleans())
def test_a_schedule_taken_is_never_over_nor_older_than_one_held_in_force(
    a: float, b: float, c: float, d: float, now: float, has_held: bool, quiet: bool
) -> None:
    (start, end), (held_start, held_end) = sorted((a, b)), sorted((c, d))
    held = Schedule(1, held_start, held_end, SETPOINTS) if has_held and held_start < held_end else None
    intake = ScheduleIntake()
    taken = intake.take(message(2, start, end), now, held, quiet)
    assert intake.ignored_total == (taken is None)
    if start >= end:
        assert intake.ignored == counts(invalid=1)
        return
    if taken is None:
        [reason] = [r for r, n in intake.ignored.items() if n]
        assert (reason == "expired") == (end <= now)
        assert reason != "stale" or (held is not None and start < held.valid_from and now < held.valid_until)
        return
    assert taken.valid_until > now
    # in force (quiet or not), or not ended while its controller speaks: nothing older replaces it
    if held is not None and (held.valid_at(now) or (not quiet and now < held.valid_until)):
        assert taken.valid_from >= held.valid_from


def test_the_daemon_keeps_its_schedule_through_late_and_replayed_messages_and_takes_the_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    settings = EdgeSettings.model_validate(
        {"node_id": "n", "mg": "mg1", "data_dir": str(tmp_path), "dispatch": {"schedule_timeout_s": 60.0}}
    )
    daemon = EdgeDaemon(settings, clock)
    try:
        w = clock.wall()

        def dispatching() -> str:
            """The next dispatch tick's reason: 'schedule <interval>' while it follows the schedule held."""
            return decide({}, daemon.current_schedule(), clock.wall(), 1.0).reason

        daemon._on_schedule(daemon.schedule_topic, message(5, w - 10, w + 300))
        good, arrived = daemon.schedule, daemon.schedule_at
        assert good is not None and good.interval == 5 and dispatching() == "schedule 5"
        clock.now += 30.0
        w = clock.wall()
        with caplog.at_level(logging.WARNING, logger="peergrid.edge.daemon"):
            daemon._on_schedule(
                daemon.schedule_topic, message(4, w - 340, w - 40)
            )  # the interval before: late
            daemon._on_schedule(daemon.schedule_topic, message(4, w - 340, w))  # ends as it arrives
            daemon._on_schedule(
                daemon.schedule_topic, message(4, w - 50, w + 100)
            )  # older, still open: replayed
        assert (
            daemon.schedule is good and daemon.schedule_at == arrived
        )  # kept; no sign of the controller's life
        assert dispatching() == "schedule 5"
        assert [line.split(":")[1] for line in ignored_lines(caplog)] == [" expired", " expired", " stale"]
        assert daemon.schedule_intake.ignored == counts(expired=2, stale=1)
        lines = [
            line for line in daemon.metrics_text().splitlines() if line.startswith("peergrid_edge_schedules")
        ]
        assert lines == [
            'peergrid_edge_schedules_ignored_total{reason="ahead_full"} 0',
            'peergrid_edge_schedules_ignored_total{reason="expired"} 2',
            'peergrid_edge_schedules_ignored_total{reason="invalid"} 0',
            'peergrid_edge_schedules_ignored_total{reason="not_finite"} 0',
            'peergrid_edge_schedules_ignored_total{reason="not_json"} 0',
            'peergrid_edge_schedules_ignored_total{reason="replayed"} 0',
            'peergrid_edge_schedules_ignored_total{reason="stale"} 1',
        ]
        daemon._on_schedule(daemon.schedule_topic, message(6, w, w + 300))  # the next good one is taken
        assert daemon.schedule is not None and daemon.schedule.interval == 6
        assert daemon.schedule_at == clock.monotonic() and dispatching() == "schedule 6"
        assert daemon.schedule_intake.ignored_total == 3
    finally:
        daemon.store.close()
