"""A setpoint (or a rating it is a percentage of) that is not finite never becomes a register write (review13 F7,
X4): a NaN battery setpoint was InWRte 100 / mode 0, a NaN flag a set flag. `point_writes` raises NatureError for
every nature's every control and watchdog point; the drivers turn it into a DeviceError before any request, and the
actuator into an alarm."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_edge import natures
from peergrid_edge.config import ControlSettings, DeviceSettings, DispatchSettings
from peergrid_edge.drivers import DeviceError
from peergrid_edge.modbus import SunSpecModbusDriver
from peergrid_edge.telemetry import MqttTelemetryDriver

RATED = {"rating_w": 5000.0, "mode": 0.0, "charge_pct": 0.0, "discharge_pct": 0.0, "connected": 0.0}
POINTS = sorted(
    (nature, setpoint)
    for nature, spec in natures._map().items()
    if isinstance(spec, dict)
    for setpoint in [*spec.get("controls", {}), *spec.get("watchdog", {})]
)
NON_FINITE = [math.nan, math.inf, -math.inf, 10**400]


def test_every_writable_point_is_covered() -> None:  # the map grows: the cases below follow it
    assert ("battery", "power_w") in POINTS and ("genset", "on") in POINTS and ("pv", "watchdog_s") in POINTS
    assert len(POINTS) == 10


@pytest.mark.parametrize(("nature", "setpoint"), POINTS)
@pytest.mark.parametrize("bad", NON_FINITE, ids=["nan", "inf", "-inf", "int1e400"])
def test_a_non_finite_setpoint_is_refused_at_every_point(nature: str, setpoint: str, bad: float) -> None:
    with pytest.raises(natures.NatureError, match="must be a finite number"):
        natures.point_writes(nature, setpoint, bad, RATED)


def test_a_nan_battery_setpoint_is_no_full_rate() -> None:
    # before: [InWRte 100, OutWRte 0, StorCtl_Mod 0] (min(100, nan) is 100; nan >= 0 and nan < 0 both false)
    with pytest.raises(natures.NatureError, match="power_w of a battery must be a finite number, not nan"):
        natures.point_writes("battery", "power_w", math.nan, RATED)


@pytest.mark.parametrize(("nature", "setpoint"), [("battery", "power_w"), ("pv", "limit_w")])
@pytest.mark.parametrize("rating", [math.nan, math.inf])
def test_a_non_finite_rating_is_no_percentage(nature: str, setpoint: str, rating: float) -> None:
    # before: a NaN rating made every battery setpoint 100 %, an infinite one 0 %
    with pytest.raises(natures.NatureError, match="not a finite number of watts"):
        natures.point_writes(nature, setpoint, 1000.0, {**RATED, "rating_w": rating})


@given(
    st.sampled_from(POINTS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False),
)
def test_finite_setpoints_become_finite_register_values(
    point: tuple[str, str], value: float, rating: float
) -> None:
    nature, setpoint = point
    writes = natures.point_writes(nature, setpoint, value, {**RATED, "rating_w": rating})
    assert writes and all(math.isfinite(w.value) for w in writes)
    pct = [w.value for w in writes if w.point in ("InWRte", "OutWRte", "WMaxLimPct")]
    assert all(0.0 <= p <= 100.0 for p in pct)


@given(st.sampled_from(POINTS), st.floats() | st.integers(-(10**400), 10**400))
def test_any_number_is_finite_writes_or_a_nature_error(point: tuple[str, str], value: float) -> None:
    try:
        writes = natures.point_writes(*point, value, RATED)
    except natures.NatureError:
        finite = False
        try:
            finite = math.isfinite(value)
        except OverflowError:
            pass
        assert not finite
        return
    assert all(math.isfinite(w.value) for w in writes)


# ------------------------------------------------------------------------------------------- the callers


class Link:
    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}
        self.published: list[tuple[str, Any]] = []

    def subscribe(self, topic: str, handler: Any) -> None:
        self.handlers[topic] = handler

    def publish(self, topic: str, payload: Any, qos: int = 0) -> bool:
        self.published.append((topic, payload))
        return True


def test_the_mqtt_driver_publishes_nothing_for_a_non_finite_setpoint() -> None:
    link = Link()
    settings = DeviceSettings(name="b1", nature="battery", protocol="mqtt")
    driver = MqttTelemetryDriver(settings, link, "tel/b1")  # type: ignore[arg-type]
    driver._on_telemetry("tel/b1", b'{"readings": {"ac_w": 0, "rating_w": 5000, "mode": 0}}')
    with pytest.raises(DeviceError, match="must be a finite number"):
        asyncio.run(driver.write("power_w", math.nan))
    assert link.published == []
    asyncio.run(driver.write("power_w", -2500.0))  # a finite one still goes out
    assert link.published == [("tel/b1/set", '{"in_pct": 50.0, "out_pct": 0.0, "mode": 1}')]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_the_modbus_driver_sends_no_request_for_a_non_finite_setpoint(bad: float) -> None:
    settings = DeviceSettings(name="b1", nature="battery", port=1, control=ControlSettings(revert_s=60))
    driver = SunSpecModbusDriver(settings)
    driver.last_points = {"124": {"WChaMax": 5000, "StorCtl_Mod": 0, "InWRte": 0, "OutWRte": 0}}
    with pytest.raises(DeviceError, match="must be a finite number"):
        asyncio.run(driver.write("power_w", bad))
    assert driver.requests == 0 and driver._tcp is None  # not even connected: no register written


def test_the_actuator_alarms_on_a_non_finite_write_and_writes_nothing() -> None:
    from peergrid_edge.actuation import Actuator
    from peergrid_edge.dispatch import Decision, Write

    link = Link()
    driver = MqttTelemetryDriver(DeviceSettings(name="b1", nature="battery", protocol="mqtt"), link, "tel/b1")  # type: ignore[arg-type]
    driver._on_telemetry("tel/b1", b'{"readings": {"ac_w": 0, "rating_w": 5000, "mode": 0}}')
    state = type("State", (), {"last_good": None, "is_stale": lambda self, now: True})()
    clock = type("Clock", (), {"wall": staticmethod(lambda: 1.0), "monotonic": staticmethod(lambda: 1.0)})()
    actuator = Actuator(
        {"b1": driver}, {"b1": state}, DispatchSettings(write_retries=1, readback_delay_s=0), clock
    )
    alarms = asyncio.run(actuator.perform(Decision("schedule", (Write("b1", "power_w", math.nan),))))
    assert [(a.device, a.kind) for a in alarms] == [("b1", "write")]
    assert "must be a finite number" in alarms[0].detail and link.published == []
