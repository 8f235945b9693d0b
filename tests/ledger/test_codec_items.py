"""The codec's item budget (review21 F1): `decode(..., max_items=n)` refuses a value holding more than n array
items and map entries in all, at the header that announces them, before any of them is built; with a budget
at least the value's own count it decodes exactly as without one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger import codec
from peergrid_ledger.codec import DecodeError, decode, encode


def items_in(value: object) -> int:
    """Array items and map entries in `value`, counted together (what `max_items` bounds)."""
    if isinstance(value, list):
        return len(value) + sum(items_in(v) for v in value)
    if isinstance(value, dict):
        return len(value) + sum(items_in(v) for v in value.values())
    return 0


def test_an_array_header_over_the_limit_is_refused_naming_its_count() -> None:
    raw = encode([0] * 10)
    assert decode(raw, max_items=10) == [0] * 10
    with pytest.raises(DecodeError, match=r"array of 10 items at offset 1 exceeds the item limit \(9 of 9"):
        decode(raw, max_items=9)


def test_a_map_header_over_the_limit_is_refused_naming_its_count() -> None:
    raw = encode({"a": 1, "b": 2, "c": 3})
    with pytest.raises(DecodeError, match=r"map of 3 items .* exceeds the item limit \(2 of 2"):
        decode(raw, max_items=2)


def test_the_limit_counts_every_container_of_the_value_together() -> None:
    value = [[0, 1, 2], {"x": [3, 4]}, [5]]  # 3 + 3 + 1 + 2 + 1 = 10
    raw = encode(value)
    assert items_in(value) == 10
    assert decode(raw, max_items=10) == value
    with pytest.raises(DecodeError, match=r"array of 1 items .* \(0 of 9 left\)"):
        decode(raw, max_items=9)  # the last header finds the budget spent


def test_nothing_of_a_refused_array_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hostile envelope of F1: a header announcing a million items that the bytes do hold. Under an item
    limit it is refused at its header: no item of it is decoded (counted on the decoder's one entry point,
    which every item goes through), whereas without a limit every item is."""
    raw = encode([0, [1]] + [2] * 1_000_000)
    calls = [0]
    inner = codec._decode_item

    def counting(*args: object) -> object:
        calls[0] += 1
        return inner(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(codec, "_decode_item", counting)
    with pytest.raises(DecodeError, match="array of 1000002 items"):
        decode(raw, max_items=5)
    assert calls[0] == 1  # the outer header only
    calls[0] = 0
    with pytest.raises(DecodeError, match="array of 1 items"):
        decode(encode([[0, 1, 2], [3]]), max_items=5)  # 2 + 3 fit; the second inner array does not
    assert (
        calls[0] == 1 + (1 + 3) + 1
    )  # outer, first inner array and its 3 ints, the refused one: not its item


def test_a_negative_limit_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        decode(encode([]), max_items=-1)


scalars = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=20)
    | st.text(max_size=10)
    | st.booleans()
    | st.none()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=40,
)


@given(values, st.integers(min_value=0, max_value=50))
@settings(max_examples=400, deadline=None)
def test_a_limit_at_least_the_count_decodes_as_without_one_and_a_smaller_one_refuses(
    value: object, spare: int
) -> None:
    raw = encode(value)
    count = items_in(value)
    assert decode(raw, max_items=count + spare) == decode(raw) == value
    if count > 0:
        for short in {0, count // 2, count - 1}:
            with pytest.raises(DecodeError, match="exceeds the item limit"):
                decode(raw, max_items=short)


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=64))
@settings(max_examples=600, deadline=None)
def test_random_bytes_under_a_limit_decode_as_without_one_or_raise_decode_error(
    raw: bytes, limit: int
) -> None:
    try:
        plain = decode(raw)
    except DecodeError:
        with pytest.raises(DecodeError):
            decode(raw, max_items=limit)
        return
    if items_in(plain) <= limit:
        assert decode(raw, max_items=limit) == plain
    else:
        with pytest.raises(DecodeError):
            decode(raw, max_items=limit)
