"""`meter_signing.Counted`'s parts the DSO reads further by for a meter's clock (review16 C1): `joined` (two
commitment ranges counted apart are one pass over both), `clock_offsets` (the largest offset each way) and
`brackets` (whether the counted meter readings measure a window, as `metering.metered` needs)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_edge.commitments import reading_leaf
from peergrid_ledger.codec import decode, encode
from peergrid_ledger.meter_signing import FIELD, counted_leaves, meter_keypair, sign_reading, stamp_offsets
from peergrid_ledger.metering import Unmetered, metered

METER = meter_keypair(11, "mg1", "pcc")
OTHER = meter_keypair(12, "mg1", "pcc")
BOUND_MS = 2_000
KINDS = ("signed", "unsigned", "said", "foreign", "malformed", "pv")


def leaf(kind: str, at_ms: int, off_ms: int) -> bytes:
    """A leaf as an edge seals it at `at_ms` (ms, MGMC's stamp), its meter `off_ms` off, or as a fault makes it."""
    quantities = {"power_w": 0.0, "energy_wh": float(at_ms), "import_wh": 1.0}
    if kind == "pv":
        return reading_leaf("pv1", "pv", at_ms / 1000, {"power_w": 1.0})
    if kind in ("unsigned", "said"):
        fields = decode(reading_leaf("pcc", "meter", at_ms / 1000, quantities))
        return encode({**fields, "unsigned": "block failed"} if kind == "said" else fields)
    key = OTHER if kind == "foreign" else METER
    signed = sign_reading(key, "m", at_ms + off_ms, at_ms, 1)
    made = reading_leaf("pcc", "meter", at_ms / 1000, quantities, signed)
    if kind == "malformed":
        return encode({**decode(made), FIELD: {**decode(made)[FIELD], "sig": b"\x01"}})
    return made


Drawn = tuple[str, int, int]  # (kind, at_ms, the meter's clock off by, ms)
LEAVES_AT_OFF = (st.integers(10**6, 10**7), st.integers(-(10**6), 10**6))
LEAVES = st.lists(st.tuples(st.sampled_from(KINDS), *LEAVES_AT_OFF), max_size=10)


@settings(max_examples=80, deadline=None)
@given(LEAVES, LEAVES)
def test_two_ranges_counted_apart_and_joined_are_one_pass_over_both(
    first: list[Drawn], second: list[Drawn]
) -> None:
    a = [leaf(*one) for one in first]
    b = [leaf(*one) for one in second]
    joined = counted_leaves(a, METER.public, BOUND_MS).joined(counted_leaves(b, METER.public, BOUND_MS))
    assert joined == counted_leaves([*a, *b], METER.public, BOUND_MS)


@settings(max_examples=80, deadline=None)
@given(LEAVES)
def test_the_clock_offsets_are_the_largest_off_clock_each_way(drawn: list[Drawn]) -> None:
    counted = counted_leaves([leaf(*one) for one in drawn], METER.public, BOUND_MS)
    offsets = [off for kind, _, off in drawn if kind == "signed" and abs(off) > BOUND_MS]
    assert counted.clock_offsets() == (max([0, *offsets]), max([0, *(-off for off in offsets)]))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(("signed", "unsigned", "said", "pv", "malformed")), *LEAVES_AT_OFF))
)
def test_an_mgmcs_own_reading_of_its_meters_offsets_is_the_dsos(drawn: list[Drawn]) -> None:
    """Where every signed reading is its meter's (an honest MGMC's leaves, or a garbled block), the offsets an
    MGMC reads without checking signatures are those the DSO finds counting them (`clock_offsets`), so both
    read the same commitment intervals further."""
    leaves = [leaf(*one) for one in drawn]
    assert stamp_offsets(leaves, BOUND_MS) == counted_leaves(leaves, METER.public, BOUND_MS).clock_offsets()
    assert stamp_offsets([b"\xff", encode([1]), encode({"at_ms": 1})], 0) == (0, 0)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.integers(0, 200_000), min_size=0, max_size=12, unique=True),
    st.integers(0, 150_000),
    st.integers(0, 60_000),
    st.integers(1, 40_000),
)
def test_brackets_is_whether_the_window_is_metered(
    times: list[int], start: int, length: int, gap: int
) -> None:
    """Signed readings at any times (a counter that only rises): `brackets` says True exactly when
    `metered` measures the window from them."""
    counted = counted_leaves([leaf("signed", t, 0) for t in times], METER.public, BOUND_MS)
    window = (start, start + length)
    try:
        metered(counted.leaves, window, "energy_wh", gap)
        measured = True
    except Unmetered:
        measured = False
    assert counted.brackets(window, gap) is measured
