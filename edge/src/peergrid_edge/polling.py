"""Polling: one task per device on its own period, with timeouts, bounded retries, quarantine and staleness.

Promises: `DeviceHealth` is a pure state machine on injected time — after `failures_to_quarantine`
consecutive failed polls a device is quarantined for `quarantine_s`, and every failed probe after that doubles
the back-off up to `quarantine_max_s`; one good read clears it. `poll_device` tells a quarantine once at WARNING
when it begins and once, at WARNING too (a log kept at WARNING shows both ends), when the device answers again,
with how long it was out. `DeviceState.is_stale(now)` is true when the last good reading is older than `stale_after` (or there never was one). `poll_device` runs one device: each
poll is bounded by the device's timeout (times its retries), so a black-holed device never delays another
device's task; on a shared serial line the bound also leaves room for the neighbours' turns (a driver's
`line_wait_s`), so that neighbours failing their requests never fail a healthy device's poll by its bound
alone; missed slots are skipped, never bursted. A device whose config names its `meter_key` has a
`MeterWatch` (`DeviceState.watch`) that each good poll's signed reading goes through, its changes of state
logged once each. Assumes the driver's `read_all` never raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from peergrid_edge.clock import Clock
from peergrid_edge.config import DeviceSettings
from peergrid_edge.drivers import Driver, Snapshot
from peergrid_edge.meter_signed import MeterWatch

log = logging.getLogger("peergrid.edge.poll")


@dataclass
class DeviceHealth:
    failures_to_quarantine: int = 3
    quarantine_s: float = 5.0
    quarantine_max_s: float = 300.0
    consecutive_failures: int = 0
    quarantined_until: float | None = None
    backoff_s: float = 0.0
    errors_total: int = 0
    quarantines_total: int = 0

    @classmethod
    def for_device(cls, device: DeviceSettings) -> DeviceHealth:
        return cls(device.failures_to_quarantine, device.quarantine_s, device.quarantine_max_s)

    def quarantined(self, now: float) -> bool:
        return self.quarantined_until is not None and now < self.quarantined_until

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.quarantined_until = None
        self.backoff_s = 0.0

    def record_failure(self, now: float) -> None:
        self.errors_total += 1
        self.consecutive_failures += 1
        if self.quarantined_until is not None:  # a failed probe after quarantine: back off further
            self.backoff_s = min(self.backoff_s * 2, self.quarantine_max_s)
        elif self.consecutive_failures >= self.failures_to_quarantine:
            self.backoff_s = min(self.quarantine_s, self.quarantine_max_s)
            self.quarantines_total += 1
        else:
            return
        self.quarantined_until = now + self.backoff_s


@dataclass
class DeviceState:
    """What the daemon knows about one device: its last attempt and its last good reading."""

    settings: DeviceSettings
    health: DeviceHealth
    last: Snapshot | None = None
    last_good: Snapshot | None = None
    last_good_mono: float | None = None
    polls: int = 0
    implausible_total: int = 0
    doubts: tuple[str, ...] = ()  # what quality.implausible said about the last good reading
    last_poll_mono: float | None = None  # when the last attempt (good or not) finished
    latencies: list[float] = field(default_factory=list)  # drained by the metrics collector
    watch: MeterWatch | None = None  # the signing meter's check (default: from settings.meter_key)
    quarantine_began: float = 0.0  # monotonic s: when its present (or last) quarantine began

    def __post_init__(self) -> None:
        key = self.settings.meter_key
        if self.watch is None and key is not None:
            self.watch = MeterWatch.from_hex(key, self.settings.meter_time_bound_s)

    def watch_meter(self, snapshot: Snapshot) -> None:
        """A good poll's signed reading through the watch (if any), each change of state logged once."""
        if self.watch is None:
            return
        for level, message in self.watch.observe(snapshot.points, snapshot.at):
            log.log(level, "device %s: %s", self.settings.name, message)

    def is_stale(self, now_mono: float) -> bool:
        if self.last_good_mono is None:
            return True
        return now_mono - self.last_good_mono > self.settings.stale_after


def line_wait_s(driver: Driver) -> float:
    """How long the driver may wait for a line it shares before its own request goes out (0: none shared);
    a watchdog's budget for one poll needs it too."""
    wait = getattr(driver, "line_wait_s", None)
    return float(wait()) if callable(wait) else 0.0


async def poll_once(driver: Driver, device: DeviceSettings) -> Snapshot:
    """One poll with its retries; bounded by timeout x attempts even if the driver misbehaves. On a shared
    line each attempt's bound adds the neighbours' turns: with two silent neighbours a healthy device waited
    four timeouts for the line (each neighbour's timeout and its late-answer window, review25 F3), its
    whole bound, and failed while it answered in time."""
    snapshot: Snapshot | None = None
    bound = device.timeout_s * 4 + line_wait_s(driver)
    for _attempt in range(device.retries + 1):
        try:
            snapshot = await asyncio.wait_for(driver.read_all(), bound)
        except TimeoutError:
            snapshot = None
        if snapshot is not None and snapshot.ok:
            return snapshot
    if snapshot is None:
        snapshot = Snapshot(device.name, device.nature, False, time.time(), error="poll timed out")
    return snapshot


async def poll_device(
    driver: Driver,
    state: DeviceState,
    clock: Clock,
    stopping: asyncio.Event,
    on_poll: Callable[[DeviceState], None] = lambda state: None,
    phase_s: float = 0.0,
) -> None:
    """Poll one device until `stopping`; `phase_s` delays the first poll so devices do not all fire at once."""
    device = state.settings
    period = device.poll_interval_s
    next_at = clock.monotonic() + phase_s
    if phase_s > 0:
        await clock.sleep(phase_s)
    while not stopping.is_set():
        now = clock.monotonic()
        if state.health.quarantined(now):
            assert state.health.quarantined_until is not None
            await clock.sleep(state.health.quarantined_until - now)
            continue
        started = clock.monotonic()
        snapshot = await poll_once(driver, device)
        finished = clock.monotonic()
        state.polls += 1
        state.last, state.last_poll_mono = snapshot, finished
        state.latencies.append(finished - started)
        if snapshot.ok:
            if state.health.quarantined_until is not None:
                log.warning(
                    "device %s answers again after %d failed polls (%.0f s in quarantine)",
                    device.name,
                    state.health.consecutive_failures,
                    finished - state.quarantine_began,
                )
            state.health.record_success()
            state.last_good, state.last_good_mono = snapshot, finished
            state.watch_meter(snapshot)
        else:
            was_quarantined = state.health.quarantined_until is not None
            state.health.record_failure(finished)
            if state.health.quarantined_until is not None and not was_quarantined:
                state.quarantine_began = finished
                log.warning(
                    "device %s quarantined for %.0f s: %s",
                    device.name,
                    state.health.backoff_s,
                    snapshot.error,
                )
        on_poll(state)
        next_at += period
        if next_at <= finished:  # fell behind (a timeout): skip the missed slots rather than burst
            next_at = finished + period if not snapshot.ok else finished
        await clock.sleep(next_at - clock.monotonic())
