"""Scenario validation, the shipped scenarios, and the `firmware-sim run` process contract."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peergrid_ledger.tied import tied_popen
from peergrid_sim.clock import SimClock
from peergrid_sim.runtime import Simulation
from peergrid_sim.scenario import ConfigError, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios"
CLI = [sys.executable, "-m", "peergrid_sim.cli"]


def test_ieee33_has_six_mixed_mgs_and_a_relay_on_every_branch():
    scenario = load_scenario(SCENARIOS / "ieee33.yaml")
    assert len(scenario.microgrids) >= 6
    mixes = {frozenset(d.kind for d in mg.devices) for mg in scenario.microgrids}
    assert len(mixes) >= 4
    assert {"pv", "battery", "genset", "load", "meter"} <= {
        d.kind for mg in scenario.microgrids for d in mg.devices
    }
    assert sorted(r.branch for r in scenario.relays) == list(range(1, 38))
    ties = {r.branch: (r.from_bus, r.to_bus) for r in scenario.relays if r.tie}
    assert ties == {33: (8, 21), 34: (9, 15), 35: (12, 22), 36: (18, 33), 37: (25, 29)}
    assert all(not r.closed for r in scenario.relays if r.tie) and all(
        r.closed for r in scenario.relays if not r.tie
    )
    assert all(1 <= mg.bus <= 33 for mg in scenario.microgrids)
    sim = Simulation(scenario, SimClock(scenario.start_epoch() + 12 * 3600, 0))
    mg1 = sim.microgrids["mg1"]
    assert mg1.net_import_w() < 0  # PV-heavy MG exports at noon
    assert sim.microgrids["mg4"].net_import_w() > 0  # load-heavy MG imports


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nmicrogrids: [{name: a, bus: 1, devices: [{name: d, kind: nuke}]}]", "kind"),
        ("name: x\nbogus: 1", "unknown key 'bogus'"),
        ("name: x\nmicrogrids: [{name: a, bus: 1, profile: nope, devices: []}]", "unknown profile"),
        (
            "name: x\nmicrogrids: [{name: a, bus: 1, devices: [{name: d, kind: pv, port: 5020},"
            " {name: e, kind: pv, port: 5020}]}]",
            "unit id 1 already used",
        ),
        (
            "name: x\nmicrogrids: [{name: a, bus: 1, devices: [{name: d, kind: pv, protocol: mqtt}]}]",
            "broker",
        ),
        (
            "name: x\nmicrogrids: [{name: a, bus: 1, devices: [{name: d, kind: pv, protocol: modbus-rtu,"
            " line: l1}]}]",
            "serial line",
        ),
    ],
)
def test_bad_scenarios_are_one_line_config_errors(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_scenario(path)


def test_check_rejects_bad_physics_params_with_exit_2(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: x\nmicrogrids: [{name: a, bus: 1, devices: [{name: d, kind: pv, params: {watts: 5}}]}]"
    )
    out = subprocess.run([*CLI, "check", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "bad params for a pv" in out.stderr
    missing = subprocess.run(
        [*CLI, "run", str(tmp_path / "none.yaml")], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "no such config file" in missing.stderr


def test_run_prints_endpoints_writes_json_and_exits_0_on_sigterm(tmp_path):
    endpoints_file = tmp_path / "endpoints.json"
    proc = tied_popen(
        [
            *CLI,
            "run",
            str(SCENARIOS / "skeleton.yaml"),
            "--endpoints-json",
            str(endpoints_file),
            "--speed",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not endpoints_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        endpoints = json.loads(endpoints_file.read_text())
        pv = next(e for e in endpoints if e["kind"] == "pv")
        assert set(pv) >= {"mg", "device", "kind", "protocol", "host", "port", "unit_id"}
        assert (pv["mg"], pv["device"], pv["protocol"], pv["host"], pv["unit_id"]) == (
            "mg1",
            "pv1",
            "modbus-tcp",
            "127.0.0.1",
            1,
        )
        assert pv["port"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert f"127.0.0.1:{pv['port']} unit 1" in stdout


def test_ieee33_serves_every_device_relay_rtu_line_and_mqtt_sensor(tmp_path, mosquitto):
    endpoints_file = tmp_path / "ep.json"
    proc = tied_popen(
        [
            *CLI,
            "run",
            str(SCENARIOS / "ieee33.yaml"),
            "--speed",
            "600",
            "--broker",
            f"{mosquitto.host}:{mosquitto.port}",
            "--endpoints-json",
            str(endpoints_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not endpoints_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        endpoints = json.loads(endpoints_file.read_text())
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    by_protocol = {}
    for e in endpoints:
        by_protocol.setdefault(e["protocol"], []).append(e)
    assert len([e for e in endpoints if e["kind"] == "relay"]) == 37
    assert {e["port"] for e in by_protocol["modbus-rtu"]} and all(
        e["port"].startswith("/dev/pts/") for e in by_protocol["modbus-rtu"]
    )
    assert all(e["port"] == mosquitto.port for e in by_protocol["mqtt"])
    assert len({e["port"] for e in by_protocol["modbus-tcp"]}) == len(by_protocol["modbus-tcp"])
    assert len({e["mg"] for e in endpoints if e["mg"]}) == 6


def test_case136_scenario_has_30_mgs_and_a_relay_on_every_branch():
    scenario = load_scenario(SCENARIOS / "case136ma-30mg.yaml")
    assert len(scenario.microgrids) == 30
    assert sorted(r.branch for r in scenario.relays) == list(range(1, 157))
    ties = [r for r in scenario.relays if r.tie]
    assert len(ties) == 21 and not any(r.closed for r in ties)
    assert all(2 <= mg.bus <= 136 for mg in scenario.microgrids)
    sim = Simulation(scenario, SimClock(scenario.start_epoch() + 12 * 3600, 0))
    assert sum(len(mg.devices) for mg in sim.microgrids.values()) == 264 - 156


def test_a_port_already_in_use_is_a_clear_start_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "s.yaml"
        path.write_text(
            f"name: x\nmicrogrids: [{{name: a, bus: 2, devices: [{{name: d, kind: pv, port: {port},"
            " params: {rating_w: 5000}}]}]\n"
        )
        out = subprocess.run([*CLI, "run", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "cannot start" in out.stderr and "Traceback" not in out.stderr
