"""R37-3: a PCC meter's acc32 energy counter rolls over, and `metering` reads the energy across it as SunSpec
says, (new - old) mod 2^32 counts, where that is within what a meter can count between the two readings
(`rolled_over`, `roll_bound_mwh`); a counter that went back further (a reset, a replaced meter) is refused as
before. Before, every roll-over left the MG `Unmetered` ("runs backwards") until the window no longer held it."""

from __future__ import annotations

from fractions import Fraction
from itertools import accumulate, pairwise

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from peergrid_ledger.codec import encode
from peergrid_ledger.counter_roll import ACC32, ROLL_SCALES, roll_bound_mwh, rolled_over
from peergrid_ledger.metering import COUNTER, Unmetered, counting_leaves, metered, samples

EXPORT = COUNTER["seller"]
SCALES = st.integers(-3, 4)  # TotWh_SF: 1 mWh .. 10 kWh counts (above that a count is more than 306 kWh)


def unit(sf: int) -> int:
    """mWh per count of an acc32 counter at TotWh_SF `sf`, as the edge's leaf carries it."""
    return 10 ** (sf + 3)


def leaf(at_ms: int, count: int, sf: int) -> bytes:
    """The edge's reading leaf of a meter whose export register reads `count`: SunSpec's 0 ("not accumulated")
    left out, as the edge's decoder gives None for it (`counting_leaves` reads it as 0 for a seller)."""
    milli = {"power_w": 0, **({EXPORT: count * unit(sf)} if count else {})}
    return encode({"at_ms": at_ms, "device": "pcc", "milli": milli, "nature": "meter"})


def least_range(mwh: int) -> int:
    """The least acc32 register range (mWh) that holds `mwh`: 2^32 counts at the least scale it fits."""
    return next(ACC32 * unit(sf) for sf in ROLL_SCALES if mwh < ACC32 * unit(sf))


@st.composite
def across_the_wrap(draw: st.DrawFn) -> tuple[int, list[int], list[int], list[bytes]]:
    """(sf, gaps ms, counts each gap counted, the leaves): a meter at TotWh_SF sf starting within what it counts
    of the top of its register, each gap's count at most what a meter counts in it (`roll_bound_mwh`)."""
    sf = draw(SCALES)
    gaps = draw(st.lists(st.integers(1, 60_000), min_size=1, max_size=12))
    counted = [draw(st.integers(0, roll_bound_mwh(gap) // unit(sf))) for gap in gaps]
    start = ACC32 - draw(st.integers(1, sum(counted) + 1))  # a roll-over within the readings (or just after)
    at = draw(st.integers(0, 10**12))
    times = [at, *(at + t for t in accumulate(gaps))]
    counts = [(start + c) % ACC32 for c in (0, *accumulate(counted))]
    return sf, gaps, counted, [leaf(t, c, sf) for t, c in zip(times, counts, strict=True)]


@settings(max_examples=300, deadline=None)
@given(across_the_wrap())
def test_what_a_meter_counted_across_its_roll_over_is_read_exactly(
    case: tuple[int, list[int], list[int], list[bytes]],
) -> None:
    sf, gaps, counted, leaves = case
    leaves = counting_leaves(leaves, "seller")
    found = samples(leaves, EXPORT)
    assert [c1 - c0 for (_, c0), (_, c1) in pairwise(found)] == [c * unit(sf) for c in counted]
    times = [at for at, _ in found]
    assert metered(leaves, (times[0], times[-1]), EXPORT, max(gaps)) == Fraction(
        sum(counted) * unit(sf), 1000
    )
    for (t0, t1), c in zip(pairwise(times), counted, strict=True):
        assert metered(leaves, (t0, t1), EXPORT, max(gaps)) == Fraction(c * unit(sf), 1000)


@settings(max_examples=300, deadline=None)
@given(SCALES, st.integers(1, 60_000), st.data())
def test_a_counter_back_by_more_than_a_roll_over_explains_is_refused(
    sf: int, gap: int, data: st.DataObject
) -> None:
    """A reset or a replaced meter: back to 0, or to any smaller figure, from a counter whose roll-over to it
    would count more than the meter can in the time between the readings. The leaf does not name the scale
    factor, so that is the roll-over of the least acc32 range the old figure fits (`least_range`): a meter at
    TotWh_SF -2 reset from below 4.29 MWh reads as one at -3 would, which `rolled_over` says."""
    before = data.draw(st.integers(1, ACC32 - 1)) * unit(sf)
    after = data.draw(st.sampled_from([0, data.draw(st.integers(0, before // unit(sf) - 1))])) * unit(sf)
    assume(after + least_range(before) - before > roll_bound_mwh(gap))
    assert rolled_over(before, after, gap) is None
    with pytest.raises(Unmetered, match=f"the {EXPORT} counter runs backwards between 0 and {gap} ms"):
        samples(
            counting_leaves([leaf(0, before // unit(sf), sf), leaf(gap, after // unit(sf), sf)], "seller"),
            EXPORT,
        )


def test_a_meter_reset_to_zero_mid_life_is_refused_and_one_near_the_wrap_read_as_a_roll_over() -> None:
    """The one case the leaves cannot tell: a reset from within the bound below the top reads as a roll-over,
    at most the bound (30.6 kWh between polls 1 s apart); from anywhere lower it is refused."""
    bound = roll_bound_mwh(1_000)
    assert bound == 30_555_555
    reset = [leaf(0, 2_000_000_000, 0), leaf(1_000, 0, 0)]  # 2 GWh at TotWh_SF 0, then 0
    with pytest.raises(Unmetered, match=r"runs backwards between 0 and 1000 ms \(reset or replaced\)"):
        samples(counting_leaves(reset, "seller"), EXPORT)
    near = [leaf(0, ACC32 - 30_555, 0), leaf(1_000, 0, 0)]  # 30.555 kWh below the top
    assert metered(counting_leaves(near, "seller"), (0, 1_000), EXPORT, 1_000) == 30_555
    beyond = [leaf(0, ACC32 - 30_556, 0), leaf(1_000, 0, 0)]
    with pytest.raises(Unmetered, match="runs backwards"):
        samples(counting_leaves(beyond, "seller"), EXPORT)
    # R38-2: a Wh meter (TotWh_SF -3 inferred) reset from 4.2 MWh to 0 a second later: 95 kWh from the top,
    # beyond the bound, refused (at a 100-MW bound it was read as 94.97 kWh delivered)
    wh_reset = [leaf(0, 4_200_000_000, -3), leaf(1_000, 0, -3)]
    with pytest.raises(Unmetered, match="runs backwards"):
        samples(counting_leaves(wh_reset, "seller"), EXPORT)


def test_a_counter_that_never_rolls_is_refused_going_back_even_across_the_top() -> None:
    """`rolls=False`: a meter-signed reading's counters (64204, uint64) never roll, so a step back is a reset."""
    wrap = [leaf(0, ACC32 - 5, 0), leaf(1_000, 7, 0)]
    assert metered(wrap, (0, 1_000), EXPORT, 1_000) == 12
    with pytest.raises(Unmetered, match="runs backwards"):
        metered(wrap, (0, 1_000), EXPORT, 1_000, rolls=False)
    with pytest.raises(Unmetered, match="runs backwards"):
        samples(wrap, EXPORT, rolls=False)


def test_a_scale_factor_changed_under_a_kept_count_is_refused_going_back() -> None:
    """A meter that changes TotWh_SF keeps its Wh (the count rescaled); one that keeps its count reads ten times
    less after going from 0 to -1: not a roll-over (whole counts at the scale the old figure needs, but the
    roll-over would count far more than the bound), refused as before."""
    count = 3_000_000_000
    changed = [leaf(0, count, 0), leaf(1_000, count, -1)]
    with pytest.raises(Unmetered, match="runs backwards"):
        samples(changed, EXPORT)


def test_figures_that_are_not_whole_counts_at_the_scale_they_would_roll_at_are_no_roll_over() -> None:
    """Above 2^32 mWh the least scale a counter fits is 10 mWh counts or coarser; a figure off those counts is
    no acc32 register's, so going back from it is refused; beyond every acc32 range likewise."""
    before, after = 5_000_000_000, 3  # fits at 10 mWh a count (TotWh_SF -2); 3 mWh is no whole count of it
    assert rolled_over(before, after, 1_000) is None
    assert rolled_over(before, 0, 1_000) is None  # whole counts, but 38 MWh counted in 1 s: a reset
    assert rolled_over(ACC32 * 10 - 10, 20, 1_000) == 30  # 10 mWh counts: 3 counts across the top
    top = ACC32 * 10 ** (ROLL_SCALES[-1] + 3)
    assert rolled_over(top + 5, 1, 10**9) is None


def test_bad_arguments_are_refused_not_read() -> None:
    with pytest.raises(ValueError, match="did not go back"):
        rolled_over(5, 5, 1_000)
    with pytest.raises(ValueError, match="did not go back"):
        rolled_over(5, -1, 1_000)
    with pytest.raises(ValueError, match="not later"):
        roll_bound_mwh(-1)
