"""The edge against firmware-sim over real sockets: natures, dispatch with read-back, and each fault's behaviour."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_helpers import edge_settings, run_for, wait_until

from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.dispatch import Schedule

ALL = [
    {"name": "pv1", "kind": "pv"},
    {"name": "bess1", "kind": "battery"},
    {"name": "gen1", "kind": "genset"},
    {"name": "load1", "kind": "load"},
    {"name": "pcc", "kind": "meter"},
]
CONTROLS = {
    "pv1": {"safe_w": 6000},
    "bess1": {"safe_w": 0, "ramp_w_per_s": 0},
    "gen1": {"safe_on": False},
    "load1": {"sheddable": True, "safe_on": True},
}


def schedule(setpoints: dict[str, dict[str, float]], until: float = 4e9) -> Schedule:
    return Schedule(1, 0.0, until, setpoints)


def test_every_nature_is_read_and_dispatched_with_read_back(run_sim, tmp_path: Path) -> None:
    sim = run_sim(ALL)
    daemon = EdgeDaemon(edge_settings(tmp_path, sim, CONTROLS))

    async def body() -> None:
        assert await wait_until(lambda: all(s.last_good is not None for s in daemon.states.values()))
        readings = {n: s.last_good.reading for n, s in daemon.states.items()}  # type: ignore[union-attr]
        assert readings["pv1"]["power_w"] > 1000 and readings["pv1"]["rating_w"] == 10000
        assert readings["bess1"]["soc_pct"] == 50
        assert readings["load1"]["power_w"] > 4000  # consumption, critical + sheddable
        assert readings["pcc"]["power_w"] is not None
        daemon.set_schedule(
            schedule(
                {
                    "pv1": {"limit_w": 3000},
                    "bess1": {"power_w": -2000},
                    "gen1": {"on": 1, "output_w": 8000},
                    "load1": {"connected": 0},
                }
            )
        )
        assert await wait_until(lambda: daemon.actuator.confirmed_total >= 5, timeout=10)
        await asyncio.sleep(1.5)  # physics follows the setpoints

    asyncio.run(run_for(daemon, body))
    assert daemon.mode == "schedule"
    assert not daemon.actuator.alarms, daemon.actuator.alarms
    pv, bess, gen, load = (sim.device("mg1", n) for n in ("pv1", "bess1", "gen1", "load1"))
    assert sim.call(lambda: pv.model.limit_pct) == 30
    assert sim.call(lambda: bess.model.setpoint_w()) == -2000
    assert sim.call(lambda: (gen.model.run, gen.model.w_set)) == (1, 8000)
    assert sim.call(lambda: load.model.shed) == 1


def test_no_schedule_puts_devices_in_their_safe_state(run_sim, tmp_path: Path) -> None:
    sim = run_sim(ALL[:3])
    daemon = EdgeDaemon(edge_settings(tmp_path, sim, CONTROLS))
    bess = sim.device("mg1", "bess1")
    sim.call(lambda: bess.model.apply("out_pct", 50.0) or bess.model.apply("mode", 2))

    async def body() -> None:
        await wait_until(lambda: daemon.actuator.confirmed_total >= 2, timeout=10)

    asyncio.run(run_for(daemon, body))
    assert daemon.mode == "safe"
    assert sim.call(lambda: bess.model.setpoint_w()) == 0
    assert sim.call(lambda: sim.device("mg1", "pv1").model.limit_pct) == 60  # 6000 W of 10000 W


def test_wrong_read_back_is_retried_then_alarmed(run_sim, tmp_path: Path) -> None:
    sim = run_sim(ALL[:1])
    sim.fault("mg1", "pv1", fault="stuck", point="123.WMaxLimPct")  # the device ignores the new limit
    daemon = EdgeDaemon(edge_settings(tmp_path, sim, CONTROLS))
    daemon.set_schedule(schedule({"pv1": {"limit_w": 2000}}))

    async def body() -> None:
        assert await wait_until(lambda: daemon.actuator.alarms, timeout=10)

    asyncio.run(run_for(daemon, body))
    alarm = daemon.actuator.alarms[0]
    assert alarm.device == "pv1" and alarm.kind == "write"
    assert "read back does not confirm limit_w=2000" in alarm.detail
    assert daemon.actuator.writes_total >= 2  # write_retries=1: two attempts before the alarm


def test_rebooted_device_is_written_again(run_sim, tmp_path: Path) -> None:
    sim = run_sim(ALL[:1])
    daemon = EdgeDaemon(edge_settings(tmp_path, sim, CONTROLS))
    daemon.set_schedule(schedule({"pv1": {"limit_w": 4000}}))
    pv = sim.device("mg1", "pv1")

    async def body() -> None:
        assert await wait_until(lambda: daemon.actuator.confirmed_total == 1, timeout=10)
        assert sim.call(lambda: pv.model.limit_pct) == 40
        sim.fault("mg1", "pv1", fault="reboot", seconds=1.0)  # silent 1 s, registers back to defaults
        assert sim.call(lambda: pv.model.limit_pct) == 100
        assert await wait_until(lambda: daemon.actuator.confirmed_total == 2, timeout=15)

    asyncio.run(run_for(daemon, body))
    assert sim.call(lambda: pv.model.limit_pct) == 40


def test_exception_responses_quarantine_the_device_and_mark_it_stale(run_sim, tmp_path: Path) -> None:
    sim = run_sim(ALL[:2])
    daemon = EdgeDaemon(edge_settings(tmp_path, sim))

    async def body() -> None:
        assert await wait_until(lambda: daemon.states["pv1"].last_good is not None)
        sim.fault("mg1", "pv1", fault="exception", code=4)
        state = daemon.states["pv1"]
        assert await wait_until(lambda: state.health.quarantines_total >= 1, timeout=10)
        assert state.last is not None and not state.last.ok and "SunS" in (state.last.error or "")
        assert await wait_until(lambda: daemon.health()["devices"][0]["stale"], timeout=10)
        sim.clear("mg1", "pv1")
        assert await wait_until(lambda: not state.is_stale(daemon.clock.monotonic()), timeout=15)

    asyncio.run(run_for(daemon, body))
    assert daemon.states["bess1"].health.errors_total == 0


def test_setpoint_not_followed_raises_an_alarm(run_sim, tmp_path: Path) -> None:
    sim = run_sim(ALL[:1])
    sim.fault("mg1", "pv1", fault="value", point="103.W", value=9000)  # output ignores the curtailment
    daemon = EdgeDaemon(edge_settings(tmp_path, sim, CONTROLS))
    daemon.set_schedule(schedule({"pv1": {"limit_w": 3000}}))

    async def body() -> None:
        assert await wait_until(lambda: any(a.kind == "not_following" for a in daemon.actuator.alarms), 15)

    asyncio.run(run_for(daemon, body))
    alarm = next(a for a in daemon.actuator.alarms if a.kind == "not_following")
    assert "above its accepted limit 3000 W" in alarm.detail


def test_rtu_devices_on_a_pty_serial_line(run_sim, tmp_path: Path) -> None:
    rtu = [
        {"name": "pv2", "kind": "pv", "protocol": "modbus-rtu", "line": "bus1", "unit_id": 2},
        {"name": "bess2", "kind": "battery", "protocol": "modbus-rtu", "line": "bus1", "unit_id": 3},
    ]
    sim = run_sim(rtu, serial_lines=[{"name": "bus1", "device": "pty"}])
    daemon = EdgeDaemon(edge_settings(tmp_path, sim, {"pv2": {"safe_w": 4000}}))

    async def body() -> None:
        assert await wait_until(lambda: all(s.last_good is not None for s in daemon.states.values()), 10)
        assert await wait_until(lambda: daemon.actuator.confirmed_total >= 1, timeout=10)
        sim.fault("mg1", "pv2", fault="bad_crc")
        state = daemon.states["pv2"]
        assert await wait_until(lambda: state.health.errors_total >= 1, timeout=10)
        sim.clear("mg1", "pv2")

    asyncio.run(run_for(daemon, body))
    assert daemon.states["bess2"].last_good.reading["soc_pct"] == 50  # type: ignore[union-attr]
    assert sim.call(lambda: sim.device("mg1", "pv2").model.limit_pct) == 40


def test_mqtt_telemetry_device_is_read_and_dispatched(run_sim, tmp_path: Path, mosquitto) -> None:
    broker = {"host": mosquitto.host, "port": mosquitto.port}
    sim = run_sim(
        [{"name": "pvm", "kind": "pv", "protocol": "mqtt", "period_s": 0.3}], broker=broker, feeder="feeder1"
    )
    daemon = EdgeDaemon(edge_settings(tmp_path, sim, {"pvm": {"safe_w": 5000}}, broker=broker))

    async def body() -> None:
        assert await wait_until(lambda: daemon.states["pvm"].last_good is not None, timeout=10)
        assert await wait_until(lambda: daemon.actuator.confirmed_total >= 1, timeout=15)

    asyncio.run(run_for(daemon, body))
    assert daemon.states["pvm"].last_good.reading["power_w"] > 0  # type: ignore[union-attr]
    assert sim.call(lambda: sim.device("mg1", "pvm").model.limit_pct) == 50


def test_out_of_range_value_is_flagged_not_trusted(run_sim, tmp_path: Path) -> None:
    sim = run_sim(ALL[1:2])
    sim.fault("mg1", "bess1", fault="value", point="124.ChaState", value=180)  # SoC 180 %
    daemon = EdgeDaemon(edge_settings(tmp_path, sim))

    async def body() -> None:
        assert await wait_until(lambda: daemon.states["bess1"].implausible_total >= 1, timeout=10)

    asyncio.run(run_for(daemon, body))
    (device,) = daemon.health()["devices"]  # type: ignore[misc]
    assert device["ok"] and "implausible: soc_pct 180 outside 0..100" in device["error"]
