"""Declarative shapes for transaction bodies and state records, checked before any rule runs.

Promises: `check(shape, value)` returns None when `value` has exactly the shape (every field present, no
extra field, each scalar of the right type and range) and raises `RuleError(MALFORMED)` naming the first
offending field otherwise. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .results import Reason, RuleError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Int:
    low: int = 0
    high: int = INT64_MAX


@dataclass(frozen=True, slots=True)
class Bytes:
    size: int | None = None  # exact size, or None for any size up to max_size
    max_size: int = 1024


@dataclass(frozen=True, slots=True)
class Str:
    max_len: int = 64
    min_len: int = 1


@dataclass(frozen=True, slots=True)
class Bool:
    pass


@dataclass(frozen=True, slots=True)
class List:
    item: Shape
    max_len: int = 256


@dataclass(frozen=True, slots=True)
class Map:
    fields: Mapping[str, Shape]


@dataclass(frozen=True, slots=True)
class OneOf:
    """One of several map shapes, told apart by their field sets."""

    options: tuple[Map, ...]


Shape = Int | Bytes | Str | Bool | List | Map | OneOf

KEY = Bytes(size=32)
SIG = Bytes(size=64)
HASH = Bytes(size=32)
INTERVAL = Int(0, 2**40)
ROUND = Int(0, 1_000_000)
PRICE = Int(0, 10**12)  # currency micro-units per Wh
QUANTITY = Int(0, 10**12)  # Wh
POWER = Int(-(10**12), 10**12)  # W, signed: injection positive
LABEL = Str(64)


def max_items(shape: Shape) -> int:
    """The most array items and map entries a value `check` accepts for `shape` can hold: a bound a decoder
    may refuse beyond before building anything (`codec.decode`'s `max_items`), since no more can be valid."""
    if type(shape) is List:
        return shape.max_len * (1 + max_items(shape.item))
    if type(shape) is Map:
        return sum(1 + max_items(field) for field in shape.fields.values())
    if type(shape) is OneOf:
        return max(max_items(option) for option in shape.options)
    return 0


def _fail(where: str, message: str) -> RuleError:
    return RuleError(Reason.MALFORMED, f"{where}: {message}")


def check(shape: Shape, value: Any, where: str = "body") -> None:
    kind = type(value)
    if type(shape) is Int:
        if kind is not int:
            raise _fail(where, "expected an integer")
        if not shape.low <= value <= shape.high:
            raise _fail(where, f"{value} outside [{shape.low}, {shape.high}]")
    elif type(shape) is Bytes:
        if kind is not bytes:
            raise _fail(where, "expected a byte string")
        if shape.size is not None and len(value) != shape.size:
            raise _fail(where, f"expected {shape.size} bytes, got {len(value)}")
        if len(value) > shape.max_size:
            raise _fail(where, f"longer than {shape.max_size} bytes")
    elif type(shape) is Str:
        if kind is not str:
            raise _fail(where, "expected a text string")
        if not shape.min_len <= len(value) <= shape.max_len:
            raise _fail(where, f"length {len(value)} outside [{shape.min_len}, {shape.max_len}]")
    elif type(shape) is Bool:
        if kind is not bool:
            raise _fail(where, "expected true or false")
    elif type(shape) is List:
        if kind is not list:
            raise _fail(where, "expected an array")
        if len(value) > shape.max_len:
            raise _fail(where, f"more than {shape.max_len} items")
        for i, item in enumerate(value):
            check(shape.item, item, f"{where}[{i}]")
    elif type(shape) is Map:
        _check_map(shape, value, where)
    else:
        assert type(shape) is OneOf
        if kind is not dict:
            raise _fail(where, "expected a map")
        for option in shape.options:
            if value.keys() == option.fields.keys():
                _check_map(option, value, where)
                return
        expected = " or ".join(str(sorted(o.fields)) for o in shape.options)
        raise _fail(where, f"expected fields {expected}, got {sorted(value)}")


def _check_map(shape: Map, value: Any, where: str) -> None:
    if type(value) is not dict:
        raise _fail(where, "expected a map")
    if value.keys() != shape.fields.keys():
        missing = sorted(set(shape.fields) - set(value))
        extra = sorted(set(value) - set(shape.fields))
        raise _fail(where, f"missing fields {missing}, unexpected fields {extra}")
    for name, field_shape in shape.fields.items():
        check(field_shape, value[name], f"{where}.{name}")


Validator = Callable[[Any, str], None]


def compile_shape(shape: Shape) -> Validator:
    """A closure that checks exactly what `check(shape, ...)` checks, without re-dispatching on the shape
    for every value (transaction bodies are checked on every apply)."""
    if type(shape) is Int:
        low, high = shape.low, shape.high

        def check_int(value: Any, where: str) -> None:
            if type(value) is not int or not low <= value <= high:
                check(shape, value, where)

        return check_int
    if type(shape) is Bool:

        def check_bool(value: Any, where: str) -> None:
            if type(value) is not bool:
                check(shape, value, where)

        return check_bool
    if type(shape) is Map and all(type(sub) in (Int, Bool) for sub in shape.fields.values()):
        names = frozenset(shape.fields)
        # (name, a Bool?, low, high): checked in one loop, in the fields' order, as `check` does
        scalars = tuple(
            (name, False, sub.low, sub.high) if type(sub) is Int else (name, True, 0, 0)
            for name, sub in shape.fields.items()
        )

        def check_scalar_map(value: Any, where: str) -> None:
            if type(value) is not dict or value.keys() != names:
                check(shape, value, where)
                return
            for name, boolean, low, high in scalars:
                field = value[name]
                if boolean:
                    if type(field) is not bool:
                        break
                elif type(field) is not int or not low <= field <= high:
                    break
            else:
                return
            # the general check refuses at the same field (those before passed the same test), naming it
            check(shape, value, where)

        return check_scalar_map
    if type(shape) is Map:
        names = frozenset(shape.fields)
        fields = [(name, compile_shape(sub)) for name, sub in shape.fields.items()]

        def check_map(value: Any, where: str) -> None:
            if type(value) is not dict or value.keys() != names:
                check(shape, value, where)
                return
            try:
                for name, validate in fields:
                    validate(value[name], where)
            except RuleError:
                check(shape, value, where)  # the same verdict, its words naming the field's path
                raise

        return check_map
    if type(shape) is List:
        item = compile_shape(shape.item)
        max_len = shape.max_len

        def check_list(value: Any, where: str) -> None:
            if type(value) is not list or len(value) > max_len:
                check(shape, value, where)
                return
            try:
                for element in value:
                    item(element, where)
            except RuleError:
                check(shape, value, where)  # the same verdict, its words naming the item ('body.x[3]')
                raise

        return check_list
    return lambda value, where: check(shape, value, where)
