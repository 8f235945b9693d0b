"""Polling: one dead device never delays the others (the order of polls: the others finish theirs while its one
attempt is held); quarantine backs off on an injected clock."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import edge_settings, run_for, wait_until

from peergrid_edge import polling
from peergrid_edge.clock import ManualClock
from peergrid_edge.config import DeviceSettings
from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.drivers import Snapshot
from peergrid_edge.polling import DeviceHealth, DeviceState, poll_device, poll_once

DEAD_TIMEOUT_S = 60.0  # the black-holed device's poll bound: longer than the test looks at it
POLLS_MEANWHILE = 3  # polls each other device finishes while the dead one's attempt is held


def test_health_quarantines_after_consecutive_failures_and_backs_off() -> None:
    health = DeviceHealth(failures_to_quarantine=3, quarantine_s=5, quarantine_max_s=30)
    health.record_failure(100.0)
    health.record_failure(101.0)
    assert not health.quarantined(101.0)
    health.record_failure(102.0)
    assert health.quarantined(106.9) and not health.quarantined(107.0)
    backoffs = []
    now = 107.0
    for _ in range(4):  # each failed probe doubles the back-off, capped
        health.record_failure(now)
        backoffs.append(health.backoff_s)
        now = health.quarantined_until or now
    assert backoffs == [10, 20, 30, 30]
    health.record_success()
    assert not health.quarantined(now) and health.consecutive_failures == 0
    assert health.errors_total == 7 and health.quarantines_total == 1


class DeadDriver:
    def __init__(self, settings: DeviceSettings) -> None:
        self.settings = settings
        self.attempts: list[float] = []
        self.clock: ManualClock | None = None

    async def read_all(self) -> Snapshot:
        assert self.clock is not None
        self.attempts.append(self.clock.monotonic())
        return Snapshot(self.settings.name, "pv", False, 0.0, error="timed out")

    async def write(self, setpoint: str, value: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_poll_task_probes_a_quarantined_device_on_the_back_off_schedule() -> None:
    device = DeviceSettings(
        name="pv9",
        nature="pv",
        poll_interval_s=1,
        retries=0,
        failures_to_quarantine=2,
        quarantine_s=2,
        quarantine_max_s=8,
    )
    driver, clock = DeadDriver(device), ManualClock(start=0.0)
    driver.clock = clock
    state = DeviceState(device, DeviceHealth.for_device(device))

    async def scenario() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(poll_device(driver, state, clock, stopping))
        await clock.advance(30.0, step=0.25)  # binary-exact steps: no float drift
        stopping.set()
        await clock.advance(10.0)
        await asyncio.wait_for(task, 1)

    asyncio.run(scenario())
    gaps = [round(b - a, 2) for a, b in zip(driver.attempts, driver.attempts[1:], strict=False)]
    # poll, poll (2nd failure: quarantine 2 s), probe after 2, 4, 8, 8 ... seconds
    assert gaps[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert state.is_stale(clock.monotonic())


def test_one_black_holed_device_of_20_does_not_delay_the_other_19(
    run_sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = ["pv", "battery", "genset", "load"]
    sim = run_sim([{"name": f"d{i:02d}", "kind": kinds[i % 4]} for i in range(20)])
    settings = edge_settings(tmp_path, sim, dispatch={"enabled": False})
    # the dead device's one attempt is held for as long as the test looks (its timeout is only a bound against
    # hanging): whatever the others do meanwhile, they do while it holds its poll
    slow = [
        d.model_copy(update={"timeout_s": DEAD_TIMEOUT_S, "retries": 0}) if d.name == "d07" else d
        for d in settings.devices
    ]
    settings = settings.model_copy(update={"devices": slow})
    daemon = EdgeDaemon(settings)
    polls: list[tuple[str, str]] = []  # (device, "began" | "ended"), in the order the daemon's loop met them

    async def noted(driver: Any, device: DeviceSettings) -> Snapshot:
        polls.append((device.name, "began"))
        snapshot = await poll_once(driver, device)
        polls.append((device.name, "ended"))  # not where the daemon's stop cancelled it
        return snapshot

    monkeypatch.setattr(polling, "poll_once", noted)

    def held_since() -> int | None:
        """Where the dead device's attempt after the fault began in `polls` (None: not yet)."""
        return next((i for i in range(faulted, len(polls)) if polls[i] == ("d07", "began")), None)

    def polled_meanwhile() -> dict[str, int]:
        """The polls each other device finished since the dead one's attempt began."""
        since = held_since()
        ended = [name for name, what in polls[since or len(polls) :] if what == "ended"]
        return {name: ended.count(name) for name in daemon.states if name != "d07"}

    async def body() -> None:
        nonlocal faulted
        assert await wait_until(lambda: all(daemon.states[n].polls >= 1 for n in daemon.states), timeout=30)
        faulted = len(polls)
        sim.fault("mg1", "d07", fault="no_response")  # accepts the connection, never answers
        assert await wait_until(lambda: min(polled_meanwhile().values()) >= POLLS_MEANWHILE, timeout=60), (
            polled_meanwhile()
        )

    faulted = 0
    asyncio.run(run_for(daemon, body))
    since = held_since()
    assert since is not None
    # the dead device's attempt had not ended while every other device finished three polls: none waited for it
    assert ("d07", "ended") not in polls[since:], polls[since:]
    assert daemon.states["d07"].health.errors_total == 0  # held in that attempt, not failed and retried
    assert min(polled_meanwhile().values()) >= POLLS_MEANWHILE


def test_watchdog_progress_only_while_every_poll_task_moves(tmp_path: Path) -> None:
    from peergrid_edge.config import EdgeSettings

    clock = ManualClock(start=100.0)
    settings = EdgeSettings.model_validate(
        {
            "node_id": "n1",
            "mg": "mg1",
            "data_dir": str(tmp_path),
            "devices": [
                {"name": "a", "nature": "pv", "poll_interval_s": 1, "timeout_s": 1, "retries": 0},
                {"name": "b", "nature": "pv", "poll_interval_s": 1, "timeout_s": 1, "retries": 0},
            ],
        }
    )
    daemon = EdgeDaemon(settings, clock=clock)
    a, b = daemon.states["a"], daemon.states["b"]
    for state in (a, b):
        state.polls, state.last_poll_mono = 1, 100.0
    assert daemon.progressing()
    clock.now = 103.0  # a polled again, b did not but is within its budget (1 + 4*1 + 1 s)
    a.polls, a.last_poll_mono = 2, 103.0
    assert daemon.progressing()
    clock.now = 108.0  # b has been silent for 8 s: its task is stuck -> no WATCHDOG=1
    a.polls, a.last_poll_mono = 3, 108.0
    assert not daemon.progressing()
    b.health.quarantined_until = 200.0  # quarantined by design is not stuck
    a.polls = 4
    assert daemon.progressing()
    daemon.store.close()


class FlakyDriver(DeadDriver):
    """Dead until `back_at` (monotonic s), then answering."""

    back_at = 6.0

    async def read_all(self) -> Snapshot:
        assert self.clock is not None
        if self.clock.monotonic() < self.back_at:
            return await super().read_all()
        return Snapshot(self.settings.name, "pv", True, 0.0, points={})


def test_a_quarantined_device_that_answers_again_is_told_once(caplog: Any) -> None:
    """U2: after a broker outage the log said mg6's devices were quarantined and never that they were back."""
    device = DeviceSettings(name="pv9", nature="pv", poll_interval_s=1, retries=0, failures_to_quarantine=2,
                            quarantine_s=2, quarantine_max_s=8)  # fmt: skip
    driver, clock = FlakyDriver(device), ManualClock(start=0.0)
    driver.clock = clock
    state = DeviceState(device, DeviceHealth.for_device(device))

    async def scenario() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(poll_device(driver, state, clock, stopping))
        await clock.advance(12.0, step=0.25)
        stopping.set()
        await clock.advance(10.0)
        await asyncio.wait_for(task, 1)

    with caplog.at_level(logging.INFO, logger="peergrid.edge.poll"):
        asyncio.run(scenario())
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "peergrid.edge.poll"]
    # polls at 0 and 1 fail (quarantined at 1 for 2 s), the probe at 3 fails (4 s more), the probe at 7 answers
    assert lines == [
        ("WARNING", "device pv9 quarantined for 2 s: timed out"),
        ("WARNING", "device pv9 answers again after 3 failed polls (6 s in quarantine)"),
    ]
    assert not state.health.quarantined(clock.monotonic())
