"""The scalar-map fast path (`codec.decode_scalar_map`, a transaction body's decode) reads what the general
decoder reads, refuses nothing itself, and leaves every refusal's words to the general decoder.

Checked against `codec.decode_prefix` on canonical maps, on maps it does not take (nested, negative, text
values, long keys or byte strings, 24 entries and more), on mutated and truncated bytes, between other bytes,
and under item budgets: whatever it returns is the general decoder's value, end and budget; wherever the
general decoder refuses it returns None. A refused offer still names its field (R38-1).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys
from test_b2_offer_fast_paths import verdict  # a validator's (reason, words), or None

from peergrid_ledger.codec import DecodeError, decode, decode_prefix, decode_scalar_map, encode
from peergrid_ledger.contracts.market import KINDS as MARKET_KINDS
from peergrid_ledger.schema import compile_shape
from peergrid_ledger.tx import decode_tx, sign_tx

UINT64 = 2**64 - 1
HEAD_EDGES = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, UINT64]
OFFER = {"clean": True, "interval": 29_000_000, "price": 250, "quantity": 1000, "round": 0}

taken = st.one_of(  # the values the fast path reads itself
    st.sampled_from(HEAD_EDGES),
    st.integers(0, UINT64),
    st.booleans(),
    st.none(),
    st.binary(max_size=30),
    st.binary(min_size=250, max_size=260),  # across the one-byte length's bound
)
others = st.one_of(  # the values it leaves to the general decoder
    st.integers(-(2**64), -1),
    st.text(max_size=4),
    st.lists(st.integers(0, 30), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(0, 30), max_size=2),
)
keys = st.one_of(st.sampled_from(sorted(OFFER)), st.text(max_size=12), st.text(min_size=20, max_size=26))


def general(data: bytes, pos: int, end: int, budget: list[int] | None) -> Any:
    try:
        return decode_prefix(data, pos, end, budget)
    except DecodeError:
        return "refused"


def agree(raw: bytes, pos: int, end: int, budget_items: int | None) -> bool:
    """The fast path's answer is the general decoder's (or None, the budget untouched); says if it read."""
    slow = None if budget_items is None else [budget_items, budget_items]
    fast = None if budget_items is None else [budget_items, budget_items]
    expected = general(raw, pos, end, slow)
    got = decode_scalar_map(raw, pos, end, fast)
    if got is None:
        assert fast == (None if budget_items is None else [budget_items, budget_items])
        return False
    assert expected != "refused", (raw.hex(), pos, end)
    assert encode(got[0]) == encode(expected[0]) and got[1] == expected[1]  # True and 1 differ by encoding
    assert [type(v) for v in got[0].values()] == [type(v) for v in expected[0].values()]
    assert list(got[0]) == list(expected[0]) and fast == slow
    return True


def only_taken(value: dict[str, Any]) -> bool:
    """A map the fast path must read itself (not merely may)."""
    return len(value) < 24 and all(
        len(key.encode()) < 24
        and (
            (type(item) is int and item >= 0)
            or item is None
            or type(item) is bool
            or (type(item) is bytes and len(item) <= 255)
        )
        for key, item in value.items()
    )


@given(
    st.dictionaries(keys, st.one_of(taken, others) | taken, max_size=26),
    st.binary(max_size=3),
    st.binary(max_size=3),
    st.one_of(st.none(), st.integers(0, 30)),
    st.data(),
)
@settings(max_examples=400, deadline=None)
@example(OFFER, b"", b"", None, None)
@example(OFFER, b"\xa6", b"\x64kind", 5, None)
def test_the_fast_path_reads_what_the_general_decoder_reads(
    value: dict[str, Any],
    before: bytes,
    after: bytes,
    budget_items: int | None,
    data: st.DataObject | None,
) -> None:
    encoded = encode(value)
    whole = before + encoded + after
    pos = len(before)
    for end in range(pos, len(whole) + 1):  # every truncation, the exact end, and bytes after it
        agree(whole, pos, end, budget_items)
    if data is not None:
        mutated = bytearray(whole)
        for _ in range(data.draw(st.integers(1, 3))):
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
        agree(bytes(mutated), pos, pos + len(encoded), budget_items)
        agree(bytes(mutated), pos, len(whole), budget_items)
    if only_taken(value) and (budget_items is None or budget_items >= len(value)):
        assert agree(whole, pos, pos + len(encoded), budget_items)  # it does read these itself


def uint_heads() -> st.SearchStrategy[bytes]:
    """Unsigned integers under every head width, in the shortest form or not (the codec refuses the latter)."""
    widths = st.sampled_from([(0x18, 1), (0x19, 2), (0x1A, 4), (0x1B, 8)])
    return st.builds(
        lambda wide, edge, delta: (
            bytes([wide[0]]) + min(max(edge + delta, 0), 256 ** wide[1] - 1).to_bytes(wide[1], "big")
        ),
        widths,
        st.sampled_from(HEAD_EDGES[:-1]),
        st.integers(-1, 1),
    )


raw_values = st.one_of(
    st.builds(encode, taken),
    st.builds(encode, others),
    uint_heads(),
    st.builds(
        lambda n, fill: b"\x58" + bytes([n]) + fill * n,
        st.sampled_from([0, 1, 23, 24, 25, 255]),
        st.just(b"x"),
    ),
    st.sampled_from(
        [
            b"\xf4",
            b"\xf5",
            b"\xf6",
            b"\xf7",
            b"\xf8\x20",
            b"\xc0\x00",
            b"\x1c",
            b"\x1c" + bytes(16),
            b"\x1f",
            b"\x5f",
            b"",
        ]
    ),
)
raw_keys = st.one_of(
    st.builds(encode, st.sampled_from(["a", "b", "ab", "clean", "price", "round"])),
    st.builds(encode, st.text(max_size=3)),
    st.sampled_from([b"\x62\xff\xfe", b"\x61", b"\x01", b"\x78\x18" + b"k" * 24, b"\x40"]),
)


@given(
    st.lists(st.tuples(raw_keys, raw_values), max_size=6),
    st.sampled_from(["sorted", "as drawn"]),
    st.integers(-1, 1),
    st.one_of(st.none(), st.integers(0, 8)),
)
@settings(max_examples=600, deadline=None)
@example([(b"\x61a", b"\x01"), (b"\x61a", b"\x02")], "sorted", 0, None)  # a duplicate key
@example([(b"\x61a", b"\x18\x17")], "sorted", 0, None)  # 23 in two bytes
def test_hand_built_maps_are_read_as_the_general_decoder_reads_them(
    entries: list[tuple[bytes, bytes]], order: str, miscount: int, budget_items: int | None
) -> None:
    """Maps built byte by byte: duplicate, unordered and invalid keys, heads not in their shortest form,
    byte strings across the one-byte length, values the codec refuses, and a wrong entry count."""
    if order == "sorted":
        entries = sorted(entries)
    body = b"".join(key + value for key, value in entries)
    count = max(len(entries) + miscount, 0)
    head = bytes([0xA0 + count]) if count < 24 else bytes([0xB8, count])
    raw = b"\x00" + head + body + b"\x64kind"
    for end in range(1, len(raw) + 1):
        agree(raw, 1, end, budget_items)


def test_an_offer_body_takes_the_fast_path() -> None:
    payload = sign_tx(Keys.p1, "c", "offer", 1, 5, OFFER).payload
    assert decode_scalar_map(payload, 6, len(payload)) == decode_prefix(payload, 6, len(payload))
    assert decode_scalar_map(payload, 6, len(payload)) is not None


@pytest.mark.parametrize(
    ("field", "wrong"),
    [
        ("price", b"\x19\x00\xfa"),  # 250 in two bytes: not the shortest head
        ("quantity", b"\x1a\x00\x00\x03\xe8"),
        ("clean", b"\xf7"),  # undefined: a simple value the codec never takes
        ("round", b"\x18"),  # truncated: its argument byte is the next key's head
    ],
)
def test_a_malformed_body_value_is_refused_in_the_general_decoders_words(field: str, wrong: bytes) -> None:
    tx = sign_tx(Keys.p1, "c", "offer", 1, 5, OFFER)
    right = encode(OFFER[field])
    key = encode(field)
    assert tx.raw.count(key + right) == 1
    raw = tx.raw.replace(key + right, key + wrong)
    payload = tx.payload.replace(key + right, key + wrong)
    if len(raw) != len(tx.raw):  # the payload's length and the outer framing follow
        raw = encode([payload, tx.signature])
    with pytest.raises(DecodeError) as general_words:
        decode(payload)
    with pytest.raises(DecodeError) as words:
        decode_tx(raw)
    assert str(words.value) == str(general_words.value)


def test_a_refused_offer_decoded_by_the_fast_path_still_names_its_field() -> None:
    body = dict(OFFER, price=10**12 + 1)
    decoded = decode_tx(sign_tx(Keys.p1, "c", "offer", 1, 5, body).raw).body
    assert verdict(compile_shape(MARKET_KINDS["offer"].shape), decoded) == (
        "malformed",
        "body.price: 1000000000001 outside [0, 1000000000000]",
    )
