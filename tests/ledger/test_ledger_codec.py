"""Canonical encoding: fixed vectors, round trips, and one typed error for everything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger.codec import MAX_DEPTH, DecodeError, EncodeError, decode, encode
from peergrid_ledger.hashing import digest, prefix

# RFC 8949 Appendix A examples that fall inside our subset, plus map ordering.
VECTORS = [
    (0, "00"),
    (23, "17"),
    (24, "1818"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-1, "20"),
    (-1000, "3903e7"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("IETF", "6449455446"),
    ("\u00fc", "62c3bc"),
    ([], "80"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    ({}, "a0"),
    ({"b": [2, 3], "a": 1}, "a26161016162820203"),
    ({"aa": 1, "b": 2}, "a261620262616101"),  # shorter key first, as deterministic CBOR orders encoded keys
]


@pytest.mark.parametrize(("value", "hexed"), VECTORS)
def test_vectors_encode_and_decode(value: object, hexed: str) -> None:
    assert encode(value).hex() == hexed
    assert decode(bytes.fromhex(hexed)) == value


def test_tuples_encode_like_lists() -> None:
    assert encode((1, 2)) == encode([1, 2])


NON_CANONICAL = {
    "non-shortest integer": "1817",
    "non-shortest 16-bit": "190017",
    "non-shortest length": "5801ff",
    "indefinite bytes": "5f4101ff",
    "indefinite array": "9f01ff",
    "indefinite map": "bf616101ff",
    "half float": "f93c00",
    "double float": "fb3ff0000000000000",
    "undefined": "f7",
    "simple value": "f0",
    "tag": "c11a514b67b0",
    "bignum tag": "c249010000000000000000",
    "unsorted keys": "a2616201616101",
    "longer key before shorter": "a262616101616202",
    "duplicate keys": "a2616101616102",
    "integer key": "a10101",
    "bytes key": "a1410101",
    "invalid utf-8": "62c328",
    "trailing bytes": "0000",
    "truncated string": "6449455",
    "truncated head": "19e8",
    "reserved info": "1c",
    "empty input": "",
}


@pytest.mark.parametrize("hexed", NON_CANONICAL.values(), ids=list(NON_CANONICAL))
def test_non_canonical_or_unsupported_input_is_refused(hexed: str) -> None:
    if len(hexed) % 2:
        hexed = hexed[:-1]
    with pytest.raises(DecodeError):
        decode(bytes.fromhex(hexed))


def test_size_limit_and_container_count_are_enforced() -> None:
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(encode(b"x" * 100), max_size=50)
    # an array announcing 2**32 items in 9 bytes must not allocate anything
    with pytest.raises(DecodeError, match="truncated container"):
        decode(bytes.fromhex("9b0000000100000000"))


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    deep: object = 0
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert decode(encode(deep)) == deep
    with pytest.raises(EncodeError):
        encode([deep])
    with pytest.raises(DecodeError, match="nesting"):
        decode(b"\x81" * (MAX_DEPTH + 1) + b"\x00")
    with pytest.raises(DecodeError):
        decode(b"\x81" * 100_000 + b"\x00")


@pytest.mark.parametrize("bad", [1.5, {1: 2}, {b"k": 1}, object(), 2**64, -(2**64) - 1, {"a": {3}}])
def test_values_outside_the_subset_do_not_encode(bad: object) -> None:
    with pytest.raises(EncodeError):
        encode(bad)


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(DecodeError):
        decode("00")  # type: ignore[arg-type]


scalars = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
@settings(max_examples=300, deadline=None)
def test_round_trip_is_exact_and_unique(value: object) -> None:
    raw = encode(value)
    assert decode(raw) == value
    assert encode(decode(raw)) == raw


@given(st.binary(max_size=200))
@settings(max_examples=1000, deadline=None)
def test_random_bytes_decode_or_raise_decode_error_only(raw: bytes) -> None:
    try:
        value = decode(raw)
    except DecodeError:
        return
    assert encode(value) == raw  # whatever decodes is canonical


@given(values, st.data())
@settings(max_examples=300, deadline=None)
def test_truncated_or_extended_encodings_are_refused(value: object, data: st.DataObject) -> None:
    raw = encode(value)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(DecodeError):
        decode(raw[:cut])
    with pytest.raises(DecodeError):
        decode(raw + data.draw(st.binary(min_size=1, max_size=4)))


@given(values, st.data())
@settings(max_examples=300, deadline=None)
def test_flipped_bytes_never_escape_as_another_exception(value: object, data: st.DataObject) -> None:
    raw = bytearray(encode(value))
    i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[i] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        decoded = decode(bytes(raw))
    except DecodeError:
        return
    assert encode(decoded) == bytes(raw)


def test_hash_domains_separate_types_and_chains() -> None:
    data = b"same bytes"
    assert digest("tx", "a", data) != digest("header", "a", data)
    assert digest("tx", "a", data) != digest("tx", "b", data)
    assert prefix("tx", "mgmc") == encode(["peergrid/1", "tx", "mgmc"])
    with pytest.raises(ValueError):
        digest("nonsense", "a", data)
