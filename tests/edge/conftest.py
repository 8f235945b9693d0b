"""Edge test helpers: firmware-sim in a background thread on free loopback ports, and edge settings for it.

The simulator runs on its own event loop (its own thread), the daemon under test on the test's loop, so
they meet only over real sockets (Modbus TCP, a pty pair for RTU, MQTT).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peergrid_edge.config import EdgeSettings
from peergrid_sim.background import BackgroundSim
from peergrid_sim.scenario import Scenario

FLAT = {
    "irradiance": [[0, 800], [24, 800]],
    "temperature": [[0, 25], [24, 25]],
    "load": [[0, 1.0], [24, 1.0]],
}
PARAMS = {
    "pv": {"rating_w": 10000},
    "battery": {"capacity_wh": 20000, "max_charge_w": 5000, "max_discharge_w": 5000, "soc_pct": 50},
    "genset": {"rating_w": 20000, "start_delay_s": 0, "stop_delay_s": 0},
    "load": {"critical_w": 4000, "sheddable_w": 2000},
    "meter": {},
}


class SimThread(BackgroundSim):
    """firmware-sim at real-time speed with a fast tick, as the edge tests expect."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, 1.0, tick_s=0.1)


def scenario(devices: list[dict[str, Any]], **extra: Any) -> Scenario:
    """One microgrid `mg1` on a flat profile with the given devices (name, kind, optional protocol...)."""
    specs = [{"params": PARAMS[d["kind"]], **d} for d in devices]
    data = {
        "name": "edge-test",
        "start": "2026-06-21T12:00:00Z",
        "profiles": {"flat": FLAT},
        "microgrids": [{"name": "mg1", "bus": 18, "profile": "flat", "devices": specs}],
        **extra,
    }
    return Scenario.model_validate(data)


@pytest.fixture
def run_sim() -> Iterator[Callable[..., SimThread]]:
    started: list[SimThread] = []

    def start(devices: list[dict[str, Any]], **extra: Any) -> SimThread:
        sim = SimThread(scenario(devices, **extra)).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def edge_settings(
    tmp_path: Path, sim: SimThread, controls: dict[str, dict[str, Any]] | None = None, **overrides: Any
) -> EdgeSettings:
    """Edge settings polling every device `sim` serves, with fast test-friendly timings."""
    devices = []
    for ep in sim.endpoints:
        if ep["mg"] is None:
            continue
        device: dict[str, Any] = {
            "name": ep["device"],
            "nature": ep["kind"],
            "poll_interval_s": 0.5,
            "timeout_s": 0.5,
            "retries": 0,
            "quarantine_s": 1.0,
            "quarantine_max_s": 4.0,
            "failures_to_quarantine": 2,
        }
        if ep["protocol"] == "modbus-tcp":
            device.update(protocol="modbus-tcp", host=ep["host"], port=ep["port"], unit_id=ep["unit_id"])
        elif ep["protocol"] == "modbus-rtu":
            device.update(protocol="modbus-rtu", serial_port=ep["port"], unit_id=ep["unit_id"])
        else:
            device.update(protocol="mqtt", topic=ep["topic"])
        if controls and ep["device"] in controls:
            device["control"] = controls[ep["device"]]
        devices.append(device)
    config: dict[str, Any] = {
        "node_id": "mgmc-test",
        "mg": "mg1",
        "data_dir": str(tmp_path / "data"),
        "broker": {"host": "127.0.0.1", "port": 9},  # nothing listens: the tests that need one override it
        "devices": devices,
        "dispatch": {"period_s": 0.5, "readback_delay_s": 0.1, "write_retries": 1},
        "ledger": {"commit_interval_s": 1.0, "submit_timeout_s": 2.0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return EdgeSettings.model_validate(config)


async def run_for(daemon: Any, body: Callable[[], Any]) -> Any:
    """Run the daemon while `body()` (a coroutine function) runs; stop it and return body's result."""
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        return await body()
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 15)


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()
