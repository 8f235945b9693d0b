"""Performing a dispatch decision: every write confirmed by read-back, retried, then alarmed.

Promises: `Actuator.perform(decision)` writes each device's setpoints in order (devices in parallel, so a dead
device costs only its own timeouts), reads the device back after `readback_delay_s`, and counts a write as done
only when the device's own control registers report the value (within tolerance). A refused write, no answer or
a wrong read-back is retried `write_retries` times, then raises an `Alarm` (logged, counted, kept for health)
and the next dispatch tick tries again. `check_following` alarms when a device has accepted a setpoint but its
measured output ignores it for `FOLLOW_TICKS` ticks in a row. `feed(views)` feeds every device's own
watchdog (no read-back: the next poll shows the timer and fallback, and a wrong fallback is written again on
the next tick); a device that refuses the feed is logged once, not alarmed. Never raises on device trouble.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from peergrid_edge.clock import Clock
from peergrid_edge.config import DispatchSettings
from peergrid_edge.dispatch import Decision, DeviceView, Write, confirmed, not_following, watchdog_writes
from peergrid_edge.drivers import DeviceError, Driver
from peergrid_edge.polling import DeviceState, poll_once

log = logging.getLogger("peergrid.edge.dispatch")
FOLLOW_TICKS = 3


@dataclass(frozen=True)
class Alarm:
    device: str
    kind: str  # "write" | "not_following"
    detail: str
    at: float  # wall-clock seconds


def view_of(state: DeviceState, now_mono: float) -> DeviceView | None:
    """What dispatch may know of a controllable device (None: not controllable). A quarantined one counts as
    stale though its last good reading is not old yet (a refused connection quarantines it within three polls,
    `timeout_s` before its reading goes stale): it is written nothing and given no share of a plan that was
    made without it (`planning`, `device_trust`), and a dispatch with it does not hold the plan in full."""
    control = state.settings.control
    if control is None:
        return None
    reading = state.last_good.reading if state.last_good is not None else {}
    stale = state.is_stale(now_mono) or state.last_good is None or state.health.quarantined(now_mono)
    return DeviceView(state.settings.name, state.settings.nature, control, reading, stale)


class Actuator:
    def __init__(
        self,
        drivers: Mapping[str, Driver],
        states: Mapping[str, DeviceState],
        settings: DispatchSettings,
        clock: Clock,
    ) -> None:
        self.drivers, self.states, self.settings, self.clock = drivers, states, settings, clock
        self.alarms: list[Alarm] = []
        self.writes_total = 0
        self.confirmed_total = 0
        self.alarms_total: dict[str, int] = {}
        self._not_following: dict[str, int] = {}
        self.feeds_total = 0
        self.feed_failing: set[str] = set()

    def _alarm(self, device: str, kind: str, detail: str) -> Alarm:
        alarm = Alarm(device, kind, detail, self.clock.wall())
        self.alarms = [*self.alarms[-49:], alarm]
        self.alarms_total[device] = self.alarms_total.get(device, 0) + 1
        log.error("ALARM %s %s: %s", device, kind, detail)
        return alarm

    async def perform(self, decision: Decision) -> list[Alarm]:
        by_device: dict[str, list[Write]] = {}
        for write in decision.writes:
            by_device.setdefault(write.device, []).append(write)
        results = await asyncio.gather(*(self._device(name, writes) for name, writes in by_device.items()))
        return [alarm for alarms in results for alarm in alarms]

    async def _device(self, name: str, writes: list[Write]) -> list[Alarm]:
        alarms = []
        for write in writes:
            alarm = await self._write_confirmed(write)
            if alarm is not None:
                alarms.append(alarm)
        return alarms

    async def _write_confirmed(self, write: Write) -> Alarm | None:
        driver, state = self.drivers[write.device], self.states[write.device]
        reason = "not attempted"
        for _attempt in range(self.settings.write_retries + 1):
            self.writes_total += 1
            try:
                await driver.write(write.setpoint, write.value)
            except DeviceError as exc:
                reason = f"write refused or unanswered: {exc}"
                continue
            await self.clock.sleep(self.settings.readback_delay_s)
            snapshot = await poll_once(driver, state.settings)
            if not snapshot.ok:
                reason = f"no read-back: {snapshot.error}"
                continue
            state.last, state.last_good, state.last_good_mono = snapshot, snapshot, self.clock.monotonic()
            view = view_of(state, self.clock.monotonic())
            if view is not None and confirmed(view, write, self.settings.readback_tolerance_pct):
                self.confirmed_total += 1
                return None
            got = snapshot.reading
            reason = (
                f"read back does not confirm {write.setpoint}={write.value:g} (device reports {_brief(got)})"
            )
        return self._alarm(write.device, "write", reason)

    async def feed(self, views: Mapping[str, DeviceView]) -> None:
        feeds = [writes for view in views.values() if (writes := watchdog_writes(view))]
        await asyncio.gather(*(self._feed_device(writes) for writes in feeds))

    async def _feed_device(self, writes: tuple[Write, ...]) -> None:
        name = writes[0].device
        try:
            for write in writes:
                await self.drivers[name].write(write.setpoint, write.value)
        except DeviceError as exc:
            if name not in self.feed_failing:
                log.warning("device %s: its watchdog could not be fed: %s", name, exc)
            self.feed_failing.add(name)
            return
        self.feeds_total += 1
        self.feed_failing.discard(name)

    def check_following(self, views: Mapping[str, DeviceView]) -> list[Alarm]:
        alarms = []
        for name, view in views.items():
            reason = not_following(view, self.settings.readback_tolerance_pct)
            if reason is None:
                self._not_following.pop(name, None)
                continue
            ticks = self._not_following[name] = self._not_following.get(name, 0) + 1
            if ticks == FOLLOW_TICKS:
                alarms.append(self._alarm(name, "not_following", reason))
        return alarms


def _brief(reading: Mapping[str, float | None]) -> str:
    keys = ("limit_pct", "charge_pct", "discharge_pct", "connected", "power_w")
    return ", ".join(f"{k}={reading[k]:g}" for k in keys if reading.get(k) is not None) or "nothing"
