"""Canonical binary encoding of every ledger object: a strict subset of deterministic CBOR (RFC 8949 §4.2.1).

Promises: `encode` maps a value built from int, bytes, str, bool, None, list/tuple and dict-with-str-keys to
exactly one byte string, and `decode` accepts exactly the byte strings `encode` can produce, so for every
accepted input `encode(decode(b)) == b` and hashes over encodings are unique. Anything else (truncated or
trailing bytes, non-minimal lengths, indefinite lengths, tags, floats, undefined or simple values, invalid
UTF-8, non-text map keys, unsorted or duplicate keys, nesting deeper than `MAX_DEPTH`, input over the size
limit, more array items and map entries than the caller's `max_items`) raises `DecodeError` and nothing else.
Assumes nothing about where the bytes came from.
Must never do I/O, allocate more than a small multiple of the input size, or trust a length prefix (an item
count is checked against the bytes left and the caller's item budget before a single item is built).

Subset rules: integers in [-2**64, 2**64 - 1] with the shortest head; byte and text strings and arrays and
maps with definite, shortest lengths; map keys are text strings sorted by their encoded bytes (for text
keys that is: shorter first, then bytewise); simple values only false (0xf4), true (0xf5), null (0xf6).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting of arrays and maps accepted (the ledger's own objects nest at most 6 deep)."""

MAX_OBJECT_BYTES = 16 * 1024 * 1024
"""Absolute ceiling on any encoded object; callers pass tighter limits (a transaction, a block)."""

UINT64_MAX = 2**64 - 1

Value = Any
"""A decoded value: int | bytes | str | bool | None | list[Value] | dict[str, Value]."""


class DecodeError(ValueError):
    """Bytes that are not the canonical encoding of a ledger value (or are too large)."""


class EncodeError(ValueError):
    """A value that has no canonical encoding (wrong type, integer out of range, non-text map key)."""


# ---------------------------------------------------------------------------------------------- encoding


_SHORT_HEADS = [[bytes(((major << 5) | n,)) for n in range(24)] for major in range(8)]


def head(major: int, n: int) -> bytes:
    """The canonical head of an item of major type `major` with argument `n` (length or value)."""
    return _head(major, n)


def _head(major: int, n: int) -> bytes:
    mt = major << 5
    if n < 24:
        return _SHORT_HEADS[major][n]
    if n <= 0xFF:
        return bytes((mt | 24, n))
    if n <= 0xFFFF:
        return bytes((mt | 25,)) + n.to_bytes(2, "big")
    if n <= 0xFFFFFFFF:
        return bytes((mt | 26,)) + n.to_bytes(4, "big")
    return bytes((mt | 27,)) + n.to_bytes(8, "big")


_SMALL = _SHORT_HEADS[0]
_ENCODED_KEYS: dict[str, bytes] = {}
_MAP_PLANS: dict[tuple[Any, ...], tuple[bytes, list[tuple[bytes, str]]]] = {}
"""Per key tuple (in insertion order): the map head and the keys in canonical order. A pure memo, bounded."""


def _map_plan(keys: tuple[Any, ...]) -> tuple[bytes, list[tuple[bytes, str]]]:
    plan = _MAP_PLANS.get(keys)
    if plan is None:
        pairs = sorted([(_encoded_key(key), key) for key in keys])
        plan = (_head(5, len(pairs)), pairs)
        if len(_MAP_PLANS) < 4096:
            _MAP_PLANS[keys] = plan
    return plan


def _encoded_key(key: object) -> bytes:
    encoded = _ENCODED_KEYS.get(key) if type(key) is str else None
    if encoded is None:
        if type(key) is not str:
            raise EncodeError(f"map key {key!r} is not a text string")
        raw = key.encode("utf-8")
        encoded = _head(3, len(raw)) + raw
        if len(_ENCODED_KEYS) < 4096:
            _ENCODED_KEYS[key] = encoded
    return encoded


def _encode_into(value: Value, out: list[bytes], depth: int) -> None:
    kind = type(value)
    if kind is int:
        if 0 <= value < 24:
            out.append(_SMALL[value])
        elif value >= 0:
            if value > UINT64_MAX:
                raise EncodeError(f"integer {value} above 2**64-1")
            out.append(_head(0, value))
        else:
            if value < -(2**64):
                raise EncodeError(f"integer {value} below -2**64")
            out.append(_head(1, -1 - value))
    elif kind is bytes:
        out.append(_head(2, len(value)))
        out.append(value)
    elif kind is str:
        raw = value.encode("utf-8")
        out.append(_head(3, len(raw)))
        out.append(raw)
    elif kind is bool:
        out.append(b"\xf5" if value else b"\xf4")
    elif value is None:
        out.append(b"\xf6")
    elif depth >= MAX_DEPTH:
        raise EncodeError(f"nesting deeper than {MAX_DEPTH}")
    elif kind is dict:
        head, pairs = _map_plan(tuple(value))
        out.append(head)
        for encoded, key in pairs:
            out.append(encoded)
            _encode_into(value[key], out, depth + 1)
    elif kind is list or kind is tuple:
        out.append(_head(4, len(value)))
        for item in value:
            _encode_into(item, out, depth + 1)
    elif kind is dict or isinstance(value, Mapping):
        head, pairs = _map_plan(tuple(value))
        out.append(head)
        for encoded, key in pairs:
            out.append(encoded)
            _encode_into(value[key], out, depth + 1)
    else:
        raise EncodeError(f"cannot encode a {kind.__name__}")


def encode(value: Value) -> bytes:
    """The canonical bytes of `value` (see the module docstring for what may be encoded)."""
    out: list[bytes] = []
    _encode_into(value, out, 0)
    return b"".join(out)


# ---------------------------------------------------------------------------------------------- decoding

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from


# Additional info 24..27: (argument width in bytes, its reader, the largest value a shorter head carries).
_WIDE_ARGS = {
    24: (1, struct.Struct(">B").unpack_from, 23),
    25: (2, _U16, 0xFF),
    26: (4, _U32, 0xFFFF),
    27: (8, _U64, 0xFFFFFFFF),
}


def _read_arg(data: bytes, pos: int, info: int, end: int) -> tuple[int, int]:
    """The head's argument and the position after it; refuses non-shortest forms."""
    if info < 24:
        return info, pos
    wide = _WIDE_ARGS.get(info)
    if wide is None:
        if info == 31:
            raise DecodeError(f"indefinite length at offset {pos - 1}")
        raise DecodeError(f"reserved additional information {info} at offset {pos - 1}")
    width, read, shorter_max = wide
    if pos + width > end:
        raise DecodeError(f"truncated head at offset {pos}")
    n: int = read(data, pos)[0]
    if n <= shorter_max:
        raise DecodeError(f"non-shortest length/integer at offset {pos - 1}")
    return n, pos + width


_KEY_CACHE: dict[bytes, str] = {}
"""Decoded map keys by their encoded bytes: the ledger uses a few dozen distinct keys (pure memo, bounded)."""


def _decode_item(data: bytes, pos: int, end: int, depth: int, room: list[int] | None) -> tuple[Value, int]:
    if pos >= end:
        raise DecodeError(f"truncated: expected an item at offset {pos}")
    initial = data[pos]
    pos += 1
    if initial < 0x18:  # small unsigned integer: the commonest item
        return initial, pos
    major = initial >> 5
    info = initial & 0x1F
    if major == 7:
        if initial == 0xF4:
            return False, pos
        if initial == 0xF5:
            return True, pos
        if initial == 0xF6:
            return None, pos
        raise DecodeError(f"float or simple value 0x{initial:02x} at offset {pos - 1} is not allowed")
    if major == 6:
        raise DecodeError(f"tag at offset {pos - 1} is not allowed")
    if info < 24:
        n = info
    else:
        n, pos = _read_arg(data, pos, info, end)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major == 2 or major == 3:
        stop = pos + n
        if stop > end:
            raise DecodeError(f"truncated string at offset {pos}: {n} bytes announced, {end - pos} left")
        chunk = data[pos:stop]
        if major == 2:
            return chunk, stop
        try:
            return chunk.decode("utf-8"), stop
        except UnicodeDecodeError:
            raise DecodeError(f"invalid UTF-8 in text string at offset {pos}") from None
    if depth >= MAX_DEPTH:
        raise DecodeError(f"nesting deeper than {MAX_DEPTH} at offset {pos}")
    if n > end - pos:  # every item takes at least one byte: refuse counts the input cannot hold
        raise DecodeError(f"truncated container at offset {pos}: {n} items announced, {end - pos} bytes left")
    if room is not None:  # the caller's item budget: refuse the header before building any item
        if n > room[0]:
            what = "array" if major == 4 else "map"
            raise DecodeError(
                f"{what} of {n} items at offset {pos} exceeds the item limit ({room[0]} of {room[1]} left)"
            )
        room[0] -= n
    depth += 1
    if major == 4:
        items: list[Value] = []
        append = items.append
        for _ in range(n):
            item, pos = _decode_item(data, pos, end, depth, room)
            append(item)
        return items, pos
    # major == 5: a map with text keys in strictly increasing encoded order
    result: dict[str, Value] = {}
    previous = b""
    for _ in range(n):
        if pos >= end:
            raise DecodeError(f"truncated map at offset {pos}")
        key_start = pos
        head = data[pos]
        if 0x60 <= head < 0x78:  # short text key: the only kind the ledger writes
            pos += 1 + head - 0x60
            if pos > end:
                raise DecodeError(f"truncated map key at offset {key_start}")
            encoded_key = data[key_start:pos]
            key = _KEY_CACHE.get(encoded_key)
            if key is None:
                try:
                    key = encoded_key[1:].decode("utf-8")
                except UnicodeDecodeError:
                    raise DecodeError(f"invalid UTF-8 in map key at offset {key_start}") from None
                if len(_KEY_CACHE) < 4096:
                    _KEY_CACHE[encoded_key] = key
        elif head >> 5 == 3:
            key, pos = _decode_item(data, pos, end, depth, room)
            encoded_key = data[key_start:pos]
        else:
            raise DecodeError(f"map key at offset {pos} is not a text string")
        if encoded_key <= previous:
            raise DecodeError(f"map key {key!r} at offset {key_start} is duplicate or out of canonical order")
        previous = encoded_key
        if pos < end and data[pos] < 0x18:  # small unsigned value: skip the call (the commonest field)
            result[key] = data[pos]
            pos += 1
        else:
            result[key], pos = _decode_item(data, pos, end, depth, room)
    return result, pos


def decode(data: bytes, max_size: int = MAX_OBJECT_BYTES, max_items: int | None = None) -> Value:
    """The value whose canonical encoding is exactly `data`; raises `DecodeError` for anything else.

    `max_items` bounds the work as `max_size` bounds the bytes: the items of every array and the entries
    of every map in the value, counted together, may be at most this many. A header announcing more than
    what is left is refused before any of its items is built, so bytes from a stranger cost at most
    `max_items` items however many they announce (None: only the size bounds them)."""
    room = None if max_items is None else item_budget(max_items)
    if type(data) is not bytes:
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        else:
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
    size = len(data)
    if size > max_size or size > MAX_OBJECT_BYTES:
        raise DecodeError(f"object of {size} bytes exceeds the limit of {min(max_size, MAX_OBJECT_BYTES)}")
    try:
        value, pos = _decode_item(data, 0, size, 0, room)
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps recursion far below Python's limit
        raise DecodeError("nesting too deep") from None
    if pos != size:
        raise DecodeError(f"{size - pos} trailing bytes after the object")
    return value


def item_budget(max_items: int) -> list[int]:
    """A budget of `max_items` array items and map entries that several `decode_prefix` calls share."""
    if max_items < 0:
        raise ValueError(f"max_items must not be negative, got {max_items}")
    return [max_items, max_items]


def decode_prefix(data: bytes, start: int, end: int, budget: list[int] | None = None) -> tuple[Value, int]:
    """One item of `data[start:end]` and the offset after it (for framing fast paths); `DecodeError` if bad.
    With a `budget` (`item_budget`), its items are taken from it as `decode`'s `max_items` would."""
    try:
        return _decode_item(data, start, end, 1, budget)
    except RecursionError:  # pragma: no cover
        raise DecodeError("nesting too deep") from None


_SHORTER_MAX = tuple(_WIDE_ARGS[info][2] for info in range(24, 28))
"""By head 0x18..0x1B (1, 2, 4, 8 argument bytes): the largest value a shorter head carries (`_WIDE_ARGS`)."""
_SIMPLE = {0xF4: False, 0xF5: True, 0xF6: None}


def decode_scalar_map(
    data: bytes, pos: int, end: int, budget: list[int] | None = None
) -> tuple[dict[str, Value], int] | None:
    """`decode_prefix(data, pos, end, budget)` for a map of at most 23 entries whose keys are short text
    strings and whose values are unsigned integers, booleans, null or byte strings of at most 255 bytes (a
    market transaction's body), read in one loop with no call per item; None for any other item, and for
    anything `decode_prefix` refuses. It never raises: the caller then decodes the item generally, which gives
    the verdict and its words. So whatever it returns is exactly what `decode_prefix` returns, with the budget
    charged alike (the map's entries, only once a map is returned)."""
    if pos >= end:
        return None
    n = data[pos] - 0xA0
    pos += 1
    if not 0 <= n < 24 or n > end - pos or (budget is not None and n > budget[0]):
        return None
    result: dict[str, Value] = {}
    previous = b""
    for _ in range(n):
        if pos >= end:
            return None
        head = data[pos]
        if not 0x60 <= head < 0x78:
            return None
        stop = pos + 1 + head - 0x60
        if stop >= end:  # the key's bytes and at least one byte of its value
            return None
        encoded_key = data[pos:stop]
        if encoded_key <= previous:
            return None
        previous = encoded_key
        key = _KEY_CACHE.get(encoded_key)
        if key is None:
            try:
                key = encoded_key[1:].decode("utf-8")
            except UnicodeDecodeError:
                return None
            if len(_KEY_CACHE) < 4096:
                _KEY_CACHE[encoded_key] = key
        initial = data[stop]
        pos = stop + 1
        if initial < 0x18:
            result[key] = initial
        elif initial < 0x1C:  # an unsigned integer of 1, 2, 4 or 8 argument bytes, in its shortest form
            after = pos + (1 << (initial - 0x18))
            if after > end:
                return None
            number = int.from_bytes(data[pos:after], "big")
            if number <= _SHORTER_MAX[initial - 0x18]:
                return None
            result[key], pos = number, after
        elif 0x40 <= initial <= 0x58:  # a byte string: its length in the head, or in one byte from 24
            size = initial - 0x40
            if size == 24:
                if pos >= end or data[pos] < 24:
                    return None
                size = data[pos]
                pos += 1
            after = pos + size
            if after > end:
                return None
            result[key], pos = data[pos:after], after
        elif initial in _SIMPLE:
            result[key] = _SIMPLE[initial]
        else:
            return None
    if budget is not None:
        budget[0] -= n
    return result, pos


# ---------------------------------------------------------------------------------------------- shape helpers


def expect_map(value: Value, what: str, fields: Sequence[str] | frozenset[str]) -> dict[str, Value]:
    """`value` as a map with exactly `fields`; raises DecodeError naming `what` otherwise."""
    if type(value) is not dict:
        raise DecodeError(f"{what}: expected a map")
    if value.keys() != (fields if isinstance(fields, frozenset) else frozenset(fields)):
        raise DecodeError(f"{what}: expected fields {sorted(fields)}, got {sorted(value)}")
    return value


def expect_bytes(value: Value, what: str, size: int | None = None) -> bytes:
    if type(value) is not bytes:
        raise DecodeError(f"{what}: expected a byte string")
    if size is not None and len(value) != size:
        raise DecodeError(f"{what}: expected {size} bytes, got {len(value)}")
    return value


def expect_int(value: Value, what: str, low: int = 0, high: int = UINT64_MAX) -> int:
    if type(value) is not int:
        raise DecodeError(f"{what}: expected an integer")
    if not low <= value <= high:
        raise DecodeError(f"{what}: {value} outside [{low}, {high}]")
    return value


def expect_str(value: Value, what: str, max_len: int = 256) -> str:
    if type(value) is not str:
        raise DecodeError(f"{what}: expected a text string")
    if len(value) > max_len:
        raise DecodeError(f"{what}: longer than {max_len} characters")
    return value


def expect_list(value: Value, what: str, max_len: int) -> list[Value]:
    if type(value) is not list:
        raise DecodeError(f"{what}: expected an array")
    if len(value) > max_len:
        raise DecodeError(f"{what}: more than {max_len} items")
    return value
