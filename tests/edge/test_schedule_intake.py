"""Schedules the edge ignores are counted by reason (`schedule_intake.ScheduleIntake`) and exposed on /metrics
(`exposition.schedules_ignored`: `peergrid_edge_schedules_ignored_total{reason}`), as is the malformed telemetry
each MQTT device dropped (`peergrid_edge_telemetry_malformed_total{device}`)."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_edge.config import DeviceSettings
from peergrid_edge.dispatch import Schedule, ScheduleError, parse_schedule
from peergrid_edge.exposition import families, schedules_ignored
from peergrid_edge.metrics import Histogram, render
from peergrid_edge.schedule_intake import REASONS, ScheduleIntake, reason_of
from peergrid_edge.schedule_intake import log as intake_log
from peergrid_edge.telemetry import MqttTelemetryDriver

GOOD = {"interval": 3, "valid_from": 100.0, "valid_until": 200.0, "setpoints": {"pv1": {"limit_w": 5000.0}}}
NOW = 150.0  # inside GOOD's window (the daemon's wall clock)
DEEP = b"[" * 100_000  # deeper than json reads (telemetry.loads_finite: a ValueError)


def doc(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


CASES = {
    "not_json": [b"not json", b"\xff\xfe", b"", DEEP, b'{"a":' * 100_000],
    "not_finite": [
        doc(valid_until=float("inf")),  # Python writes Infinity
        doc(setpoints={"pv1": {"limit_w": float("nan")}}),
        doc().replace(b"200.0", b"1e999"),
        doc().replace(b"200.0", b"9" * 400),  # an integer no float holds
        doc(seq=10**400),  # a seq is no float, but a literal beyond one anywhere is this reason
    ],
    "invalid": [
        json.dumps({k: v for k, v in GOOD.items() if k != "interval"}).encode(),
        doc(valid_until="inf"),  # a time that is no number
        doc(valid_until=50.0),  # ends before it starts
        doc(setpoints={"pv1": {"volume": 1.0}}),  # no such setpoint
        b"[1, 2]",
        b"3",
        # a seq that is no integer from 0 to 2**63-1 (test_schedule_replay.py: the seq's rule)
        doc(seq=-1),
        doc(seq=2**63),
        doc(seq=1.5),
        doc(seq=3.0),
        doc(seq="3"),
        doc(seq=True),
        doc(seq=None),
    ],
    # well-formed, over at NOW (test_schedule_late.py: these, and `stale`, against the schedule held)
    "expired": [doc(valid_from=10.0, valid_until=20.0), doc(valid_until=NOW)],
}


@pytest.mark.parametrize("reason", list(CASES))
def test_each_ignored_schedule_is_logged_and_counted_by_its_reason(
    reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    intake = ScheduleIntake()
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.daemon"):
        taken = [intake.take(payload, NOW) for payload in CASES[reason]]
    assert taken == [None] * len(CASES[reason])
    assert intake.ignored == {r: len(CASES[reason]) if r == reason else 0 for r in REASONS}
    assert intake.ignored_total == len(CASES[reason])
    # the intake's logger only: caplog's handler also catches a stray thread's warning from an earlier test
    messages = [r.getMessage() for r in caplog.records if r.name == intake_log.name]
    assert len(messages) == len(CASES[reason]) and all(m.startswith("ignored a schedule: ") for m in messages)


def test_a_good_schedule_is_taken_and_counts_nothing(caplog: pytest.LogCaptureFixture) -> None:
    intake = ScheduleIntake()
    with caplog.at_level(logging.WARNING, logger="peergrid.edge"):
        schedule = intake.take(doc(), NOW)
    assert isinstance(schedule, Schedule) and schedule.setpoints == {"pv1": {"limit_w": 5000.0}}
    assert intake.ignored_total == 0 and [r for r in caplog.records if r.name == intake_log.name] == []
    # a huge integer is only a reason when it made the parse fail: an unknown extra field is ignored as before
    assert isinstance(intake.take(doc(extra=10**400), NOW), Schedule) and intake.ignored_total == 0


@given(st.binary(max_size=200))
def test_any_bytes_are_taken_or_counted_once_never_raised(raw: bytes) -> None:
    intake = ScheduleIntake()
    taken = intake.take(raw, NOW)
    assert intake.ignored_total == (taken is None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from([*GOOD, "seq", "x"]), json_values, max_size=5))
def test_any_json_document_is_taken_or_counted_once_with_a_reason(document: dict[str, Any]) -> None:
    payload = json.dumps({**GOOD, **document}).encode()
    intake = ScheduleIntake()
    taken = intake.take(payload, NOW)
    assert intake.ignored_total == (taken is None)
    if taken is None:  # one reason: the parse's, else the schedule is over at NOW (nothing held: never stale)
        try:
            reason = "expired" if parse_schedule(payload).valid_until <= NOW else "?"
        except ScheduleError:
            reason = reason_of(payload)
        assert intake.ignored == {r: int(r == reason) for r in REASONS}


def fake_daemon(drivers: dict[str, Any] | None = None) -> Any:
    """What `families` reads of a daemon with no polled devices (`drivers`: none by default), no chain and no
    schedule."""
    return SimpleNamespace(
        clock=SimpleNamespace(monotonic=lambda: 0.0), states={}, drivers=drivers or {}, latency=Histogram(),
        mode="safe",
        schedule=None, actuator=SimpleNamespace(writes_total=0, confirmed_total=0, alarms_total={}),
        store=SimpleNamespace(queued=lambda: 0, submitted=0), ledger_heights={},
        link=SimpleNamespace(client=SimpleNamespace(is_connected=lambda: True), subscribe_refused=0),
    )  # fmt: skip


def test_the_counts_are_on_the_metrics_page_one_series_per_reason() -> None:
    intake = ScheduleIntake()
    for payload in (b"not json", CASES["not_finite"][0], CASES["not_finite"][1], doc()):
        intake.take(payload, NOW)
    text = families(fake_daemon(), intake)
    assert render([schedules_ignored(intake)]) in text
    lines = [line for line in text.splitlines() if "schedules_ignored" in line]
    assert lines == [
        "# HELP peergrid_edge_schedules_ignored_total Schedule messages ignored (logged, not taken), by reason.",
        "# TYPE peergrid_edge_schedules_ignored_total counter",
        'peergrid_edge_schedules_ignored_total{reason="ahead_full"} 0',
        'peergrid_edge_schedules_ignored_total{reason="expired"} 0',
        'peergrid_edge_schedules_ignored_total{reason="invalid"} 0',
        'peergrid_edge_schedules_ignored_total{reason="not_finite"} 2',
        'peergrid_edge_schedules_ignored_total{reason="not_json"} 1',
        'peergrid_edge_schedules_ignored_total{reason="replayed"} 0',
        'peergrid_edge_schedules_ignored_total{reason="stale"} 0',
    ]
    assert "schedules_ignored" not in families(fake_daemon())  # a daemon that keeps no intake: left out


class FakeLink:
    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def subscribe(self, topic: str, handler: Any) -> None:
        self.handlers[topic] = handler


def test_the_malformed_telemetry_each_mqtt_device_dropped_is_on_the_metrics_page() -> None:
    link: Any = FakeLink()  # what the driver uses of `MqttLink`
    battery = MqttTelemetryDriver(
        DeviceSettings(name="b1", nature="battery", protocol="mqtt"), link, "tel/b1"
    )
    pv = MqttTelemetryDriver(DeviceSettings(name="pv1", nature="pv", protocol="mqtt"), link, "tel/pv1")
    for payload in (b"{", b'{"readings": {"ac_w": NaN}}', b'{"readings": {"ac_w": 100}}'):
        link.handlers["tel/b1"]("tel/b1", payload)
    modbus = SimpleNamespace()  # a Modbus device has no telemetry to drop: no series
    text = families(fake_daemon({"pv1": pv, "b1": battery, "m1": modbus}))
    assert [line for line in text.splitlines() if line.startswith("peergrid_edge_telemetry_malformed")] == [
        'peergrid_edge_telemetry_malformed_total{device="b1"} 2',
        'peergrid_edge_telemetry_malformed_total{device="pv1"} 0',
    ]
