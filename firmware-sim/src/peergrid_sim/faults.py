"""Fault injection: turn a fault request into changes on one device, and clear them again.

Promises: `inject(device, request, now)` validates the request and applies it, or raises `FaultError` with a
one-line reason and changes nothing; `clear(device, kind)` undoes one fault kind (or all with None).
`FaultLog` keeps every fault put on and taken off while the simulator runs (device, kind, its parameters, the
wall times it began and ended), so the lab report can show a drill that was cleared before the end.
Faults: no_response; delay (`seconds`); exception (`code`, optionally only for one `function` code);
stuck / value (`point` frozen or forced to `value`, which may be out of range; a point is a register point
such as 103.W or a reading such as ac_w, which also reaches MQTT telemetry); bad_crc (RTU replies carry a
wrong CRC); reboot (silent for `seconds`, registers and settings back to defaults); relay_fail (`mode`
no_operation | wrong_status); interlock; lockout; ignore_setpoints (writes are acknowledged and read back
but the device does not follow them).
Assumes `now` is the monotonic clock the servers compare `down_until` with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "no_response",
    "delay",
    "exception",
    "stuck",
    "value",
    "bad_crc",
    "reboot",
    "relay_fail",
    "interlock",
    "lockout",
    "ignore_setpoints",
)


class FaultError(ValueError):
    """A fault request that names an unknown fault, point or value."""


# one set of forced points per device (`device.image.force`, `device.forced`), stuck and value alike
FORCED_POINTS = ("stuck", "value")
# what `clear(device, kind)` takes off besides `kind` itself
CLEARED_WITH = {"stuck": FORCED_POINTS, "value": FORCED_POINTS, "ignore_setpoints": FORCED_POINTS}


@dataclass
class FaultLog:
    """Each fault injected through the control API as one episode: {"device", "fault", "params", "from"
    (wall epoch s), "to" (wall epoch s it was cleared or, for a reboot, came back; None while it lasts)}.
    Injecting a kind a device already has ends the old episode there and begins a new one (new parameters); a
    stuck or forced point ends only the episode of the same point (the points add up on the device). A clear
    ends what `clear` takes off: clearing stuck or value clears every forced point, ignore_setpoints them too
    (R45: a value fault cleared with stuck read as still on at the end)."""

    episodes: list[dict[str, Any]] = field(default_factory=list)

    def injected(self, device: str, request: dict[str, Any], at: float) -> None:
        kind = str(request.get("fault"))
        params = {k: v for k, v in request.items() if k not in ("device", "fault")}
        if kind in FORCED_POINTS:
            for e in self._open(device, FORCED_POINTS):
                if e["params"].get("point") == params.get("point"):
                    e["to"] = at
        else:
            self.cleared(device, kind, at)
        # a reboot ends by itself: silent for its seconds (2 by default, as `inject` has it), then back
        to = at + float(params.get("seconds", 2.0)) if kind == "reboot" else None
        self.episodes.append({"device": device, "fault": kind, "params": params, "from": at, "to": to})

    def cleared(self, device: str, kind: str | None, at: float) -> None:
        kinds = None if kind is None else (kind, *CLEARED_WITH.get(kind, ()))
        for e in self._open(device, kinds):
            e["to"] = at

    def _open(self, device: str, kinds: tuple[str, ...] | None) -> list[dict[str, Any]]:
        """The episodes of `device` still on, of `kinds` (None: any)."""
        return [e for e in self.episodes
                if e["device"] == device and e["to"] is None and (kinds is None or e["fault"] in kinds)]  # fmt: skip


def _number(request: dict[str, Any], key: str, low: float, high: float) -> float:
    value = request.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise FaultError(f"'{key}' must be a number within {low:g}..{high:g}")
    return float(value)


def inject(device: Any, request: dict[str, Any], now: float) -> None:
    kind = request.get("fault")
    faults = device.faults
    is_relay = device.kind == "relay"
    if kind == "no_response":
        faults.no_response = True
    elif kind == "delay":
        faults.delay_s = _number(request, "seconds", 0.0, 60.0)
    elif kind == "exception":
        faults.exception = int(_number(request, "code", 1, 11))
        faults.exception_function = (
            int(_number(request, "function", 1, 127)) if "function" in request else None
        )
    elif kind == "bad_crc":
        faults.bad_crc = True
    elif kind == "ignore_setpoints" and not is_relay:
        faults.ignore_setpoints = True
    elif kind == "reboot":
        faults.down_until = (
            now + _number(request, "seconds", 0.0, 600.0) if "seconds" in request else now + 2.0
        )
        device.reboot()
    elif kind in ("stuck", "value") and not is_relay:
        point = request.get("point")
        value = None if kind == "stuck" else _number(request, "value", -1e12, 1e12)
        if isinstance(point, str) and point in device.image.by_key:  # a register point such as 103.W
            device.sync()
            device.image.force(point, value)
        elif isinstance(point, str) and point in device.readings():  # a reading: Modbus and MQTT alike
            device.forced[point] = device.reported_readings()[point] if value is None else value
            device.refresh()
        else:
            raise FaultError(
                f"'point' must name a point of {device.name} such as '103.W' or a reading such as 'ac_w'"
            )
    elif kind == "relay_fail" and is_relay:
        mode = request.get("mode")
        if mode not in ("no_operation", "wrong_status"):
            raise FaultError("'mode' must be no_operation or wrong_status")
        faults.relay_fail = mode
    elif kind in ("interlock", "lockout") and is_relay:
        setattr(device.mechanism, "interlock" if kind == "interlock" else "locked_out", True)
    else:
        raise FaultError(f"unknown fault {kind!r} for a {device.kind}; one of {', '.join(KINDS)}")


def clear(device: Any, kind: str | None = None) -> None:
    faults = device.faults
    if kind not in (None, *KINDS):
        raise FaultError(f"unknown fault {kind!r}")
    if kind in (None, "no_response"):
        faults.no_response = False
    if kind in (None, "delay"):
        faults.delay_s = 0.0
    if kind in (None, "exception"):
        faults.exception, faults.exception_function = None, None
    if kind in (None, "bad_crc"):
        faults.bad_crc = False
    if kind in (None, "reboot"):
        faults.down_until = 0.0
    if kind in (None, "ignore_setpoints"):
        faults.ignore_setpoints = False
    # the forced points, with every kind whose clear takes them off (`CLEARED_WITH`, which the fault log reads)
    if (kind is None or kind in CLEARED_WITH) and device.kind != "relay":
        device.image.clear_forced()
        device.forced.clear()
        device.refresh()
    if kind in (None, "relay_fail"):
        faults.relay_fail = None
    if device.kind == "relay" and kind in (None, "interlock"):
        device.mechanism.interlock = False
    if device.kind == "relay" and kind in (None, "lockout"):
        device.mechanism.locked_out = False
