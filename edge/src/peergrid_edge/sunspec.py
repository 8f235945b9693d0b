"""SunSpec register maps as data: decode a model's registers into named, scaled point values.

Promises: `decode_model(model_id, registers)` turns one model block (starting at its ID register) into
`{point: value}` with scale factors applied and "not implemented" sentinels mapped to None. The point layout
comes from SunSpec's own model definitions (the JSON files pysunspec2 ships) and, for the peergrid vendor
models 64201 (controllable load), 64202 (genset), 64203 (fallback) and 64204 (the meter's signed reading:
`meter_signed`), from the vendor definitions in maps/models.
Pure: no I/O beyond reading those bundled definition files once. Repeating groups are not decoded here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

SUNS_MARKER = (0x5375, 0x6E53)  # "SunS"
END_MODEL_ID = 0xFFFF
BASE_ADDRESSES = (40000, 0, 50000)

# Values SunSpec reserves to mean "not implemented" for each type.
_UNIMPLEMENTED = {
    "uint16": 0xFFFF,
    "int16": 0x8000,
    "sunssf": 0x8000,
    "enum16": 0xFFFF,
    "bitfield16": 0xFFFF,
    "acc16": 0,
    "uint32": 0xFFFFFFFF,
    "int32": 0x80000000,
    "acc32": 0,
    "enum32": 0xFFFFFFFF,
    "bitfield32": 0xFFFFFFFF,
    "uint64": 0xFFFFFFFFFFFFFFFF,
    "int64": 0x8000000000000000,
}


class SunSpecError(ValueError):
    """Registers that are not a valid SunSpec model block."""


@dataclass(frozen=True)
class PointDef:
    name: str
    offset: int  # registers from the model's ID register
    size: int
    type: str
    sf: str | int | None
    access: str  # "R" or "RW"
    units: str | None


@dataclass(frozen=True)
class ModelDef:
    id: int
    name: str
    points: tuple[PointDef, ...]

    def point(self, name: str) -> PointDef:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"model {self.id} has no point {name!r}")


@cache
def model_def(model_id: int) -> ModelDef:
    # Standard models from SunSpec's own definitions; vendor models (64xxx) from our maps/models, same format.
    for package, folder in (("sunspec2", "models/json"), ("peergrid_edge", "maps/models")):
        try:
            text = resources.files(package).joinpath(f"{folder}/model_{model_id}.json").read_text()
            break
        except FileNotFoundError:
            continue
    else:
        raise SunSpecError(f"no SunSpec definition for model {model_id}")
    group = json.loads(text)["group"]
    points, offset = [], 0
    for p in group["points"]:
        points.append(
            PointDef(
                name=p["name"],
                offset=offset,
                size=int(p["size"]),
                type=p["type"],
                sf=p.get("sf"),
                access=p.get("access", "R"),
                units=p.get("units"),
            )
        )
        offset += int(p["size"])
    return ModelDef(model_id, group["name"], tuple(points))


def _raw(point: PointDef, registers: list[int]) -> int | str | None:
    words = registers[point.offset : point.offset + point.size]
    if len(words) < point.size:
        return None
    if point.type == "string":
        raw = b"".join(w.to_bytes(2, "big") for w in words)
        return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
    value = 0
    for w in words:
        value = (value << 16) | w
    if value == _UNIMPLEMENTED.get(point.type):
        return None
    if point.type in ("int16", "sunssf") and value >= 0x8000:
        value -= 0x10000
    elif point.type == "int32" and value >= 0x80000000:
        value -= 0x100000000
    elif point.type == "int64" and value >= 1 << 63:
        value -= 1 << 64
    return value


def decode_model(model_id: int, registers: list[int]) -> dict[str, float | int | str | None]:
    """Decode a model block; `registers[0]` is the model ID register."""
    if len(registers) < 2 or registers[0] != model_id:
        raise SunSpecError(f"block does not start with model id {model_id}")
    mdef = model_def(model_id)
    raws = {p.name: _raw(p, registers) for p in mdef.points}
    values: dict[str, float | int | str | None] = {}
    for p in mdef.points:
        raw = raws[p.name]
        if p.type == "sunssf" or raw is None or isinstance(raw, str) or p.sf is None:
            values[p.name] = raw
            continue
        sf = p.sf if isinstance(p.sf, int) else raws.get(p.sf)
        # SunSpec allows scale factors -10..10; anything else is a broken device, not a number.
        valid = isinstance(sf, int) and -10 <= sf <= 10
        values[p.name] = raw * (10.0**sf) if valid and isinstance(sf, int) else None
    return values


def refused_scales(model_id: int, registers: list[int]) -> dict[str, str]:
    """The points of a model block that `decode_model` gives as None only because their scale factor was
    refused (the point itself implemented), each with why: {"TotWhExp": "TotWh_SF 11, outside -10..10"}.
    A point that is itself "not implemented" is not listed, whatever its scale factor."""
    if len(registers) < 2 or registers[0] != model_id:
        raise SunSpecError(f"block does not start with model id {model_id}")
    mdef = model_def(model_id)
    raws = {p.name: _raw(p, registers) for p in mdef.points}
    refused: dict[str, str] = {}
    for p in mdef.points:
        if p.type == "sunssf" or not isinstance(p.sf, str) or not isinstance(raws[p.name], int):
            continue
        sf = raws.get(p.sf)
        if sf is None:
            refused[p.name] = f"{p.sf} not implemented"
        elif not isinstance(sf, int) or not -10 <= sf <= 10:
            refused[p.name] = f"{p.sf} {sf}, outside -10..10"
    return refused


def encode_point(point: PointDef, value: float, sf: int | None) -> list[int]:
    """Registers for writing `value` (engineering units) to `point`, given its scale factor (`scale_factor`;
    None only for a point that has none). A point whose scale factor is unknown is never written: at an
    assumed 0 the device would read 10^sf times the value meant (review25 F4)."""
    if point.type == "string" or point.type == "sunssf":
        raise SunSpecError(f"point {point.name} ({point.type}) is not a writable number")
    if sf is None and point.sf is not None:
        raise SunSpecError(f"point {point.name}: its scale factor {point.sf} is unknown; not written")
    raw = round(value / (10.0 ** (sf or 0)))
    bits = 16 * point.size
    signed = point.type in ("int16", "int32", "int64")
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    raw_unsigned = raw & ((1 << bits) - 1)
    sentinel = _UNIMPLEMENTED.get(point.type) if not point.type.startswith("acc") else None
    if not low <= raw <= high or raw_unsigned == sentinel:
        raise SunSpecError(f"value {value} does not fit point {point.name} ({point.type}, sf {sf})")
    raw = raw_unsigned
    return [(raw >> (16 * (point.size - 1 - i))) & 0xFFFF for i in range(point.size)]


def scale_factor(
    mdef: ModelDef, point: PointDef, raw_values: dict[str, float | int | str | None]
) -> int | None:
    """The scale factor that applies to `point`, from the model's decoded values (SF points are raw ints);
    None for a point without one. An SF point the device reports as not implemented, or outside SunSpec's
    -10..10, is a `SunSpecError` saying which (the read of the same points gives None for them)."""
    if point.sf is None:
        return None
    if isinstance(point.sf, int):
        return point.sf
    sf = raw_values.get(point.sf)
    if sf is None:
        raise SunSpecError(f"{mdef.id}.{point.name}: its scale factor {point.sf} is not implemented")
    if not isinstance(sf, int) or not -10 <= sf <= 10:
        raise SunSpecError(f"{mdef.id}.{point.name}: its scale factor {point.sf} is {sf}, outside -10..10")
    return sf


def model_length(model_id: int) -> int:
    """Registers of a model block after its ID and L registers."""
    mdef = model_def(model_id)
    return sum(p.size for p in mdef.points) - 2
