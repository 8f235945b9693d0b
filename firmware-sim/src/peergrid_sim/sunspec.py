"""SunSpec model layouts and point codecs, read from SunSpec's own model definitions.

Promises: `load_model(id)` returns the register layout of a SunSpec model exactly as the JSON definition
shipped by pysunspec2 gives it (or one of our vendor models in `maps/models/`, same format); point values
are packed to and unpacked from 16-bit registers with the standard's types, scale factors and
"not implemented" markers. Pure: no I/O besides reading the definition files once, no clock.
Assumes models without repeating groups (every model we emulate is one). Never guesses a layout.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sunspec2

STANDARD_MODELS_DIR = Path(sunspec2.__file__).resolve().parent / "models" / "json"
VENDOR_MODELS_DIR = Path(__file__).resolve().parent / "maps" / "models"
SUNS_MARKER = (0x5375, 0x6E53)  # "SunS"
END_MODEL_ID = 0xFFFF

# type -> (registers, signed, not-implemented raw value); strings/pads are sized by the definition.
_INT_TYPES: dict[str, tuple[int, bool, int]] = {
    "uint16": (1, False, 0xFFFF),
    "int16": (1, True, 0x8000),
    "enum16": (1, False, 0xFFFF),
    "bitfield16": (1, False, 0xFFFF),
    "sunssf": (1, True, 0x8000),
    "count": (1, False, 0),
    "acc16": (1, False, 0),
    "uint32": (2, False, 0xFFFFFFFF),
    "int32": (2, True, 0x80000000),
    "enum32": (2, False, 0xFFFFFFFF),
    "bitfield32": (2, False, 0xFFFFFFFF),
    "acc32": (2, False, 0),
    "ipaddr": (2, False, 0),
    "uint64": (4, False, 0xFFFFFFFFFFFFFFFF),
    "int64": (4, True, 0x8000000000000000),
    "acc64": (4, False, 0),
}
_ACCUMULATORS = {"acc16", "acc32", "acc64"}


class ModelDefinitionError(Exception):
    """A model id with no definition, or a definition this emulator cannot lay out."""


class PointValueError(ValueError):
    """A value that the point cannot hold (out of its type's range, not one of its symbols)."""


@dataclass(frozen=True)
class Point:
    name: str
    offset: int  # registers from the model's ID register
    size: int
    type: str
    sf: str | int | None
    writable: bool
    mandatory: bool
    symbols: tuple[int, ...]  # allowed values of enums, empty if unconstrained

    def limits(self) -> tuple[int, int]:
        """Raw integer range the point can carry, excluding its not-implemented marker."""
        regs, signed, _unimpl = _INT_TYPES[self.type]
        bits = 16 * regs
        if signed:
            return -(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1
        if self.type in _ACCUMULATORS or self.type == "count":
            return 0, (1 << bits) - 1
        return 0, (1 << bits) - 2


@dataclass(frozen=True)
class ModelLayout:
    model_id: int
    name: str
    length: int  # the L register: registers after ID and L
    points: tuple[Point, ...]

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise ModelDefinitionError(f"model {self.model_id} has no point {name!r}")


@functools.cache
def load_model(model_id: int) -> ModelLayout:
    for directory in (STANDARD_MODELS_DIR, VENDOR_MODELS_DIR):
        path = directory / f"model_{model_id}.json"
        if path.exists():
            return _layout(json.loads(path.read_text(encoding="utf-8")))
    raise ModelDefinitionError(f"no SunSpec definition for model {model_id}")


def _layout(definition: dict[str, Any]) -> ModelLayout:
    group = definition["group"]
    if group.get("groups"):
        raise ModelDefinitionError(f"model {definition['id']} has repeating groups; not emulated")
    points: list[Point] = []
    offset = 0
    for p in group["points"]:
        size = int(p["size"])
        if p["type"] in _INT_TYPES and _INT_TYPES[p["type"]][0] != size:
            raise ModelDefinitionError(
                f"model {definition['id']} point {p['name']}: size {size} != type size"
            )
        if p["type"] not in _INT_TYPES and p["type"] not in ("string", "pad"):
            raise ModelDefinitionError(
                f"model {definition['id']} point {p['name']}: type {p['type']} not emulated"
            )
        points.append(
            Point(
                name=p["name"],
                offset=offset,
                size=size,
                type=p["type"],
                sf=p.get("sf"),
                writable=p.get("access") == "RW",
                mandatory=p.get("mandatory") == "M",
                symbols=tuple(s["value"] for s in p.get("symbols", ()))
                if p["type"].startswith("enum")
                else (),
            )
        )
        offset += size
    return ModelLayout(definition["id"], group["name"], offset - 2, tuple(points))


def encode(point: Point, value: float | int | str | None, sf: int = 0) -> list[int]:
    """Physical value -> registers; None -> the standard's not-implemented marker."""
    if point.type == "pad":
        return [0] * point.size
    if point.type == "string":
        raw = b"" if value is None else str(value).encode("utf-8")[: 2 * point.size]
        raw = raw.ljust(2 * point.size, b"\0")
        return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    regs, _signed, unimpl = _INT_TYPES[point.type]
    if value is None:
        integer = unimpl
    else:
        scaled = float(value) / (10.0**sf) if point.type != "sunssf" else float(value)
        if not math.isfinite(scaled):
            raise PointValueError(f"{point.name}: {value!r} is not a finite number")
        integer = round(scaled)
        low, high = point.limits()
        if point.type in _ACCUMULATORS:
            integer %= high + 1  # accumulators roll over as the standard says
        elif not low <= integer <= high:
            raise PointValueError(f"{point.name}: {value!r} does not fit {point.type} with scale 10^{sf}")
        if integer < 0:
            integer += 1 << (16 * regs)
    return [(integer >> (16 * (regs - 1 - i))) & 0xFFFF for i in range(regs)]


def decode_raw(point: Point, registers: list[int]) -> int | str | None:
    """Registers -> raw integer (or string); None for the not-implemented marker."""
    if point.type == "string":
        raw = b"".join(r.to_bytes(2, "big") for r in registers)
        return raw.rstrip(b"\0").decode("utf-8", errors="replace")
    if point.type == "pad":
        return 0
    regs, signed, unimpl = _INT_TYPES[point.type]
    integer = 0
    for r in registers:
        integer = (integer << 16) | r
    if integer == unimpl and point.type not in _ACCUMULATORS:
        return None
    if signed and integer >= 1 << (16 * regs - 1):
        integer -= 1 << (16 * regs)
    return integer


def auto_scale(peak: float, point_type: str, finest: int = -3) -> int:
    """The finest scale factor (>= `finest`) at which `peak` still fits the point type."""
    regs, signed, _ = _INT_TYPES[point_type]
    limit = (1 << (16 * regs - 1)) - 1 if signed else (1 << (16 * regs)) - 2
    sf = finest
    while abs(peak) / (10.0**sf) > limit and sf < 10:
        sf += 1
    return sf
