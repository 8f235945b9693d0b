"""Dispatch, pure: a frozen snapshot of device readings and a schedule in, the setpoint writes out.

Promises: `decide(views, schedule, now, dt)` returns `Decision(mode, writes)`. With a schedule that is valid at
`now` every controllable device gets its scheduled setpoint clamped to its [min_w, max_w] (max_w 0 = the
device's rating) and moved at most `ramp_w_per_s * dt` from what the device reports now; with no valid schedule
(none, expired, or the controller silent) each device goes to its configured safe state at once (no ramp: the
safe state is where it must be when nothing is in charge). A setpoint the device already reports (within the
read-back tolerance) is not written again, so a device that rebooted to its defaults is simply written again on
the next tick. Stale devices are skipped. `not_following` names devices whose measured power ignores an
accepted setpoint. `watchdog_writes(view)` feeds the device's own communication-loss watchdog (its timer, and
its fallback power when that differs from the safe state), so a dead MGMC leaves the device in the same safe
state `decide` would choose. No I/O, no clock: time comes in as arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from peergrid_edge import natures
from peergrid_edge.config import ControlSettings

Mode = Literal["schedule", "safe"]
BOOLEAN_SETPOINTS = ("on", "connected")


@dataclass(frozen=True)
class Schedule:
    """Setpoints for one interval from the controller: device -> setpoint -> value (W, or 1/0). `seq`: the
    message's place in what its controller sent (None: the message carried none), how the edge tells a newer
    revision of an interval from a replay of an older one (`schedule_intake.replay`)."""

    interval: int
    valid_from: float  # wall-clock seconds
    valid_until: float
    setpoints: Mapping[str, Mapping[str, float]]
    seq: int | None = None

    def valid_at(self, now: float) -> bool:
        return self.valid_from <= now < self.valid_until


@dataclass(frozen=True)
class DeviceView:
    """What `decide` may know about one device: its nature, limits and current nature-level reading."""

    name: str
    nature: str
    control: ControlSettings
    reading: Mapping[str, float | None]
    stale: bool = False


@dataclass(frozen=True)
class Write:
    device: str
    setpoint: str
    value: float


@dataclass(frozen=True)
class Decision:
    mode: Mode
    writes: tuple[Write, ...] = field(default_factory=tuple)
    reason: str = ""


def tolerance_w(view: DeviceView, pct: float) -> float:
    rating = view.reading.get("rating_w") or view.control.max_w or 0.0
    return max(1.0, rating * pct / 100.0)


def _bounds(view: DeviceView, setpoint: str) -> tuple[float, float]:
    control = view.control
    rating = view.reading.get("rating_w") or 0.0
    high = control.max_w or rating
    if view.nature == "battery" and setpoint == "power_w":
        low = -high if control.min_w == 0 else control.min_w
    else:
        low = max(0.0, control.min_w)
    return low, max(low, high)


def _safe_value(view: DeviceView, setpoint: str) -> float | None:
    control = view.control
    if setpoint in BOOLEAN_SETPOINTS:
        if setpoint == "connected" and not control.sheddable:
            return None
        return None if control.safe_on is None else float(control.safe_on)
    if view.nature == "genset" and setpoint == "output_w" and control.safe_on is False:
        return None  # a stopped genset has no output to set
    return control.safe_w


def _target(view: DeviceView, setpoint: str, wanted: float, mode: Mode, dt: float) -> float:
    if setpoint in BOOLEAN_SETPOINTS:
        return 1.0 if wanted >= 0.5 else 0.0
    low, high = _bounds(view, setpoint)
    value = min(max(wanted, low), high)
    ramp = view.control.ramp_w_per_s
    current = natures.achieved(view.nature, setpoint, view.reading)
    if mode == "schedule" and ramp > 0 and current is not None and dt > 0:
        step = ramp * dt
        value = min(max(value, current - step), current + step)
    return value


def decide(
    views: Mapping[str, DeviceView],
    schedule: Schedule | None,
    now: float,
    dt: float,
    tolerance_pct: float = 2.0,
) -> Decision:
    if schedule is None:
        mode: Mode = "safe"
        reason = "no schedule"
    elif not schedule.valid_at(now):
        mode, reason = "safe", f"schedule {schedule.interval} not valid now"
    else:
        mode, reason = "schedule", f"schedule {schedule.interval}"
    writes: list[Write] = []
    for name in sorted(views):
        view = views[name]
        if view.stale:
            continue
        for setpoint in natures.SETPOINTS.get(view.nature, ()):
            if setpoint == "connected" and not view.control.sheddable:
                continue  # a load that is not sheddable is never switched
            if mode == "schedule":
                assert schedule is not None
                wanted = schedule.setpoints.get(name, {}).get(setpoint)
            else:
                wanted = _safe_value(view, setpoint)
            if wanted is None:
                continue
            value = _target(view, setpoint, wanted, mode, dt)
            current = natures.achieved(view.nature, setpoint, view.reading)
            if current is not None:
                tol = 0.5 if setpoint in BOOLEAN_SETPOINTS else tolerance_w(view, tolerance_pct)
                if abs(current - value) <= tol:
                    continue
            writes.append(Write(name, setpoint, value))
    return Decision(mode, tuple(writes), reason)


def fallback_w(view: DeviceView) -> float:
    """The power the device's own watchdog falls back to: the safe state (PV cap, genset output; 0 = stop)."""
    control = view.control
    if view.nature == "genset" and control.safe_on is False:
        return 0.0
    if control.safe_w is not None:
        return max(0.0, control.safe_w)
    return 0.0 if view.nature == "genset" else float(view.reading.get("rating_w") or control.max_w or 0.0)


def watchdog_writes(view: DeviceView) -> tuple[Write, ...]:
    """One dispatch tick's feed of the device's watchdog: rewrite its timer (that restarts it) and, when the
    device reports another fallback power than the safe state, that too."""
    timeout = view.control.revert_s
    points = natures.watchdog_points(view.nature)
    if view.stale or timeout is None or "watchdog_s" not in points:
        return ()
    writes = [Write(view.name, "watchdog_s", timeout)]
    if "fallback_w" in points:
        wanted, got = fallback_w(view), view.reading.get("fallback_w")
        if got is None or abs(got - wanted) > tolerance_w(view, 1.0):
            writes.append(Write(view.name, "fallback_w", wanted))
    return tuple(writes)


def confirmed(view: DeviceView, write: Write, tolerance_pct: float) -> bool:
    """Does the device's own read-back carry `write`?"""
    got = natures.achieved(view.nature, write.setpoint, view.reading)
    if got is None:
        return False
    tol = 0.5 if write.setpoint in BOOLEAN_SETPOINTS else tolerance_w(view, tolerance_pct)
    return abs(got - write.value) <= tol


def not_following(view: DeviceView, tolerance_pct: float) -> str | None:
    """A reason when measured output contradicts a setpoint the device reports as accepted."""
    power = view.reading.get("power_w")
    if power is None or view.stale:
        return None
    tol = tolerance_w(view, max(tolerance_pct, 5.0))
    if view.nature == "pv" and view.reading.get("limit_enabled") == 1:
        cap = natures.achieved("pv", "limit_w", view.reading)
        if cap is not None and power > cap + tol:
            return f"PV produces {power:.0f} W above its accepted limit {cap:.0f} W"
    if view.nature == "genset" and view.reading.get("connected") == 0 and abs(power) > tol:
        return f"genset is commanded off but carries {power:.0f} W"
    return None


class ScheduleError(ValueError):
    """A schedule message that does not parse or does not make sense."""


def _finite(value: object, what: str) -> float:
    """`value` as a finite float: a JSON number (not a bool, not a string such as "inf"), never NaN, Infinity or an
    integer beyond a float's range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScheduleError(f"{what} must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise ScheduleError(f"{what} is too large for a float") from None
    if not math.isfinite(number):
        raise ScheduleError(f"{what} must be a finite number")
    return number


SEQ_MAX = 2**63 - 1  # a seq is a counter any controller keeps in a signed 64-bit integer


def _seq(value: object) -> int:
    """A message's `seq`: a JSON integer from 0 to SEQ_MAX (not a bool, not 3.0: a count, not a measure)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEQ_MAX:
        raise ScheduleError(f"seq must be an integer from 0 to {SEQ_MAX}")
    return value


def parse_schedule(payload: bytes) -> Schedule:
    """A schedule from its JSON message: {"interval", "valid_from", "valid_until", "setpoints": {dev: {sp: v}}}
    and, optionally, "seq": an integer its controller makes larger with every message it sends (a message
    without one is judged as before there was a seq). Times and setpoints are finite numbers: a "valid_until" of
    Infinity would be a schedule that never ends, a NaN setpoint a write no device can take; such a message, or
    one holding NaN/Infinity anywhere, is a ScheduleError, as is a seq that is no such integer."""
    # the edge's finite-only JSON loader lives with the telemetry shell; imported here, where it is used, so this
    # pure module does not load the MQTT client with it
    from peergrid_edge.telemetry import NotFinite, loads_finite

    try:
        message = loads_finite(payload)
    except NotFinite as exc:
        raise ScheduleError(f"schedule {exc}") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ScheduleError("schedule is not JSON") from None
    if not isinstance(message, dict):
        raise ScheduleError("schedule must be a JSON object")
    try:
        interval = int(message["interval"])
        times, raw = (message["valid_from"], message["valid_until"]), message["setpoints"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ScheduleError(f"schedule field missing or wrong: {exc}") from None
    valid_from, valid_until = _finite(times[0], "valid_from"), _finite(times[1], "valid_until")
    if not valid_from < valid_until:
        raise ScheduleError("schedule ends before it starts")
    if not isinstance(raw, dict):
        raise ScheduleError("setpoints must be an object")
    known = {s for sps in natures.SETPOINTS.values() for s in sps}
    setpoints: dict[str, dict[str, float]] = {}
    for device, values in raw.items():
        if not isinstance(values, dict):
            raise ScheduleError(f"setpoints of {device} must be an object")
        for name in values:
            if name not in known:
                raise ScheduleError(f"unknown setpoint {name!r} for {device}")
        setpoints[str(device)] = {str(k): _finite(v, f"setpoint {device}.{k}") for k, v in values.items()}
    seq = _seq(message["seq"]) if "seq" in message else None
    return Schedule(interval, valid_from, valid_until, setpoints, seq)
