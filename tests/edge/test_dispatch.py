"""`decide` is pure: schedule -> clamped, ramped setpoints; no valid schedule -> safe state; nothing rewritten."""

from __future__ import annotations

import pytest

from peergrid_edge.config import ControlSettings
from peergrid_edge.dispatch import (
    DeviceView,
    Schedule,
    ScheduleError,
    Write,
    decide,
    not_following,
    parse_schedule,
)

PV = {"rating_w": 10000.0, "limit_pct": 100.0, "limit_enabled": 0.0, "power_w": 7000.0}
BESS = {"rating_w": 5000.0, "mode": 0.0, "charge_pct": 0.0, "discharge_pct": 0.0, "power_w": 0.0}
GEN = {"rating_w": 20000.0, "connected": 0.0, "output_set_w": 0.0, "power_w": 0.0}
LOAD = {"shed": 0.0, "power_w": 5000.0}


def views(**controls: ControlSettings) -> dict[str, DeviceView]:
    readings = {
        "pv1": ("pv", PV),
        "bess1": ("battery", BESS),
        "gen1": ("genset", GEN),
        "load1": ("load", LOAD),
    }
    return {n: DeviceView(n, readings[n][0], c, readings[n][1]) for n, c in controls.items()}


def sched(setpoints: dict[str, dict[str, float]]) -> Schedule:
    return Schedule(7, 100.0, 200.0, setpoints)


def test_schedule_is_clamped_to_min_max() -> None:
    v = views(pv1=ControlSettings(max_w=8000), bess1=ControlSettings(max_w=3000))
    d = decide(v, sched({"pv1": {"limit_w": 12000}, "bess1": {"power_w": -4500}}), now=150.0, dt=5.0)
    assert d.mode == "schedule"
    assert set(d.writes) == {Write("pv1", "limit_w", 8000.0), Write("bess1", "power_w", -3000.0)}


def test_ramp_limits_the_step_from_what_the_device_reports() -> None:
    v = views(bess1=ControlSettings(ramp_w_per_s=100))
    d = decide(v, sched({"bess1": {"power_w": 4000}}), now=150.0, dt=5.0)
    assert d.writes == (Write("bess1", "power_w", 500.0),)


@pytest.mark.parametrize("schedule", [None, Schedule(7, 100.0, 200.0, {"bess1": {"power_w": 4000}})])
def test_no_valid_schedule_goes_to_the_safe_state_at_once(schedule: Schedule | None) -> None:
    discharging = {**BESS, "mode": 2.0, "discharge_pct": 80.0}
    v = {
        "bess1": DeviceView("bess1", "battery", ControlSettings(safe_w=0, ramp_w_per_s=10), discharging),
        **views(
            pv1=ControlSettings(safe_w=6000),
            gen1=ControlSettings(safe_on=False),
            load1=ControlSettings(sheddable=True, safe_on=False),
        ),
    }
    d = decide(v, schedule, now=250.0, dt=5.0)  # expired (or none)
    assert d.mode == "safe"
    assert set(d.writes) == {
        Write("bess1", "power_w", 0.0),  # no ramp in the safe state
        Write("pv1", "limit_w", 6000.0),
        Write("load1", "connected", 0.0),
    }  # the genset is already stopped: nothing to write


def test_a_setpoint_the_device_already_reports_is_not_rewritten() -> None:
    v = views(pv1=ControlSettings())
    assert decide(v, sched({"pv1": {"limit_w": 10000}}), now=150.0, dt=5.0).writes == ()


def test_stale_devices_and_unsheddable_loads_are_left_alone() -> None:
    v = views(load1=ControlSettings(sheddable=False))
    v["pv1"] = DeviceView("pv1", "pv", ControlSettings(), PV, stale=True)
    d = decide(v, sched({"pv1": {"limit_w": 1000}, "load1": {"connected": 0}}), now=150.0, dt=5.0)
    assert d.writes == ()


def test_genset_start_and_output() -> None:
    v = views(gen1=ControlSettings(min_w=5000))
    d = decide(v, sched({"gen1": {"on": 1, "output_w": 2000}}), now=150.0, dt=5.0)
    assert d.writes == (Write("gen1", "on", 1.0), Write("gen1", "output_w", 5000.0))


def test_pv_above_its_accepted_limit_is_not_following() -> None:
    reading = {**PV, "limit_enabled": 1.0, "limit_pct": 30.0, "power_w": 7000.0}
    view = DeviceView("pv1", "pv", ControlSettings(), reading)
    assert "above its accepted limit 3000 W" in (not_following(view, 2.0) or "")
    assert (
        not_following(DeviceView("pv1", "pv", ControlSettings(), {**reading, "power_w": 2900.0}), 2.0) is None
    )


def test_parse_schedule() -> None:
    s = parse_schedule(
        b'{"interval": 3, "valid_from": 1, "valid_until": 2, "setpoints": {"pv1": {"limit_w": 5}}}'
    )
    assert s.setpoints == {"pv1": {"limit_w": 5.0}} and s.valid_at(1.5) and not s.valid_at(2.0)
    for bad in (
        b"not json",
        b"[]",
        b'{"interval": 3}',
        b'{"interval": 3, "valid_from": 2, "valid_until": 1, "setpoints": {}}',
        b'{"interval": 3, "valid_from": 1, "valid_until": 2, "setpoints": {"pv1": {"bogus": 1}}}',
        b'{"interval": 3, "valid_from": 1, "valid_until": 2, "setpoints": {"pv1": {"limit_w": "x"}}}',
    ):
        with pytest.raises(ScheduleError):
            parse_schedule(bad)


def test_implausible_readings_are_named() -> None:
    from peergrid_edge.quality import implausible

    assert implausible("battery", {"soc_pct": 50.0, "power_w": 1000.0, "rating_w": 5000.0}) == []
    assert implausible("battery", {"soc_pct": -3.0}) == ["soc_pct -3 outside 0..100"]
    assert implausible("pv", {"power_w": 20000.0, "rating_w": 10000.0}) == [
        "power_w 20000 beyond 1.5x the rating 10000"
    ]
    assert implausible("pv", {"power_w": -2000.0, "rating_w": 10000.0}) == ["a pv drawing 2000 W"]


def test_a_device_whose_models_do_not_fit_its_nature_is_named() -> None:
    from peergrid_edge.natures import unsupported

    assert unsupported("pv", [1, 103, 120, 121, 123]) == []
    assert unsupported("battery", [1, 103, 120, 124, 802]) == []
    assert unsupported("genset", [1, 103, 120, 64202]) == []
    assert unsupported("load", [1, 203, 64201]) == []
    assert unsupported("battery", [1, 103, 120, 121, 123]) == ["setpoint power_w needs model 124"]
    assert unsupported("meter", [1]) == ["no model carries power_w"]


def test_watchdog_feed_rewrites_the_timer_and_a_wrong_fallback() -> None:
    from peergrid_edge.dispatch import fallback_w, watchdog_writes

    pv = DeviceView("pv1", "pv", ControlSettings(safe_w=7000, revert_s=900), {**PV, "fallback_w": 0.0})
    assert watchdog_writes(pv) == (Write("pv1", "watchdog_s", 900), Write("pv1", "fallback_w", 7000))
    fed = DeviceView("pv1", "pv", ControlSettings(safe_w=7000, revert_s=900), {**PV, "fallback_w": 7000.0})
    assert watchdog_writes(fed) == (Write("pv1", "watchdog_s", 900),)
    gen = DeviceView("gen1", "genset", ControlSettings(safe_on=False, safe_w=5000, revert_s=900), GEN)
    assert fallback_w(gen) == 0.0  # a genset whose safe state is off stops
    bess = DeviceView("bess1", "battery", ControlSettings(safe_w=0, revert_s=900), BESS)
    assert watchdog_writes(bess) == (Write("bess1", "watchdog_s", 900),)  # 124's revert timer: hold
    assert watchdog_writes(DeviceView("pv1", "pv", ControlSettings(safe_w=7000), PV)) == ()
    assert watchdog_writes(DeviceView("pv1", "pv", ControlSettings(revert_s=900), PV, stale=True)) == ()
    unlimited = DeviceView("pv1", "pv", ControlSettings(revert_s=900), PV)
    assert fallback_w(unlimited) == 10000.0  # no safe cap configured: the fallback is the rating


def test_watchdog_points_become_register_writes() -> None:
    from peergrid_edge import natures

    assert natures.point_writes("pv", "watchdog_s", 900.4, PV) == [natures.PointWrite(64203, "FbTms", 900)]
    assert natures.point_writes("genset", "fallback_w", 0, GEN) == [natures.PointWrite(64203, "FbW", 0)]
    assert natures.point_writes("battery", "watchdog_s", 60, BESS) == [
        natures.PointWrite(124, "InOutWRte_RvrtTms", 60)
    ]
    with pytest.raises(natures.NatureError):
        natures.point_writes("load", "watchdog_s", 60, LOAD)
