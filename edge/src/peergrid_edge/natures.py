"""Devices as natures (PV inverter, battery, genset, load, meter), never as registers.

Promises: `reading(nature, points)` turns decoded SunSpec models into the nature's quantities (`power_w`,
`soc_pct`, ...; None when the device does not expose one), using the point priorities in `maps/natures.yaml`.
`point_writes(nature, setpoint, value, reading)` turns one nature-level setpoint (or a watchdog point:
`watchdog_s`, `fallback_w`) into the SunSpec point values that carry it, and `achieved(nature, setpoint,
reading)` reads the setpoint back from the device's own control points, so a write is confirmed by what the
device reports, not by what we sent.
Pure; reads the bundled map once. Raises `NatureError` for a setpoint a device cannot take, and for a value (or
the rating a percentage is taken of) that is not a finite number: NaN would otherwise turn into a full rate, a set
flag or a NaN register, so no point of such a write is ever produced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

Points = dict[str, dict[str, Any]]  # model id (as str) -> point name -> value
Reading = dict[str, float | None]

# SunSpec 124 StorCtl_Mod bits and 123 WMaxLim_Ena / Conn values.
STOR_CHARGE, STOR_DISCHARGE = 1, 2
ENABLED, CONNECTED = 1, 1
SETPOINTS = {
    "pv": ("limit_w",),
    "battery": ("power_w",),
    "genset": ("on", "output_w"),
    "load": ("connected",),
    "meter": (),
}


class NatureError(ValueError):
    """A setpoint the device's nature or its exposed models cannot carry."""


@dataclass(frozen=True)
class PointWrite:
    model: int
    point: str
    value: float


@cache
def _map() -> dict[str, Any]:
    text = resources.files("peergrid_edge").joinpath("maps/natures.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _split(ref: str) -> tuple[str, str]:
    model, point = ref.split(".", 1)
    return model, point


def _lookup(points: Points, refs: list[str]) -> float | None:
    for ref in refs:
        model, point = _split(ref)
        value = points.get(model, {}).get(point)
        if isinstance(value, int | float):
            return float(value)
    return None


def reading(nature: str, points: Points) -> Reading:
    """The nature-level quantities a device's decoded models carry."""
    spec = _map()[nature]["readings"]
    return {quantity: _lookup(points, refs) for quantity, refs in spec.items()}


def read_points(nature: str) -> frozenset[str]:
    """Every SunSpec point ("203.TotWhExp") a reading of `nature` may come from."""
    return frozenset(ref for refs in _map()[nature]["readings"].values() for ref in refs)


def unsupported(nature: str, model_ids: list[int]) -> list[str]:
    """What a device of `nature` exposing `model_ids` cannot report or be told (empty when it fits)."""
    spec = _map()[nature]
    present = {str(m) for m in model_ids}
    problems = []
    if not any(_split(ref)[0] in present for ref in spec["readings"]["power_w"]):
        problems.append("no model carries power_w")
    for setpoint, control in spec["controls"].items():
        refs = [v for k, v in control.items() if k not in ("of", "invert")]
        missing = sorted({_split(ref)[0] for ref in refs} - present)
        if missing:
            problems.append(f"setpoint {setpoint} needs model {', '.join(missing)}")
    return problems


def _is_finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond a float's range
        return False


def _pct(value: float, of: float | None) -> float:
    if of is not None and not _is_finite(of):
        raise NatureError(f"the device reports a rating of {of}, not a finite number of watts")
    if not of or of <= 0:
        raise NatureError("the device reports no rating to turn watts into a percentage")
    return max(0.0, min(100.0, 100.0 * value / of))


def point_writes(
    nature: str, setpoint: str, value: float, now: Mapping[str, float | None]
) -> list[PointWrite]:
    """SunSpec point values that put `setpoint` at `value` (W or 0/1), in the order they must be written."""
    spec = _map().get(nature, {})
    control = spec.get("controls", {}).get(setpoint) or spec.get("watchdog", {}).get(setpoint)
    if control is None:
        raise NatureError(f"a {nature} has no setpoint {setpoint!r}")
    if not _is_finite(value):
        raise NatureError(f"{setpoint} of a {nature} must be a finite number, not {value!r}")
    if "seconds" in control:
        model, point = _split(control["seconds"])
        return [PointWrite(int(model), point, round(value))]
    if "flag" in control:
        model, point = _split(control["flag"])
        on = bool(value) != bool(control.get("invert", False))
        return [PointWrite(int(model), point, CONNECTED if on else 0)]
    if "watts" in control:
        model, point = _split(control["watts"])
        return [PointWrite(int(model), point, round(value, 1))]
    if "pct" in control:
        pct = _pct(value, now.get(control["of"]))
        model, point = _split(control["pct"])
        writes = [PointWrite(int(model), point, round(pct, 1))]
        if "enable" in control:
            em, ep = _split(control["enable"])
            writes.append(PointWrite(int(em), ep, ENABLED))
        return writes
    if "mode" in control:  # battery: + discharge, - charge, as percentages of the rating
        pct = _pct(abs(value), now.get(control["of"]))
        cm, cp = _split(control["charge_pct"])
        dm, dp = _split(control["discharge_pct"])
        mm, mp = _split(control["mode"])
        charge, discharge = (0.0, pct) if value >= 0 else (pct, 0.0)
        mode = STOR_DISCHARGE if value > 0 else STOR_CHARGE if value < 0 else 0
        return [
            PointWrite(int(cm), cp, round(charge, 1)),
            PointWrite(int(dm), dp, round(discharge, 1)),
            PointWrite(int(mm), mp, mode),
        ]
    raise NatureError(f"control {setpoint!r} of {nature} is not understood")  # pragma: no cover - map bug


def watchdog_points(nature: str) -> tuple[str, ...]:
    """The watchdog points a device of `nature` may have (`watchdog_s`, and `fallback_w` where it has one)."""
    return tuple(_map().get(nature, {}).get("watchdog", {}))


def achieved(nature: str, setpoint: str, now: Mapping[str, float | None]) -> float | None:
    """The setpoint as the device's own control registers report it, in the setpoint's units."""
    if setpoint == "connected" and now.get("shed") is not None:
        return 1.0 - float(bool(now["shed"]))
    if setpoint in ("on", "connected"):
        return now.get("connected")
    if setpoint == "output_w" and now.get("output_set_w") is not None:
        return now["output_set_w"]
    rating = now.get("rating_w")
    if rating is None:
        return None
    if nature == "battery":
        mode, charge, discharge = now.get("mode"), now.get("charge_pct"), now.get("discharge_pct")
        if mode is None:
            return None
        if int(mode) & STOR_DISCHARGE:
            return None if discharge is None else discharge * rating / 100.0
        if int(mode) & STOR_CHARGE:
            return None if charge is None else -charge * rating / 100.0
        return 0.0
    pct = now.get("limit_pct")
    return None if pct is None else pct * rating / 100.0
