"""Edge test fixtures: firmware-sim in a background thread on free loopback ports (edge settings for it and
the asyncio helpers are in edge_helpers.py).

The simulator runs on its own event loop (its own thread), the daemon under test on the test's loop, so
they meet only over real sockets (Modbus TCP, a pty pair for RTU, MQTT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

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
