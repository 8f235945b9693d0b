"""External validation: SunSpec's own client (pysunspec2) scans every emulated device over Modbus TCP and
over Modbus RTU on a pty, reads every model without error, and reads values that agree with the physics."""

from __future__ import annotations

import pytest
import sunspec2.modbus.client as sunspec_client
from sunspec2 import device as sunspec_device

from peergrid_sim.sunspec import STANDARD_MODELS_DIR, VENDOR_MODELS_DIR

EXPECTED_MODELS = {
    "pv": [1, 103, 120, 121, 123, 64203],
    "battery": [1, 103, 120, 124, 802],
    "genset": [1, 103, 120, 64202, 64203],
    "load": [1, 203, 64201],
    "meter": [1, 203],
}


@pytest.fixture(autouse=True)
def _vendor_models_known():
    """Let pysunspec2 decode our two vendor models too (it reads unknown ids only as headers)."""
    saved = sunspec_device.get_model_defs_path()
    sunspec_device.set_model_defs_path([str(VENDOR_MODELS_DIR), str(STANDARD_MODELS_DIR.parent)])
    yield
    sunspec_device.set_model_defs_path(saved)


def model_ids(dev) -> list[int]:
    return [k for k in dev.models if isinstance(k, int)]


def read_every_point(dev) -> int:
    """Read each model in full and decode each point's computed value; returns how many points decoded."""
    n = 0
    for mid in model_ids(dev):
        for model in dev.models[mid]:
            model.read()
            for point in model.points.values():
                point.cvalue  # noqa: B018 - decoding must not raise
                n += 1
    return n


def test_pysunspec2_scans_every_tcp_device_and_values_match_physics(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    tcp = [e for e in sim.endpoints if e["protocol"] == "modbus-tcp" and e["kind"] != "relay"]
    assert {e["kind"] for e in tcp} == set(EXPECTED_MODELS)
    for e in tcp:
        dev = sunspec_client.SunSpecModbusClientDeviceTCP(
            slave_id=e["unit_id"], ipaddr=e["host"], ipport=e["port"], timeout=2
        )
        try:
            dev.scan()
            assert model_ids(dev) == EXPECTED_MODELS[e["kind"]], e
            assert read_every_point(dev) > 20
            common = dev.models[1][0]
            assert common.SN.cvalue == f"mg1-{e['device']}"
            physics = sim.call(lambda e=e: sim.app.sim.device(f"mg1/{e['device']}").readings())
            if e["kind"] in ("pv", "battery", "genset"):
                inv = dev.models[103][0]
                assert inv.W.cvalue == pytest.approx(physics["ac_w"], abs=1.0)
                # an acc32 of 0 reads as "not accumulated" (None) in SunSpec; the clock is frozen here
                assert (inv.WH.cvalue or 0.0) == pytest.approx(physics["energy_wh"], abs=1.0)
                assert inv.PhVphA.cvalue == pytest.approx(230.0, abs=0.1)
            else:
                meter = dev.models[203][0]
                assert meter.W.cvalue == pytest.approx(physics["ac_w"], abs=10.0**meter.W_SF.value)
        finally:
            dev.close()
    pv = sim.call(lambda: sim.app.sim.device("mg1/pv1").readings())
    assert pv["ac_w"] > 5000  # 800 W/m2 on a 10 kW inverter


def test_curtailment_written_by_pysunspec2_limits_pv_output(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    e = sim.endpoint("pv1", "mg1")
    dev = sunspec_client.SunSpecModbusClientDeviceTCP(
        slave_id=1, ipaddr=e["host"], ipport=e["port"], timeout=2
    )
    try:
        dev.scan()
        controls = dev.models[123][0]
        controls.WMaxLimPct.cvalue = 30
        controls.WMaxLim_Ena.value = 1
        controls.write()
        sim.call(lambda: (sim.app.clock.advance(10), sim.app.sim.tick()))
        inverter = dev.models[103][0]
        inverter.read()
        assert inverter.W.cvalue == pytest.approx(3000, abs=1)
        assert inverter.St.value == 5  # THROTTLED
        controls.Conn.value = 0
        controls.write()
        sim.call(lambda: (sim.app.clock.advance(10), sim.app.sim.tick()))
        inverter.read()
        assert inverter.W.cvalue == 0
        assert inverter.St.value == 1  # OFF
    finally:
        dev.close()


def test_battery_follows_124_setpoint_and_soc_moves(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    e = sim.endpoint("bess1", "mg1")
    dev = sunspec_client.SunSpecModbusClientDeviceTCP(
        slave_id=1, ipaddr=e["host"], ipport=e["port"], timeout=2
    )
    try:
        dev.scan()
        storage = dev.models[124][0]
        storage.OutWRte.cvalue = 40.0  # 40 % of WChaMax (5 kW) = 2 kW discharge
        storage.StorCtl_Mod.value = 2
        storage.write()
        sim.call(lambda: (sim.app.clock.advance(3600), sim.app.sim.tick()))
        dev.models[103][0].read()
        dev.models[802][0].read()
        assert dev.models[103][0].W.cvalue == pytest.approx(2000, abs=1)
        # one hour at 2 kW out of 20 kWh with 95 % discharge efficiency: 50 % - 10.5 %
        assert dev.models[802][0].SoC.cvalue == pytest.approx(39.5, abs=0.1)
    finally:
        dev.close()


def test_pysunspec2_scans_rtu_devices_on_a_pty(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    rtu = [e for e in sim.endpoints if e["protocol"] == "modbus-rtu"]
    assert len(rtu) == 2
    for e in rtu:
        dev = sunspec_client.SunSpecModbusClientDeviceRTU(
            slave_id=e["unit_id"], name=e["port"], baudrate=19200, timeout=2
        )
        try:
            dev.scan()
            assert model_ids(dev) == EXPECTED_MODELS[e["kind"]]
            assert read_every_point(dev) > 20
            physics = sim.call(lambda e=e: sim.app.sim.device(f"mg1/{e['device']}").readings())
            assert dev.models[103][0].W.cvalue == pytest.approx(physics["ac_w"], abs=1.0)
        finally:
            dev.close()


def test_pysunspec2_scans_every_device_of_the_ieee33_scenario(run_sim, mosquitto):
    from pathlib import Path

    from peergrid_sim.scenario import load_scenario

    scenario = load_scenario(
        Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
    )
    scenario = scenario.model_copy(
        update={"broker": scenario.broker.model_copy(update={"host": mosquitto.host, "port": mosquitto.port})}
    )
    sim = run_sim(scenario, speed=0.0)
    sim.call(lambda: (sim.app.clock.advance(11 * 3600), sim.app.sim.tick()))  # late morning: PV producing
    scanned = 0
    for e in sim.endpoints:
        if e["kind"] in ("relay", "control") or e["protocol"] == "mqtt":
            continue
        if e["protocol"] == "modbus-tcp":
            dev = sunspec_client.SunSpecModbusClientDeviceTCP(
                slave_id=e["unit_id"], ipaddr=e["host"], ipport=e["port"], timeout=2
            )
        else:
            dev = sunspec_client.SunSpecModbusClientDeviceRTU(
                slave_id=e["unit_id"], name=e["port"], timeout=2
            )
        try:
            dev.scan()
            assert model_ids(dev) == EXPECTED_MODELS[e["kind"]], e
            read_every_point(dev)
            truth = sim.call(lambda e=e: sim.app.sim.device(f"{e['mg']}/{e['device']}").readings())
            block = dev.models[103][0] if 103 in dev.models else dev.models[203][0]
            assert block.W.cvalue == pytest.approx(truth["ac_w"], abs=10.0**block.W_SF.value), e
            scanned += 1
        finally:
            dev.close()
    assert scanned == 24
