"""A SunSpec device's holding-register image, built from a device map data file.

Promises: the image starts with "SunS" at the base address, lays out each model exactly as its SunSpec
definition says, ends with the 0xFFFF end model, and answers reads and writes with the standard's
behaviour: registers outside the map -> ILLEGAL_DATA_ADDRESS (2); writes touching a read-only or
unimplemented point, or covering part of a point -> 2; a value that is not one of an enum's symbols or
that the device refuses -> ILLEGAL_DATA_VALUE (3). A write is applied whole or not at all.
Assumes a device map (see `maps/*.yaml`) naming, per point, a reading, a constant, a device parameter or
a stored default. Pure: the owner passes readings in and applies the returned changes to its physics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import sunspec
from .sunspec import Point

MAPS_DIR = Path(__file__).resolve().parent / "maps"
SUNSPEC_BASE = 40000
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4


class MapError(Exception):
    """A device map that names an unknown model, point or scale factor."""


@dataclass
class Entry:
    key: str  # "103.W"
    address: int
    point: Point
    read: str | None = None  # reading name
    write: str | None = None  # physics setting name
    const: Any = None
    stored: bool = False  # RW setting kept in the image (with a default)
    default: Any = None
    sf_key: str | None = None  # key of the scale-factor entry
    fixed_sf: int | None = None  # value of an SF point
    scale: int = 0  # the scale factor applying to this point (fixed once the image is built)

    @property
    def implemented(self) -> bool:
        return self.read is not None or self.const is not None or self.stored or self.fixed_sf is not None


@dataclass(frozen=True)
class Change:
    key: str
    setting: str | None  # physics setting, or None for a stored point
    value: float


def load_map(name: str) -> dict[str, Any]:
    path = MAPS_DIR / f"{name}.yaml"
    if not path.exists():
        raise MapError(f"no device map {name!r} in {MAPS_DIR}")
    device_map = yaml.safe_load(path.read_text(encoding="utf-8"))
    models = []
    for spec in device_map["models"]:
        if "include" in spec:
            spec = yaml.safe_load((MAPS_DIR / f"{spec['include']}.yaml").read_text(encoding="utf-8"))
        models.append(spec)
    return {**device_map, "models": models}


@dataclass
class RegisterImage:
    base: int
    registers: list[int]
    entries: list[Entry]
    by_key: dict[str, Entry]
    owner: list[int]  # register index -> entry index, -1 for ID/L/marker
    overrides: dict[str, list[int]] = field(default_factory=dict)
    stored_values: dict[str, float] = field(default_factory=dict)
    dynamic: list[Entry] = field(default_factory=list)  # points that change: readings and stored settings

    @classmethod
    def build(
        cls, device_map: dict[str, Any], params: dict[str, Any], peaks: dict[str, float]
    ) -> RegisterImage:
        registers = list(sunspec.SUNS_MARKER)
        owner = [-1, -1]
        entries: list[Entry] = []
        for model_spec in device_map["models"]:
            layout = sunspec.load_model(int(model_spec["model"]))
            start = SUNSPEC_BASE + len(registers)
            point_specs: dict[str, Any] = model_spec.get("points", {}) or {}
            scale_specs: dict[str, Any] = model_spec.get("scale", {}) or {}
            for name in list(point_specs) + list(scale_specs):
                layout.point(name)  # raises on a typo in the map
            model_entries: dict[str, Entry] = {}
            for p in layout.points:
                entry = Entry(key=f"{layout.model_id}.{p.name}", address=start + p.offset, point=p)
                if p.name == "ID":
                    entry.const = layout.model_id
                elif p.name == "L":
                    entry.const = layout.length
                elif p.type == "sunssf":
                    entry.fixed_sf = _scale(scale_specs.get(p.name), p.name, layout, peaks)
                else:
                    _bind(entry, point_specs.get(p.name), params)
                model_entries[p.name] = entry
            for entry in model_entries.values():
                sf = entry.point.sf
                if isinstance(sf, str):
                    entry.sf_key = f"{layout.model_id}.{sf}"
                    if entry.implemented and model_entries[sf].fixed_sf is None:
                        raise MapError(f"{entry.key} is mapped but its scale factor {sf} is not")
            for entry in model_entries.values():
                owner.extend([len(entries)] * entry.point.size)
                entries.append(entry)
            registers.extend([0] * (layout.length + 2))
        registers.extend([sunspec.END_MODEL_ID, 0])
        owner.extend([-1, -1])
        image = cls(SUNSPEC_BASE, registers, entries, {e.key: e for e in entries}, owner)
        for entry in entries:
            entry.scale = image.scale_of(entry)
        image.dynamic = [e for e in entries if e.read is not None or e.stored]
        image.reset_stored()
        image._render(entries, {})  # constants, scale factors and not-implemented markers, once
        return image

    def reset_stored(self) -> None:
        self.stored_values = {e.key: float(e.default) for e in self.entries if e.stored}

    def scale_of(self, entry: Entry) -> int:
        if entry.sf_key is None:
            return 0
        sf_entry = self.by_key[entry.sf_key]
        return sf_entry.fixed_sf or 0

    def refresh(self, readings: dict[str, Any]) -> None:
        """Re-encode every point that can change from the device's readings (static ones never move)."""
        self._render(self.dynamic, readings)
        for key, regs in self.overrides.items():
            i = self.by_key[key].address - self.base
            self.registers[i : i + len(regs)] = regs

    def _render(self, entries: list[Entry], readings: dict[str, Any]) -> None:
        registers, base = self.registers, self.base
        for entry in entries:
            regs = self._encode(entry, readings)
            i = entry.address - base
            registers[i : i + len(regs)] = regs

    def _encode(self, entry: Entry, readings: dict[str, Any]) -> list[int]:
        point = entry.point
        if entry.fixed_sf is not None:
            return sunspec.encode(point, entry.fixed_sf)
        if entry.const is not None:
            value = entry.const
        elif entry.stored:
            value = self.stored_values[entry.key]
        elif entry.read is not None:
            value = readings.get(entry.read)
        else:
            value = 0 if point.mandatory and point.type not in ("string", "pad") else None
        return encode_saturating(point, value, entry.scale)

    def force(self, key: str, value: float | None) -> None:
        """Make a point report `value` (saturated to its type) until cleared; None freezes its present value."""
        entry = self._entry(key)
        i = entry.address - self.base
        if value is None:
            self.overrides[key] = self.registers[i : i + entry.point.size]
        else:
            self.overrides[key] = encode_saturating(entry.point, value, self.scale_of(entry))
            self.registers[i : i + entry.point.size] = self.overrides[key]

    def clear_forced(self, key: str | None = None) -> None:
        if key is None:
            self.overrides.clear()
        else:
            self.overrides.pop(key, None)

    def _entry(self, key: str) -> Entry:
        if key not in self.by_key:
            raise KeyError(f"no point {key!r} on this device")
        return self.by_key[key]

    def value(self, key: str) -> float | str | None:
        """A point's present value in engineering units, as a client would decode it."""
        entry = self._entry(key)
        i = entry.address - self.base
        raw = sunspec.decode_raw(entry.point, self.registers[i : i + entry.point.size])
        if raw is None or isinstance(raw, str) or entry.point.type == "sunssf":
            return raw
        return raw * 10.0 ** self.scale_of(entry)

    def read(self, address: int, count: int) -> list[int] | int:
        start = address - self.base
        if start < 0 or start + count > len(self.registers):
            return ILLEGAL_ADDRESS
        return self.registers[start : start + count]

    def plan_write(self, address: int, values: list[int]) -> list[Change] | int:
        """Validate a register write; return the changes it means, or a Modbus exception code."""
        start = address - self.base
        if start < 0 or start + len(values) > len(self.registers):
            return ILLEGAL_ADDRESS
        changes: list[Change] = []
        i = start
        while i < start + len(values):
            index = self.owner[i]
            if index < 0:
                return ILLEGAL_ADDRESS
            entry = self.entries[index]
            first = entry.address - self.base
            if first != i or first + entry.point.size > start + len(values):
                return ILLEGAL_ADDRESS  # a write must cover whole points
            if not entry.point.writable or not (entry.stored or entry.write):
                return ILLEGAL_ADDRESS
            raw = sunspec.decode_raw(entry.point, values[i - start : i - start + entry.point.size])
            if raw is None or isinstance(raw, str):
                return ILLEGAL_VALUE
            if entry.point.symbols and raw not in entry.point.symbols:
                return ILLEGAL_VALUE
            value = raw * 10.0 ** self.scale_of(entry)
            changes.append(Change(entry.key, entry.write, round(value, 9)))
            i += entry.point.size
        return changes

    def apply_stored(self, change: Change) -> None:
        self.stored_values[change.key] = change.value


def encode_saturating(point: Point, value: Any, sf: int) -> list[int]:
    try:
        return sunspec.encode(point, value, sf)
    except sunspec.PointValueError:
        low, high = point.limits()
        scaled = float(value) / 10.0**sf
        return sunspec.encode(point, (high if scaled > high else low) * 10.0**sf, sf)


def _bind(entry: Entry, spec: Any, params: dict[str, Any]) -> None:
    if spec is None:
        return
    if isinstance(spec, str):
        entry.read = spec
        return
    if not isinstance(spec, dict):
        raise MapError(f"{entry.key}: expected a reading name or a mapping, got {spec!r}")
    if "const" in spec:
        entry.const = spec["const"]
    if "param" in spec:
        if spec["param"] not in params:
            raise MapError(f"{entry.key}: device has no parameter {spec['param']!r}")
        entry.const = params[spec["param"]]
    entry.read = spec.get("read")
    entry.write = spec.get("write")
    if "default" in spec:
        entry.stored, entry.default = True, spec["default"]
    if (entry.write or entry.stored) and not entry.point.writable:
        raise MapError(f"{entry.key} is read-only in the SunSpec model; it cannot be written")


def _scale(spec: Any, name: str, layout: sunspec.ModelLayout, peaks: dict[str, float]) -> int | None:
    if spec is None:
        return None
    if isinstance(spec, int):
        return spec
    peak = peaks.get(spec["peak"])
    if peak is None:
        raise MapError(f"{layout.model_id}.{name}: no peak {spec['peak']!r} for this device")
    types = [p.type for p in layout.points if p.sf == name and p.type not in ("sunssf",)]
    finest = int(spec.get("finest", -2))
    sf = finest
    for t in types:
        sf = max(sf, sunspec.auto_scale(peak, t, finest))
    return sf
