"""Device physics, the relay mechanism and the simulated clock, driven directly (no sockets, no real time)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_sim.clock import SimClock
from peergrid_sim.physics import Battery, Environment, PvInverter
from peergrid_sim.physics_site import Genset, Load, PccMeter
from peergrid_sim.relay import RelayMechanism

SUN = Environment(irradiance_w_m2=1000.0, ambient_c=25.0)


def test_pv_follows_irradiance_temperature_and_curtailment():
    pv = PvInverter(rating_w=10000, dc_rating_w=10000)
    pv.advance(3600, Environment(irradiance_w_m2=500.0, ambient_c=20.0))
    cell = 20.0 + 25.0 / 800.0 * 500.0
    expected = 10000 * 0.5 * (1 - 0.004 * (cell - 25.0)) * 0.97
    assert pv.ac_w == pytest.approx(expected)
    assert pv.energy_wh == pytest.approx(expected)
    hot = PvInverter(rating_w=10000, dc_rating_w=10000)
    hot.advance(1, Environment(irradiance_w_m2=500.0, ambient_c=40.0))
    assert hot.ac_w < pv.ac_w
    pv.apply("limit_enabled", 1)
    pv.apply("limit_pct", 20)
    pv.advance(1, SUN)
    assert pv.ac_w == pytest.approx(2000) and pv.readings()["state"] == 5
    assert pv.check("limit_pct", 120) is not None
    pv.advance(1, Environment(irradiance_w_m2=0.0))
    assert pv.ac_w == 0 and pv.readings()["state"] == 2  # sleeping at night


def test_battery_soc_limits_efficiency_and_setpoint():
    bat = Battery(
        capacity_wh=10000,
        max_charge_w=5000,
        max_discharge_w=4000,
        soc_pct=50,
        soc_min_pct=10,
        soc_max_pct=90,
        charge_efficiency=0.9,
        discharge_efficiency=0.9,
    )
    bat.apply("mode", 1)
    bat.apply("in_pct", 100)  # charge at WChaMax = 5 kW
    bat.advance(1800, Environment())
    assert bat.ac_w == pytest.approx(-5000)
    assert bat.soc_pct == pytest.approx(50 + 2500 * 0.9 / 100)
    bat.advance(7200, Environment())
    assert bat.soc_pct == pytest.approx(90) and bat.ac_w == 0  # stops at SoC max
    bat.apply("mode", 2)
    bat.apply("out_pct", 100)  # 5 kW asked, 4 kW allowed
    bat.advance(60, Environment())
    assert bat.ac_w == pytest.approx(4000)
    bat.advance(10 * 3600, Environment())
    assert bat.soc_pct == pytest.approx(10) and bat.ac_w == 0
    assert bat.discharged_wh == pytest.approx((90 - 10) / 100 * 10000 * 0.9)
    bat.apply("mode", 0)
    bat.advance(60, Environment())
    assert bat.ac_w == 0 and bat.readings()["cha_st"] == 2  # EMPTY
    assert bat.check("mode", 4) is not None and bat.check("w_cha_max", 9000) is not None


def test_genset_start_delay_min_load_ramp_stop_and_fuel():
    gen = Genset(
        rating_w=100000,
        min_load_pct=30,
        ramp_w_per_s=1000,
        start_delay_s=20,
        stop_delay_s=60,
        fuel_l_per_h_idle_per_kw=0.1,
        fuel_l_per_kwh=0.25,
        fuel_price_per_l=2.0,
    )
    gen.apply("run", 1)
    gen.apply("w_set", 10000)  # below minimum load
    gen.advance(10, Environment())
    assert gen.ac_w == 0 and gen.readings()["phase"] == 1  # starting
    gen.advance(15, Environment())
    assert gen.readings()["phase"] == 2
    gen.advance(10, Environment())
    assert 0 < gen.ac_w <= 15000  # ramping at 1 kW/s
    gen.advance(60, Environment())
    assert gen.ac_w == pytest.approx(30000)  # held at minimum load
    fuel_before = gen.fuel_l
    gen.advance(3600, Environment())
    assert gen.fuel_l - fuel_before == pytest.approx(0.1 * 100 + 0.25 * 30, rel=1e-6)
    assert gen.fuel_cost == pytest.approx(gen.fuel_l * 2.0)
    gen.apply("run", 0)
    gen.advance(30, Environment())
    assert gen.readings()["phase"] == 3 and gen.ac_w == 0  # ramped off at 1 kW/s, cooling down unloaded
    gen.advance(59, Environment())
    assert gen.readings()["phase"] == 3
    gen.advance(2, Environment())
    assert gen.readings()["phase"] == 0


def test_load_shedding_and_pcc_meter_sum():
    load = Load(critical_w=3000, sheddable_w=2000)
    load.advance(3600, Environment(load_factor=0.5))
    assert load.net_w == pytest.approx(-2500)
    load.apply("shed", 1)
    load.apply("shed_pct", 50)
    load.advance(3600, Environment(load_factor=1.0))
    assert load.critical_now_w == 3000 and load.sheddable_now_w == 1000
    meter = PccMeter(rating_w=10000)
    meter.update(3600, [load.net_w, 1500.0])
    assert meter.import_w == pytest.approx(2500) and meter.import_wh == pytest.approx(2500)
    meter.update(3600, [-1000.0, 3000.0])
    assert meter.export_wh == pytest.approx(2000)


def test_relay_mechanism_delay_counter_lockout_and_fail_modes():
    relay = RelayMechanism(closed=False, operate_delay_s=0.5)
    assert relay.command(0.0, True, None) is None
    assert relay.position(None) == 2 and relay.command(0.1, False, None) == 6  # busy
    relay.advance(0.4, None)
    assert not relay.closed
    relay.advance(0.5, None)
    assert relay.closed and relay.operations == 1
    relay.command(1.0, False, None)
    relay.advance(2.0, "no_operation")
    assert relay.closed and relay.failed and relay.operations == 1
    assert relay.reported_closed("wrong_status") is False
    relay.locked_out = True
    assert relay.command(3.0, False, None) == 4


def test_sim_clock_speed_freeze_and_advance():
    now = [100.0]
    clock = SimClock(1000.0, speed=60, monotonic=lambda: now[0])
    now[0] += 2
    assert clock.now() == 1120.0
    clock.set_speed(0)
    now[0] += 5
    assert clock.now() == 1120.0
    clock.advance(30)
    assert clock.now() == 1150.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_a_stopped_clock_stands_still_at_its_stop_and_resumes_reading_it_when_told():
    now = [100.0]
    clock = SimClock(1000.0, speed=60, monotonic=lambda: now[0])
    clock.stop_at(1120.0)  # the lab's start: two real seconds ahead
    now[0] += 1
    assert clock.now() == 1060.0 and clock.stop == 1120.0  # on its way
    now[0] += 3
    assert clock.now() == 1120.0  # standing at the stop
    clock.resume_at(106.0)  # the DSO node was ready late: the first interval moved 2 s later
    now[0] += 1.5
    assert clock.now() == 1120.0  # still, until the resume
    now[0] += 1.5
    assert clock.now() == 1120.0 + 60 * 1.0  # then on from the stop: 2 real s (120 simulated) behind
    assert clock.stop is None  # resumed: no stop any more
    clock.stop_at(2000.0)
    clock.resume_at(now[0] + 10)  # a resume before the stop is reached: it runs on, then stands, then on
    now[0] += 2
    assert clock.now() == 1180.0 + 120.0
    clock.stop_at(None)  # no stop after all: on as it would have run
    now[0] += 20
    assert clock.now() == 1300.0 + 1200.0
    clock.stop_at(10.0)  # a stop already passed: it stands still where it is, never goes back
    assert clock.now() == 2500.0 == clock.stop
    clock.resume_at(now[0] - 1)  # a resume already past: forward at once, to where it would be by now
    assert clock.now() == 2560.0
    with pytest.raises(ValueError, match="without a stop_at"):
        clock.resume_at(now[0])
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="stop_at must be"):
            clock.stop_at(bad)
        clock.stop_at(3000.0)
        with pytest.raises(ValueError, match="resume_at must be"):
            clock.resume_at(bad)
        clock.stop_at(None)
    assert clock.now() == 2560.0  # nothing refused changed it


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["wait", "speed", "advance", "stop", "unstop", "resume"]),
        st.floats(min_value=0, max_value=50, allow_nan=False),
    ),
    max_size=25,
)


@given(STEPS, st.floats(min_value=0, max_value=30))
def test_the_clock_never_goes_backwards_and_a_resumed_stop_is_read_at_its_resume(steps, late):
    """Any sequence of waits, speed changes, jumps, stops and resumes never reads below the reading before;
    and a clock stopped ahead and resumed `late` s after it reached the stop reads the stop at the resume
    and runs on from it, `late * speed` behind a clock never stopped."""
    now = [0.0]
    clock = SimClock(1000.0, speed=60, monotonic=lambda: now[0])
    last = clock.now()
    for op, x in steps:
        if op == "wait":
            now[0] += x
        elif op == "speed":
            clock.set_speed(x)
        elif op == "advance":
            clock.advance(x)
        elif op == "stop":  # ahead of it or (x < 25) behind it
            clock.stop_at(clock.now() + (x - 25) * 60)
        elif op == "unstop":
            clock.stop_at(None)
        else:
            clock.stop_at(clock.now() + x)
            clock.resume_at(now[0] + x)
        assert clock.now() >= last
        last = clock.now()
    clock.stop_at(None)
    clock.set_speed(60)
    twin = SimClock(clock.now(), speed=60, monotonic=lambda: now[0])
    stop = clock.now() + 600  # ten real seconds ahead
    clock.stop_at(stop)
    now[0] += 10 + late  # it reached the stop `late` s ago
    # within float rounding: at late 0 the ten real seconds may add up to a hair under ten (22.8 + 10 - 22.8)
    assert clock.now() == pytest.approx(stop, rel=0, abs=1e-9)
    clock.resume_at(now[0])
    now[0] += 5
    assert clock.now() == pytest.approx(stop + 300)
    assert clock.now() == pytest.approx(twin.now() - late * 60)


def test_revert_timers_drop_a_stale_limit_and_a_stale_battery_rate():
    pv = PvInverter(rating_w=10000)
    pv.apply("limit_revert_s", 600)
    pv.apply("limit_enabled", 1)
    pv.apply("limit_pct", 10)
    pv.advance(599, SUN)
    assert pv.limit_enabled == 1 and pv.ac_w == pytest.approx(1000)
    pv.advance(2, SUN)
    assert pv.limit_enabled == 0 and pv.ac_w > 5000
    bat = Battery(capacity_wh=10000, max_charge_w=5000, max_discharge_w=5000)
    bat.apply("revert_s", 60)
    bat.apply("mode", 2)
    bat.apply("out_pct", 50)
    bat.advance(30, Environment())
    assert bat.ac_w == pytest.approx(2500)
    bat.apply("out_pct", 40)  # a fresh write restarts the timer
    bat.advance(45, Environment())
    assert bat.ac_w == pytest.approx(2000)
    bat.advance(20, Environment())
    assert bat.mode == 0 and bat.ac_w == 0


def test_clouds_are_deterministic_bounded_and_vary():
    from peergrid_sim.scenario import cloud_cover

    series = [cloud_cover(7, t) for t in range(0, 86400, 300)]
    assert series == [cloud_cover(7, t) for t in range(0, 86400, 300)]
    assert all(0.0 <= c <= 1.0 for c in series)
    assert max(series) - min(series) > 0.3
    assert series != [cloud_cover(8, t) for t in range(0, 86400, 300)]


def test_battery_contactor_open_means_no_power():
    bat = Battery(capacity_wh=10000, max_charge_w=5000, max_discharge_w=5000)
    bat.apply("mode", 2)
    bat.apply("out_pct", 50)
    bat.apply("set_op", 2)
    bat.advance(60, Environment())
    assert bat.ac_w == 0 and bat.readings()["battery_state"] == 1
    assert bat.check("set_op", 3) is not None
    bat.apply("set_op", 1)
    bat.advance(60, Environment())
    assert bat.ac_w == 2500 and bat.readings()["battery_state"] == 3


def test_a_silent_master_leaves_pv_capped_and_the_genset_stopped():
    """The 64203 fallback: fed by every control write; after fb_s device seconds without one, PV exports at
    most fb_w and the genset goes to fb_w (0 = stop), latched until the next write."""
    pv = PvInverter(rating_w=10000)
    pv.apply("fb_w", 7000)
    pv.apply("fb_s", 600)
    pv.advance(500, SUN)
    assert pv.readings()["fb_active"] == 0 and pv.ac_w > 7500
    pv.apply("fb_s", 600)  # the master rewrites the timer: fed
    pv.advance(500, SUN)
    assert pv.readings()["fb_active"] == 0
    pv.advance(101, SUN)
    assert pv.readings()["fb_active"] == 1 and pv.limit_enabled == 1 and pv.ac_w == pytest.approx(7000)
    pv.advance(3600, SUN)
    assert pv.ac_w == pytest.approx(7000)  # latched: still capped
    pv.apply("limit_enabled", 0)  # the master is back and lifts it
    pv.advance(1, SUN)
    assert pv.readings()["fb_active"] == 0 and pv.ac_w > 7500
    assert PvInverter(rating_w=10000).check("fb_w", 20000) is not None
    gen = Genset(rating_w=20000, start_delay_s=0, stop_delay_s=0, ramp_w_per_s=20000)
    gen.apply("fb_s", 300)
    gen.apply("run", 1)
    gen.apply("w_set", 15000)
    gen.advance(60, Environment())
    assert gen.ac_w == pytest.approx(15000)
    gen.advance(300, Environment())
    assert gen.run == 0 and gen.ac_w == 0 and gen.readings()["fb_active"] == 1
    gen.reset_settings()  # a reboot forgets the watchdog: off until the master writes it again
    assert gen.readings()["fb_s"] == 0


def test_rewriting_the_battery_revert_timer_feeds_it():
    bat = Battery(capacity_wh=10000, max_charge_w=5000, max_discharge_w=5000)
    bat.apply("revert_s", 60)
    bat.apply("mode", 2)
    bat.apply("out_pct", 50)
    for _ in range(4):
        bat.advance(45, Environment())
        bat.apply("revert_s", 60)
    assert bat.mode == 2 and bat.ac_w == pytest.approx(2500)
    bat.advance(61, Environment())
    assert bat.mode == 0 and bat.ac_w == 0
