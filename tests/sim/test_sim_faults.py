"""Fault injection through the control API (HTTP) and the CLI, each fault observable on the wire and clearable."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import urllib.request

import pytest


def control(sim, path: str, body: dict | None = None) -> tuple[int, dict]:
    e = sim.endpoint("control")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{e['host']}:{e['port']}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def read_holding(modbus_call, e, address: int, count: int = 1, timeout: float = 1.0) -> bytes | None:
    return modbus_call(e["host"], e["port"], e["unit_id"], struct.pack(">BHH", 3, address, count), timeout)


def test_no_response_delay_and_exception_faults(run_sim, all_kinds, modbus_call):
    sim = run_sim(all_kinds)
    e = sim.endpoint("pv1", "mg1")
    assert read_holding(modbus_call, e, 40000, 2) == bytes([3, 4]) + b"SunS"

    assert control(sim, "/faults", {"device": "mg1/pv1", "fault": "no_response"})[0] == 200
    assert read_holding(modbus_call, e, 40000, 2, timeout=0.3) is None
    control(sim, "/faults/clear", {"device": "mg1/pv1", "fault": "no_response"})

    control(sim, "/faults", {"device": "mg1/pv1", "fault": "delay", "seconds": 0.4})
    started = time.monotonic()
    assert read_holding(modbus_call, e, 40000, 2) == bytes([3, 4]) + b"SunS"
    assert time.monotonic() - started >= 0.35
    control(sim, "/faults/clear", {"device": "mg1/pv1"})

    control(sim, "/faults", {"device": "mg1/pv1", "fault": "exception", "code": 6})
    assert read_holding(modbus_call, e, 40000, 2) == bytes([0x83, 6])
    status, described = control(sim, "/faults/clear", {"device": "mg1/pv1", "fault": "exception"})
    assert status == 200 and described["faults"] == {}
    assert read_holding(modbus_call, e, 40000, 2) == bytes([3, 4]) + b"SunS"


def test_stuck_and_out_of_range_values(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    control(sim, "/faults", {"device": "mg1/pv1", "fault": "stuck", "point": "103.W"})
    before = control(sim, "/devices/mg1/pv1")[1]["points"]["103.W"]
    control(sim, "/environment", {"mg": "mg1", "irradiance_w_m2": 100})
    after = control(sim, "/devices/mg1/pv1")[1]
    assert after["points"]["103.W"] == before
    assert after["readings"]["ac_w"] < before / 2

    control(sim, "/faults", {"device": "mg1/bess1", "fault": "value", "point": "802.SoC", "value": 150})
    assert control(sim, "/devices/mg1/bess1")[1]["points"]["802.SoC"] == 150
    control(sim, "/faults/clear", {"device": "mg1/bess1"})
    assert control(sim, "/devices/mg1/bess1")[1]["points"]["802.SoC"] == 50


def test_reboot_resets_settings_and_goes_silent(run_sim, all_kinds, modbus_call):
    sim = run_sim(all_kinds)
    e = sim.endpoint("pv1", "mg1")
    address = sim.call(lambda: sim.app.sim.device("mg1/pv1").image.by_key["123.WMaxLimPct"].address)
    reply = modbus_call(e["host"], e["port"], 1, struct.pack(">BHH", 6, address, 20))
    assert reply == struct.pack(">BHH", 6, address, 20)
    control(sim, "/faults", {"device": "mg1/pv1", "fault": "reboot", "seconds": 0.5})
    assert read_holding(modbus_call, e, address, timeout=0.2) is None
    time.sleep(0.5)
    assert read_holding(modbus_call, e, address) == bytes([3, 2]) + struct.pack(">H", 100)


def test_bad_crc_on_rtu_is_rejected_by_the_client(run_sim, all_kinds):
    import sunspec2.modbus.client as sunspec_client

    sim = run_sim(all_kinds)
    e = sim.endpoint("pv2", "mg1")
    control(sim, "/faults", {"device": "mg1/pv2", "fault": "bad_crc"})
    dev = sunspec_client.SunSpecModbusClientDeviceRTU(slave_id=e["unit_id"], name=e["port"], timeout=0.3)
    try:
        with pytest.raises(Exception, match=r"(?i)crc|error"):
            dev.scan()
        control(sim, "/faults/clear", {"device": "mg1/pv2", "fault": "bad_crc"})
        dev.scan()
        assert 103 in dev.models
    finally:
        dev.close()


def test_relay_fail_modes_lockout_and_interlock(run_sim, all_kinds, modbus_call):
    sim = run_sim(all_kinds)
    e = sim.endpoint("sw1")

    def coil(address: int, on: bool) -> bytes | None:
        return modbus_call(e["host"], e["port"], 1, struct.pack(">BHH", 5, address, 0xFF00 if on else 0))

    def inputs() -> list[int]:
        reply = modbus_call(e["host"], e["port"], 1, struct.pack(">BHH", 2, 0, 6))
        return [(reply[2] >> i) & 1 for i in range(6)]

    control(sim, "/faults", {"device": "sw1", "fault": "relay_fail", "mode": "no_operation"})
    assert coil(1, True) == struct.pack(">BHH", 5, 1, 0xFF00)  # accepted ...
    assert inputs()[:2] == [1, 0] and inputs()[5] == 1  # ... but still closed, and failed raised
    control(sim, "/faults/clear", {"device": "sw1", "fault": "relay_fail"})

    control(sim, "/faults", {"device": "sw1", "fault": "relay_fail", "mode": "wrong_status"})
    coil(1, True)
    assert control(sim, "/devices/sw1")[1]["readings"]["closed"] is False  # really open ...
    assert inputs()[:2] == [1, 0]  # ... but reports closed
    control(sim, "/faults/clear", {"device": "sw1"})

    control(sim, "/faults", {"device": "sw1", "fault": "interlock"})
    assert coil(0, True) == bytes([0x85, 4])
    control(sim, "/faults/clear", {"device": "sw1", "fault": "interlock"})
    assert coil(2, True) == struct.pack(">BHH", 5, 2, 0xFF00)  # lock out over Modbus
    assert coil(0, True) == bytes([0x85, 4])
    coil(2, False)  # reset lockout
    assert coil(0, True) == struct.pack(">BHH", 5, 0, 0xFF00)
    status = control(sim, "/devices/sw1")[1]["readings"]
    assert status["closed"] is True and status["operations"] == 2


def test_control_api_rejects_bad_requests(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    assert control(sim, "/faults", {"device": "mg1/nope", "fault": "delay", "seconds": 1})[0] == 404
    assert control(sim, "/faults", {"device": "mg1/pv1", "fault": "melt"})[0] == 400
    assert control(sim, "/faults", {"device": "mg1/pv1", "fault": "delay", "seconds": "x"})[0] == 400
    assert control(sim, "/faults", {"device": "mg1/pv1", "fault": "stuck", "point": "999.X"})[0] == 400
    assert control(sim, "/faults", {"device": "sw1", "fault": "relay_fail", "mode": "explode"})[0] == 400
    assert control(sim, "/nowhere", {})[0] == 404


def test_fault_cli_talks_to_the_control_api(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    e = sim.endpoint("control")
    where = f"{e['host']}:{e['port']}"
    cli = [sys.executable, "-m", "peergrid_sim.cli"]
    out = subprocess.run(
        [*cli, "fault", "--control", where, "mg1/pv1", "delay", "seconds=1.5", "--verbose"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["faults"] == {"delay_s": 1.5}
    out = subprocess.run(
        [*cli, "clear", "--control", where, "mg1/pv1", "--verbose"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["faults"] == {}
    out = subprocess.run(
        [*cli, "fault", "--control", where, "mg1/pv1", "melt"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1


def test_inverter_that_acknowledges_but_does_not_follow_a_setpoint(run_sim, all_kinds, modbus_call):
    sim = run_sim(all_kinds)
    e = sim.endpoint("pv1", "mg1")
    limit = sim.call(lambda: sim.app.sim.device("mg1/pv1").image.by_key["123.WMaxLimPct"].address)
    control(sim, "/faults", {"device": "mg1/pv1", "fault": "ignore_setpoints"})
    write = struct.pack(">BHHB", 16, limit, 5, 10) + struct.pack(">5H", 10, 0, 0, 0, 1)
    assert modbus_call(e["host"], e["port"], 1, write) == struct.pack(">BHH", 16, limit, 5)
    assert read_holding(modbus_call, e, limit) == bytes([3, 2, 0, 10])  # read-back agrees ...
    control(sim, "/clock", {"advance": 5})
    assert control(sim, "/devices/mg1/pv1")[1]["readings"]["ac_w"] > 5000  # ... output does not follow
    control(sim, "/faults/clear", {"device": "mg1/pv1", "fault": "ignore_setpoints"})
    assert read_holding(modbus_call, e, limit) == bytes([3, 2, 0, 100])


def test_exception_fault_for_one_function_code_and_unreachable_control_api(run_sim, all_kinds, modbus_call):
    sim = run_sim(all_kinds)
    e = sim.endpoint("pv1", "mg1")
    control(sim, "/faults", {"device": "mg1/pv1", "fault": "exception", "code": 4, "function": 16})
    assert read_holding(modbus_call, e, 40000, 2) == bytes([3, 4]) + b"SunS"  # reads still fine
    write = struct.pack(">BHHB", 16, 40000, 1, 2) + b"\x00\x00"
    assert modbus_call(e["host"], e["port"], 1, write) == bytes([0x90, 4])
    out = subprocess.run(
        [sys.executable, "-m", "peergrid_sim.cli", "clear", "--control", "127.0.0.1:1", "mg1/pv1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and "unreachable" in out.stdout


def test_forced_reading_reaches_registers_and_truth_stays_visible(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    assert (
        control(sim, "/faults", {"device": "mg1/bess1", "fault": "value", "point": "soc_pct", "value": 7})[0]
        == 200
    )
    described = control(sim, "/devices/mg1/bess1")[1]
    assert described["points"]["802.SoC"] == 7 and described["points"]["124.ChaState"] == 7
    assert described["readings"]["soc_pct"] == 50  # the physical truth
    control(sim, "/faults/clear", {"device": "mg1/bess1", "fault": "value"})
    assert control(sim, "/devices/mg1/bess1")[1]["points"]["802.SoC"] == 50


def test_feeder_voltage_set_from_outside_reaches_every_device_of_the_mg(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    assert control(sim, "/environment", {"mg": "mg1", "voltage_pu": 0.95})[1]["voltage_pu"] == 0.95
    assert control(sim, "/devices/mg1/meter")[1]["points"]["203.PhVphA"] == 218.5
    assert control(sim, "/devices/mg1/pv1")[1]["points"]["103.PhVphA"] == 218.5
    control(sim, "/environment", {"mg": "mg1", "voltage_pu": None})
    assert control(sim, "/devices/mg1/load1")[1]["points"]["203.PhVphA"] == 230.0


def test_the_clock_stops_and_resumes_through_the_control_api_and_refuses_bad_times(run_sim, all_kinds):
    # the lab's start (closedloop_run): the devices' day stands still where the MGMCs' need begins, and reads
    # it again when the moved first interval leaves them that need
    sim = run_sim(all_kinds, speed=60.0)
    status, stopped = control(sim, "/clock", {"stop_at": control(sim, "/state")[1]["t"]})
    assert status == 200 and stopped["speed"] == 60.0
    assert stopped["stop"] == stopped["t"]  # told a stop it had passed: it stands where it is, and says so
    time.sleep(0.05)
    assert control(sim, "/state")[1]["t"] == stopped["t"]  # it stands still
    for bad in (
        {"stop_at": "soon"},
        {"stop_at": True},
        {"resume_at": None},
        {"resume_at": time.time() + 90000},
    ):
        status, reply = control(sim, "/clock", bad)
        assert status == 400 and next(iter(bad)) in reply["error"], (bad, reply)
    assert control(sim, "/state")[1]["t"] == stopped["t"]  # a refused request changed nothing
    status, resumed = control(sim, "/clock", {"resume_at": time.time() - 10})  # ten real s ago
    assert status == 200 and resumed["t"] >= stopped["t"] + 600  # on at once, from the stop, since then
    assert resumed["stop"] is None  # resumed: no stop any more
    status, reply = control(sim, "/clock", {"resume_at": time.time()})
    assert status == 400 and "without a stop_at" in reply["error"]
