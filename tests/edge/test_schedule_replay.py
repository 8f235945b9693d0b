"""A replay of a schedule held is no sign of its controller's life (E20).

Before, a message with the start of the schedule in force was always taken (a revision, or a resend) and
restarted the controller-silence timer, so a broker or an attacker on the bus replaying the last schedule kept
a Pi whose controller had died out of its safe state for as long as the replays came. A message may now carry
`seq`, an integer its controller makes larger with every message: one with the start of a schedule held (in
force or ahead) and a seq not larger than that one's is `replayed` (logged, counted, not taken, the timer left
alone). Messages without a seq keep the rule from before. The schedules held ahead are a small ordered queue
(`AHEAD_MAX`): the next one is no longer lost because the one after it came too.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_schedule_next import dispatching, edge, send

from peergrid_edge.clock import ManualClock
from peergrid_edge.dispatch import SEQ_MAX, Schedule, ScheduleError, parse_schedule
from peergrid_edge.schedule_holder import ScheduleHolder
from peergrid_edge.schedule_holder import log as holder_log
from peergrid_edge.schedule_intake import AHEAD_MAX, REASONS, ScheduleIntake
from peergrid_edge.schedule_intake import log as intake_log

TIMEOUT_S = 60.0
START = 1_000.0


def message(
    interval: int, valid_from: float, valid_until: float, seq: int | None, limit_w: float = 5000.0
) -> bytes:
    body: dict[str, Any] = {
        "interval": interval,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "setpoints": {"pv1": {"limit_w": limit_w}},
    }
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body).encode()


def counts(**reasons: int) -> dict[str, int]:
    return {reason: reasons.get(reason, 0) for reason in REASONS}


def logged(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """What the named logger said: caplog's handler also catches a stray thread's record from an earlier test."""
    return [r.getMessage() for r in caplog.records if r.name == name]


def holder(timeout_s: float = TIMEOUT_S) -> tuple[ScheduleHolder, ManualClock]:
    clock = ManualClock(START, wall_offset=0.0)  # wall == monotonic: the steps are exact floats
    return ScheduleHolder(clock, timeout_s), clock


# --- the wire: an optional seq -----------------------------------------------------------------------------


def test_a_seq_is_read_when_sent_and_none_when_not() -> None:
    assert parse_schedule(message(1, 0.0, 1.0, None)).seq is None
    assert parse_schedule(message(1, 0.0, 1.0, 0)).seq == 0
    assert parse_schedule(message(1, 0.0, 1.0, SEQ_MAX)).seq == SEQ_MAX == 2**63 - 1


@pytest.mark.parametrize("seq", [-1, SEQ_MAX + 1, 1.5, 3.0, "3", True, None, [1], {"n": 1}])
def test_a_seq_that_is_no_integer_in_range_is_refused_with_a_clear_error(seq: Any) -> None:
    body = json.loads(message(1, 0.0, 1.0, None))
    with pytest.raises(ScheduleError, match=r"seq must be an integer from 0 to 9223372036854775807"):
        parse_schedule(json.dumps({**body, "seq": seq}).encode())


# --- the intake's rule ---------------------------------------------------------------------------------------

HELD = Schedule(7, 100.0, 200.0, {"pv1": {"limit_w": 5000.0}}, seq=10)


def test_a_replay_of_the_schedule_in_force_is_ignored_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    intake = ScheduleIntake()
    with caplog.at_level(logging.WARNING, logger=intake_log.name):
        assert intake.take(message(7, 100.0, 200.0, 10), 150.0, HELD) is None  # the same message again
        assert intake.take(message(7, 100.0, 250.0, 9), 150.0, HELD) is None  # an older revision
    assert intake.ignored == counts(replayed=2)
    assert logged(caplog, intake_log.name) == [
        "ignored a schedule: replayed: schedule 7 (from 100.000) carries seq 10, not after seq 10 of schedule 7 "
        "held with that start",
        "ignored a schedule: replayed: schedule 7 (from 100.000) carries seq 9, not after seq 10 of schedule 7 "
        "held with that start",
    ]


@pytest.mark.parametrize(
    ("held_seq", "seq"),
    [(10, 11), (None, 3), (10, None), (None, None)],
    ids=["newer", "held-without", "sent-without", "neither"],
)
def test_a_newer_revision_is_taken_and_without_a_seq_on_either_side_the_rule_from_before_holds(
    held_seq: int | None, seq: int | None
) -> None:
    held = Schedule(7, 100.0, 200.0, {}, seq=held_seq)
    intake = ScheduleIntake()
    taken = intake.take(message(7, 100.0, 200.0, seq, limit_w=1.0), 150.0, held)
    assert taken is not None and taken.seq == seq and intake.ignored_total == 0


def test_a_replay_over_already_counts_as_expired_and_one_starting_before_the_one_held_as_stale() -> None:
    intake = ScheduleIntake()
    assert intake.take(message(7, 100.0, 200.0, 10), 200.0, HELD) is None  # HELD's end: over
    assert intake.take(message(6, 50.0, 180.0, 3), 150.0, HELD) is None  # an older start: seq is not read
    assert intake.take(message(6, 50.0, 180.0, 99), 150.0, HELD) is None
    assert intake.ignored == counts(expired=1, stale=2)


def test_a_replay_of_one_held_ahead_is_replayed_quiet_or_not() -> None:
    """The quiet exemption is for an earlier start (a far-ahead schedule from a wrong clock must not keep its
    correction out); a message with the start of one held and an older seq is no correction."""
    ahead = Schedule(8, 300.0, 400.0, {}, seq=20)
    for quiet in (False, True):
        intake = ScheduleIntake()
        assert intake.take(message(8, 300.0, 400.0, 20), 150.0, HELD, False, [(ahead, quiet)]) is None
        assert intake.ignored == counts(replayed=1)
        taken = intake.take(message(8, 300.0, 400.0, 21), 150.0, HELD, False, [(ahead, quiet)])
        assert taken is not None and taken.seq == 21


# --- the daemon: the controller dies, the replays go on ------------------------------------------------------


def test_replays_of_the_last_schedule_no_longer_keep_a_pi_whose_controller_died_out_of_its_safe_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(START, wall_offset=0.0)
    last = message(5, 900.0, 5000.0, 41)  # the controller's last word, valid long after it dies
    with edge(tmp_path, clock, timeout_s=TIMEOUT_S) as daemon:
        send(daemon, last)
        assert dispatching(daemon) == "schedule 5" and daemon.schedule_at == START
        with caplog.at_level(logging.WARNING, logger=intake_log.name):
            for _ in range(4):  # replayed every 30 s, for two minutes
                clock.now += 30.0
                send(daemon, last)
        assert daemon.schedule_at == START  # no sign of life: the timer runs on from the last real message
        assert dispatching(daemon) == "no schedule"  # safe, TIMEOUT_S after the controller died
        assert daemon.schedule_intake.ignored == counts(replayed=4)
        assert len(logged(caplog, intake_log.name)) == 4
        lines = [ln for ln in daemon.metrics_text().splitlines() if 'reason="replayed"' in ln]
        assert lines == ['peergrid_edge_schedules_ignored_total{reason="replayed"} 4']
        send(daemon, message(5, 900.0, 5000.0, 42, limit_w=100.0))  # the controller back: a newer word
        assert dispatching(daemon) == "schedule 5" and daemon.schedule_at == clock.now


def test_without_a_seq_a_resend_still_restarts_the_timer_as_before(tmp_path: Path) -> None:
    """The rule for a controller that sends no seq is unchanged (and so is the hole it leaves)."""
    clock = ManualClock(START, wall_offset=0.0)
    last = message(5, 900.0, 5000.0, None)
    with edge(tmp_path, clock, timeout_s=TIMEOUT_S) as daemon:
        send(daemon, last)
        for _ in range(4):
            clock.now += 30.0
            send(daemon, last)
        assert daemon.schedule_at == clock.now and dispatching(daemon) == "schedule 5"
        assert daemon.schedule_intake.ignored_total == 0


def test_after_a_restart_one_replay_of_a_message_is_taken_once_then_it_is_replayed_again() -> None:
    """Nothing is persisted (schedule_holder's docstring says why): a restarted daemon has no seq to compare the
    first replay with, so it buys one silence window; the next replay of it, or of an older one, is refused."""
    last, older = message(5, 900.0, 5000.0, 41), message(5, 900.0, 5000.0, 40)
    schedules, clock = holder()
    schedules.take(last)
    restarted = ScheduleHolder(clock, TIMEOUT_S)  # the same clock, a new process's holder: nothing held
    clock.now += 30.0
    restarted.take(last)  # a replay: nothing held to know it by
    assert (
        restarted.schedule is not None and restarted.schedule.seq == 41 and restarted.schedule_at == clock.now
    )
    clock.now += 30.0
    restarted.take(last)
    restarted.take(older)
    assert restarted.intake.ignored == counts(replayed=2) and restarted.schedule_at == clock.now - 30.0
    clock.now += TIMEOUT_S
    assert restarted.current() is None  # safe one silence window after the one replay it took


# --- the queue ahead -------------------------------------------------------------------------------------------


def test_at_most_ahead_max_wait_the_next_one_is_ahead_full_and_not_a_sign_of_life(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schedules, clock = holder()
    schedules.take(message(0, 900.0, 1100.0, 1))
    for k in range(1, AHEAD_MAX + 1):
        clock.now += 1.0
        schedules.take(message(k, 1000.0 + 100.0 * k, 1100.0 + 100.0 * k, 1 + k))
    assert [s.interval for s in schedules.ahead] == list(range(1, AHEAD_MAX + 1))
    clock.now += 1.0
    with caplog.at_level(logging.WARNING, logger=intake_log.name):
        schedules.take(message(9, 1900.0, 2000.0, 9))
    assert [s.interval for s in schedules.ahead] == list(range(1, AHEAD_MAX + 1))
    assert schedules.schedule_at == clock.now - 1.0 and schedules.intake.ignored == counts(ahead_full=1)
    assert logged(caplog, intake_log.name) == [
        "ignored a schedule: ahead_full: schedule 9 starts at 1900.000, after the 4 schedules held for their "
        "start (at most 4; the nearest: schedule 1 from 1100.000)"
    ]
    clock.now = 1100.0  # the first one's start: one place free again
    schedules.take(message(9, 1900.0, 2000.0, 10))
    assert [s.interval for s in schedules.ahead] == [2, 3, 4, 9]


def test_set_keeps_the_bound_too_for_the_trading_agents_own_schedules(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schedules, _ = holder()
    with caplog.at_level(logging.INFO, logger=holder_log.name):
        for k in range(1, AHEAD_MAX + 2):
            schedules.set(Schedule(k, 1000.0 + 100.0 * k, 1100.0 + 100.0 * k, {}))
    assert [s.interval for s in schedules.ahead] == list(range(1, AHEAD_MAX + 1))
    assert logged(caplog, holder_log.name) == [
        "schedule 5 (from 1500.000) not held: 4 schedules wait for their start already"
    ]


def test_quiet_far_ahead_ones_give_way_to_an_earlier_correction_and_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schedules, clock = holder()
    schedules.take(message(5, 990.0, 2000.0, 1))
    schedules.take(message(9, 4e9, 4e9 + 900, 2))  # a wrong clock's, far ahead
    schedules.take(message(10, 4e9 + 900, 4e9 + 1800, 3))
    clock.now += 10.0
    schedules.take(message(6, 1100.0, 1200.0, 4))  # before them while they are fresh: stale
    assert schedules.intake.ignored == counts(stale=1)
    clock.now = START + TIMEOUT_S + 1.0  # they have waited past the silence timeout
    schedules.take(message(5, 990.0, 2000.0, 5))  # the controller keeps its current one alive meanwhile
    with caplog.at_level(logging.INFO, logger=holder_log.name):
        schedules.take(message(6, 1100.0, 1200.0, 6))
    assert [s.interval for s in schedules.ahead] == [6]
    assert logged(caplog, holder_log.name) == [
        "schedule 9 (from 4000000000.000) no longer held: schedule 6 starts before it",
        "schedule 10 (from 4000000900.000) no longer held: schedule 6 starts before it",
    ]


def test_when_several_held_ahead_started_since_the_last_look_the_last_of_them_is_in_force(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schedules, clock = holder(timeout_s=1000.0)  # no quiet here
    for k in (1, 2, 3):
        schedules.take(message(k, 1000.0 + 100.0 * k, 1100.0 + 100.0 * k, k))
    clock.now = 1250.0  # schedule 1 and 2 started, no reader looked between
    with caplog.at_level(logging.INFO, logger=holder_log.name):
        in_force = schedules.current()
    assert in_force is not None and in_force.interval == 2 and [s.interval for s in schedules.ahead] == [3]
    assert logged(caplog, holder_log.name) == ["schedule 2 in force"]


# --- properties ----------------------------------------------------------------------------------------------

L = 100.0  # interval length: interval k is [k*L, (k+1)*L)
T = 150.0  # the silence timeout

ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.floats(0.0, 80.0)),
        st.tuples(st.just("plan"), st.integers(0, 10)),  # the controller sends (a choice among what it may)
        st.tuples(st.just("replay"), st.integers(0, 10**6)),  # a replay of any message it sent
        st.tuples(st.just("die"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ACTIONS)
def test_a_controller_with_replays_in_between_the_newest_word_is_held_and_only_it_restarts_the_timer(
    actions: list[tuple[str, Any]],
) -> None:
    """A controller sends schedules for the interval in force and up to AHEAD_MAX ahead (new ones in start
    order, revisions of any it sent in any order), seq rising; a replayer re-sends any message it sent, at any
    time, also after the controller died. After every step: each message the controller sent was taken; the
    schedule in force is its latest for the interval of now (none when it sent none, or went quiet); those held
    ahead are its latest for each later interval; the timer restarted at its last message only; each replay
    counted as `replayed`, or `expired` when its interval is over."""
    clock = ManualClock(0.0, wall_offset=0.0)
    schedules = ScheduleHolder(clock, T)
    latest: dict[int, int] = {}  # interval -> the seq of the controller's latest message for it
    sent: list[tuple[int, bytes]] = []  # (interval, message) as the controller sent them
    seq, spoke_at, alive = 0, None, True
    expected = counts()
    for kind, value in actions:
        now = clock.now
        cur = math.floor(now / L)
        if kind == "wait":
            clock.now += value
        elif kind == "die":
            alive = False
        elif kind == "plan" and alive:
            ahead = [k for k in latest if k > cur]
            allowed = [cur, *ahead]
            if (new := max([cur, *ahead]) + 1) <= cur + AHEAD_MAX:
                allowed.append(new)
            k = allowed[value % len(allowed)]
            seq += 1
            payload = message(k, k * L, (k + 1) * L, seq, limit_w=float(seq))
            schedules.take(payload)
            latest[k], spoke_at = seq, now
            sent.append((k, payload))
            assert schedules.intake.ignored == expected  # the controller's message was taken
        elif kind == "replay" and sent:
            k, payload = sent[value % len(sent)]
            schedules.take(payload)
            expected["expired" if (k + 1) * L <= now else "replayed"] += 1
            assert schedules.intake.ignored == expected
        now, cur = clock.now, math.floor(clock.now / L)
        assert schedules.schedule_at == spoke_at
        in_force = schedules.current()  # what dispatch follows: one ended is not valid now (`decide`)
        in_force = in_force if in_force is not None and in_force.valid_at(now) else None
        if cur in latest and spoke_at is not None and now - spoke_at <= T:
            assert in_force is not None and (in_force.interval, in_force.seq) == (cur, latest[cur])
        else:
            assert in_force is None
        assert [(s.interval, s.seq) for s in schedules.ahead] == [
            (k, latest[k]) for k in sorted(latest) if k > cur
        ]


SEQS = st.integers(0, 6)
STARTS = st.sampled_from([0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 60.0), STARTS, SEQS), max_size=30))
def test_any_order_of_messages_the_schedules_held_only_get_newer_by_start_then_seq(
    messages: list[tuple[float, float, int]],
) -> None:
    """Messages in any order (starts and seqs colliding, early, late, replayed), none ending and none quiet
    in the run: a message is `replayed` exactly when a schedule held has its start and a seq not smaller; the
    schedule in force only ever changes to a newer one by (start, seq); one held ahead only to a larger seq;
    those held ahead keep their start order, start after now and number at most AHEAD_MAX; the silence timer
    restarts exactly when a message is taken."""
    clock = ManualClock(0.0, wall_offset=0.0)
    schedules = ScheduleHolder(clock, 1e9)
    in_force: Schedule | None = None

    def newer_in_force() -> None:
        nonlocal in_force
        now = schedules.schedule
        if in_force is not None and now is not in_force:
            assert now is not None and (now.valid_from, now.seq or 0) > (
                in_force.valid_from,
                in_force.seq or 0,
            )
        in_force = now

    for i, (step, start, seq) in enumerate(messages):
        clock.now += step
        schedules.advance()
        newer_in_force()
        held = {s.valid_from: s.seq or 0 for s in schedules.ahead}
        if in_force is not None:
            held[in_force.valid_from] = in_force.seq or 0
        ignored, replays, timer = (
            schedules.intake.ignored_total,
            schedules.intake.ignored["replayed"],
            schedules.schedule_at,
        )
        schedules.take(message(i, start, 1e6, seq))
        taken = schedules.intake.ignored_total == ignored
        replayed = schedules.intake.ignored["replayed"] > replays
        assert replayed == (start in held and seq <= held[start])
        assert schedules.schedule_at == (clock.now if taken else timer)
        newer_in_force()
        for s in schedules.ahead:
            assert (s.seq or 0) >= held.get(s.valid_from, 0)
        starts = [s.valid_from for s in schedules.ahead]
        assert starts == sorted(set(starts)) and all(x > clock.now for x in starts)
        assert len(starts) <= AHEAD_MAX
