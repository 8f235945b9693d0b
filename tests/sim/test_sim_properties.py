"""Property tests of the physics state machines: whatever the setpoints and time steps, limits hold."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_sim.physics import Battery, Environment, PvInverter
from peergrid_sim.physics_site import Genset

steps = st.floats(0.0, 7200.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1, 2, 3]), st.floats(-100, 100), st.floats(-100, 100), steps),
        max_size=12,
    ),
    st.floats(0, 100),
)
def test_battery_soc_stays_within_limits_and_power_within_ratings(commands, soc0):
    bat = Battery(
        capacity_wh=10000, max_charge_w=3000, max_discharge_w=4000, soc_pct=max(10.0, min(95.0, soc0))
    )
    stored0 = bat.soc_pct / 100 * 10000
    for mode, in_pct, out_pct, dt in commands:
        for name, value in (("mode", mode), ("in_pct", in_pct), ("out_pct", out_pct)):
            assert bat.check(name, value) is None
            bat.apply(name, value)
        bat.advance(dt, Environment())
        assert bat.soc_min_pct - 1e-6 <= bat.soc_pct <= bat.soc_max_pct + 1e-6
        assert -3000 - 1e-6 <= bat.ac_w <= 4000 + 1e-6
    # energy is conserved through the efficiencies: nothing from nowhere, nothing lost unaccounted
    stored = stored0 + bat.charged_wh * bat.charge_efficiency - bat.discharged_wh / bat.discharge_efficiency
    assert abs(stored - bat.soc_pct / 100 * 10000) < 1e-6


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1]), st.floats(0, 50000), steps), max_size=12))
def test_genset_never_exceeds_rating_or_ramp_and_is_off_when_stopped(commands):
    gen = Genset(rating_w=50000, ramp_w_per_s=500, start_delay_s=10, stop_delay_s=20)
    for run, w_set, dt in commands:
        before = gen.ac_w
        gen.apply("run", run)
        gen.apply("w_set", w_set)
        gen.advance(dt, Environment())
        assert 0.0 <= gen.ac_w <= 50000 + 1e-6
        assert abs(gen.ac_w - before) <= 500 * dt + 1e-6
        if gen.readings()["phase"] == 0:
            assert gen.ac_w == 0


@settings(max_examples=150, deadline=None)
@given(
    st.floats(0, 1400),
    st.floats(-20, 50),
    st.floats(0, 100),
    st.sampled_from([0, 1]),
    st.sampled_from([0, 1]),
)
def test_pv_output_respects_rating_limit_and_connection(irr, temp, pct, enabled, connected):
    pv = PvInverter(rating_w=8000, dc_rating_w=10000)
    pv.apply("limit_pct", pct)
    pv.apply("limit_enabled", enabled)
    pv.apply("connected", connected)
    pv.advance(60, Environment(irradiance_w_m2=irr, ambient_c=temp))
    assert 0 <= pv.ac_w <= 8000
    assert pv.ac_w <= pv.available_w + 1e-9
    if enabled:
        assert pv.ac_w <= 8000 * pct / 100 + 1e-6
    if not connected:
        assert pv.ac_w == 0


def test_a_scenario_device_on_a_named_serial_port_goes_through_pyserial(run_sim, all_kinds):
    """A `device: /dev/...` line (the lab's RS-485 adapter) is opened with pyserial; a pty stands in here."""
    from peergrid_sim import modbus

    master, slave = os.openpty()
    try:
        all_kinds["serial_lines"] = [{"name": "bus1", "device": os.ttyname(slave), "baudrate": 9600}]
        sim = run_sim(all_kinds)
        assert sim.endpoint("pv2")["port"] == os.ttyname(slave)
        os.write(master, modbus.rtu_frame(2, bytes.fromhex("039c400002")))
        reply = b""
        while len(reply) < 9:
            reply += os.read(master, 64)
        assert reply == modbus.rtu_frame(2, bytes([3, 4]) + b"SunS")
    finally:
        os.close(master)
        os.close(slave)
