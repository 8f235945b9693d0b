"""A schedule message holding a number that is not finite is malformed (review13 F7, X4): Python's json takes NaN,
Infinity and 1e999, and `"valid_until": Infinity` was a schedule that never ends. The daemon logs and ignores it
like any other malformed schedule and keeps the one it had."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.dispatch import Schedule, ScheduleError, parse_schedule
from peergrid_edge.schedule_holder import ScheduleHolder
from peergrid_edge.schedule_intake import log as intake_log

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "2.5e308"]
GOOD = {"interval": 3, "valid_from": 100.0, "valid_until": 200.0, "setpoints": {"pv1": {"limit_w": 5000.0}}}


def _with(where: str, literal: str) -> bytes:
    """GOOD with `literal` (raw JSON text) at `where`."""
    doc: dict[str, Any] = json.loads(json.dumps(GOOD))
    if where == "setpoint":
        doc["setpoints"]["bess1"] = {"power_w": "@"}
    elif where == "elsewhere":
        doc["note"] = [1, {"x": "@"}]
    else:
        doc[where] = "@"
    return json.dumps(doc).replace('"@"', literal).encode()


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("where", ["valid_from", "valid_until", "interval", "setpoint", "seq", "elsewhere"])
def test_a_non_finite_number_anywhere_makes_the_schedule_malformed(where: str, literal: str) -> None:
    with pytest.raises(ScheduleError, match=f"schedule holds {literal}, not a finite number"):
        parse_schedule(_with(where, literal))


@pytest.mark.parametrize("where", ["valid_from", "valid_until", "setpoint"])
def test_an_integer_beyond_a_float_is_malformed_not_an_overflow(where: str) -> None:
    with pytest.raises(ScheduleError, match="too large for a float"):
        parse_schedule(_with(where, "1" + "0" * 400))


@pytest.mark.parametrize("text", ['"inf"', '"Infinity"', '"nan"', '"150"', "true", "null", "[150]"])
@pytest.mark.parametrize("where", ["valid_from", "valid_until", "setpoint"])
def test_times_and_setpoints_are_json_numbers(where: str, text: str) -> None:
    # float("inf") takes a string: a "valid_until" of "inf" was a schedule that never ends too
    with pytest.raises(ScheduleError, match="must be a number"):
        parse_schedule(_with(where, text))


def test_finite_extremes_still_parse() -> None:
    raw = _with("valid_until", "1.7976931348623157e308")
    assert parse_schedule(raw).valid_until == 1.7976931348623157e308
    s = parse_schedule(_with("setpoint", "-5e-324"))
    assert s.setpoints["bess1"] == {"power_w": -5e-324} and s.valid_at(150.0) and not s.valid_at(200.0)


FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
SETPOINTS = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.dictionaries(
        st.sampled_from(["limit_w", "power_w", "on", "output_w", "connected"]), FINITE | st.integers()
    ),
    max_size=4,
)


@given(st.integers(0, 10**6), FINITE, FINITE, SETPOINTS)
def test_a_finite_schedule_parses_to_what_was_sent(
    interval: int, a: float, b: float, setpoints: dict[str, dict[str, float]]
) -> None:
    low, high = sorted((a, b))
    doc = {"interval": interval, "valid_from": low, "valid_until": high, "setpoints": setpoints}
    raw = json.dumps(doc, allow_nan=False).encode()
    if not low < high:
        with pytest.raises(ScheduleError, match="ends before it starts"):
            parse_schedule(raw)
        return
    s = parse_schedule(raw)
    assert (s.interval, s.valid_from, s.valid_until) == (interval, low, high)
    assert s.setpoints == {d: {k: float(v) for k, v in sp.items()} for d, sp in setpoints.items()}
    assert all(math.isfinite(v) for sp in s.setpoints.values() for v in sp.values())


@given(SETPOINTS, st.sampled_from(["valid_from", "valid_until", "setpoint", "elsewhere"]),
       st.sampled_from([math.nan, math.inf, -math.inf]))  # fmt: skip
def test_any_schedule_with_a_non_finite_number_is_refused(
    setpoints: dict[str, dict[str, float]], where: str, bad: float
) -> None:
    doc: dict[str, Any] = {**GOOD, "setpoints": {**setpoints, "pv1": {"limit_w": 1.0}}}
    if where == "setpoint":
        doc["setpoints"]["pv1"] = {"limit_w": bad}
    elif where == "elsewhere":
        doc["meta"] = {"x": [bad]}
    else:
        doc[where] = bad
    with pytest.raises(ScheduleError, match="not a finite number"):
        parse_schedule(json.dumps(doc).encode())  # Python writes NaN / Infinity / -Infinity


@given(st.binary(max_size=80))
def test_any_bytes_parse_or_raise_schedule_error(raw: bytes) -> None:
    try:
        s = parse_schedule(raw)
    except ScheduleError:
        return
    assert math.isfinite(s.valid_from) and math.isfinite(s.valid_until)


def test_the_daemon_logs_and_ignores_a_non_finite_schedule_keeping_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon = object.__new__(EdgeDaemon)
    clock = type("Clock", (), {"monotonic": staticmethod(lambda: 7.0), "wall": staticmethod(lambda: 150.0)})()
    daemon.schedules = ScheduleHolder(clock, 120.0)
    daemon._on_schedule("schedule", json.dumps(GOOD).encode())
    kept = daemon.schedule
    assert isinstance(kept, Schedule) and kept.valid_until == 200.0
    with caplog.at_level(logging.WARNING, logger="peergrid.edge"):
        daemon._on_schedule("schedule", _with("valid_until", "Infinity"))
    assert daemon.schedule is kept
    assert daemon.schedule_intake.ignored == {
        "not_json": 0,
        "not_finite": 1,
        "invalid": 0,
        "expired": 0,
        "stale": 0,
        "replayed": 0,
        "ahead_full": 0,
    }
    # the intake's logger only: caplog's handler also catches a stray thread's warning from an earlier test
    assert [r.getMessage() for r in caplog.records if r.name == intake_log.name] == [
        "ignored a schedule: schedule holds Infinity, not a finite number"
    ]
