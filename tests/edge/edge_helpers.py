"""Edge test helpers the test modules import by name (`from edge_helpers import ...`): edge settings for a
running simulator, small asyncio helpers, and the daemon a trading agent sees without one (`stand_in_daemon`).
Kept out of conftest.py, whose module name other test folders share, so `pytest tests/edge tests/sim` collects
as well as the whole suite does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from peergrid_controller.model import Battery, Load, Microgrid, PvArray, Tariff
from peergrid_controller.schedule import MgSchedule
from peergrid_edge.config import EdgeSettings
from peergrid_sim.background import BackgroundSim

BLOCK_MS = 20
"""The block period of the tests' in-process MGMC chains (one authority, no broker). A day-ahead session is a
chain of a few hundred blocks, each at least a period after its parent, so the period sets its wall time: a
clean day of 265 blocks took 14.0 s at 50 ms and 6.7 s at 20 ms (273 blocks: the transactions still batch as
they did), 2 s of CPU either way (T10, session 18). Timing-sensitive tests keep their own period."""


def edge_settings(
    tmp_path: Path, sim: BackgroundSim, controls: dict[str, dict[str, Any]] | None = None, **overrides: Any
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


def stand_in_daemon(
    ledger: Any, mg: str = "mg4", commit_interval_s: float | None = None, **extra: Any
) -> SimpleNamespace:
    """The daemon as a trading agent (`MarketAgent`) uses it in a test without a broker or devices: its MG's name
    and topics (and its ledger settings' `commit_interval_s` where given), a link that subscribes to nothing, no
    devices (`states`), a stop event and the real sleep, and `ledger` (the agent's replica); `extra` adds what a
    test's agent needs beyond that (its node key, a store)."""
    settings = SimpleNamespace(mg=mg, topic=lambda *parts: "/".join(parts))
    if commit_interval_s is not None:
        settings.ledger = SimpleNamespace(commit_interval_s=commit_interval_s)
    return SimpleNamespace(
        settings=settings, link=SimpleNamespace(subscribe=lambda topic, handler: None), states={},
        stopping=asyncio.Event(), _sleep=asyncio.sleep, ledger=ledger, **extra,
    )  # fmt: skip


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


def pv_battery_schedule(n: int) -> tuple[Microgrid, MgSchedule]:
    """A solved n-hour schedule of a small MG (80 kW PV, 20 kW battery, 30 kW load with 10 kW critical) at a
    flat 0.25 retail / 0.05 feed-in tariff: surplus to sell, storage to move it."""
    mg = Microgrid(
        "mg",
        Tariff(tuple(0.25 for _ in range(n)), tuple(0.05 for _ in range(n))),
        pv=(PvArray("pv", tuple(80.0 for _ in range(n))),),
        batteries=(Battery("bat", capacity_kwh=200.0, max_charge_kw=20.0, max_discharge_kw=20.0),),
        loads=(Load("load", tuple(30.0 for _ in range(n)), tuple(10.0 for _ in range(n))),),
    )
    sched = MgSchedule(mg, 1.0)
    sched.solve()
    return mg, sched
