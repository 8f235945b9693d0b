"""L3: a PCC meter's counter that steps forward by more than the MG's connection carries between two readings is no
energy: the window is unmetered for that meter, as a reset is (`metering.CounterBroken`), never counted as
delivered. The bound is the roll-over's (`counter_roll.roll_bound_mwh`): the connection capacity the DSO posted
for the MG as a power (`counter_roll.posted_w`; 10 MW where none is posted) over the time between the readings'
stamps plus 10 s, so one figure says what a meter can count between two readings whichever way its counter
moved (`counter_roll.counted_forward`). Before, forward steps were never refused: a count kept under a raised
TotWh_SF read as ten times the energy. A meter that counts within its connection reads exactly as before."""

from __future__ import annotations

from itertools import accumulate, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_l2_never_rolls import EXPORT, ONE_MW, leaf  # a PCC meter's reading leaf, its export counter

from peergrid_ledger.counter_roll import ACC32, counted_forward, roll_bound_mwh, rolled_over
from peergrid_ledger.metering import CounterBroken, Unmetered, metered, samples

# the power bounding a step: a posted connection (1 kW to 20 MW) or None, none posted (10 MW)
MOST_W = st.none() | st.integers(1_000, 20_000_000)


@st.composite
def a_meter(draw: st.DrawFn) -> tuple[int | None, list[tuple[int, int]]]:
    """(most_w, readings (at_ms, counter mWh)): a counter that never goes back, read 0-120 s apart, each step
    either what a meter could count (at most the bound) or, now and then, a jump anywhere past it (a raised
    scale factor: up to 9x the counter; a replaced meter: any figure)."""
    most_w = draw(MOST_W)
    first = draw(st.integers(0, 10**12))  # up to 1 GWh
    gaps = draw(st.lists(st.integers(0, 120_000), min_size=1, max_size=9))
    readings = [(0, first)]
    for gap in gaps:
        at, counter = readings[-1]
        bound = roll_bound_mwh(gap, most_w)
        step = draw(
            st.integers(0, bound)
            | st.integers(bound - 2, bound + 2).filter(lambda s: s >= 0)
            | st.integers(bound + 1, bound + 10 * counter + 10**10)
        )
        readings.append((at + gap, counter + step))
    return most_w, readings


@settings(max_examples=400, deadline=None)
@given(a_meter(), st.sampled_from([None, False]))
def test_a_forward_step_is_energy_only_within_what_the_connection_carries(
    meter: tuple[int | None, list[tuple[int, int]]], rolls: bool | None
) -> None:
    """The rule, both ways: refused (`CounterBroken`, naming the first such pair) exactly where some step is more
    than the bound over its pair's time; else the readings are the counter as read, as before L3."""
    most_w, readings = meter
    leaves = [leaf(at, mwh, rolls) for at, mwh in readings]
    jumps = [
        (at0, at1)
        for (at0, c0), (at1, c1) in pairwise(readings)
        if c1 - c0 > roll_bound_mwh(at1 - at0, most_w)
    ]
    for (at0, c0), (at1, c1) in pairwise(readings):  # the one rule, pair by pair
        beyond = c1 - c0 > roll_bound_mwh(at1 - at0, most_w)
        assert counted_forward(c0, c1, at1 - at0, most_w) == (None if beyond else c1 - c0)
    if not jumps:
        assert samples(leaves, EXPORT, most_w=most_w) == readings
        return
    with pytest.raises(CounterBroken, match="jumps forward") as raised:
        samples(leaves, EXPORT, most_w=most_w)
    at0, at1 = jumps[0]
    assert f"between {at0} and {at1} ms" in str(raised.value)
    assert isinstance(raised.value, Unmetered)  # unmetered, as a reset is


@settings(max_examples=200, deadline=None)
@given(MOST_W, st.lists(st.tuples(st.integers(0, 60_000), st.integers(0, 1_000)), min_size=1, max_size=10))
def test_a_meter_counting_at_most_its_connection_is_never_refused(
    most_w: int | None, polls: list[tuple[int, int]]
) -> None:
    """An honest meter: between any two readings it counts at most its connection's power over their time
    (`per_mille` of it); its window reads the counter's advance, however long the gaps, whatever the power."""
    power = 10_000_000 if most_w is None else most_w
    ats = list(accumulate(gap for gap, _ in polls))
    steps = [power * gap * per_mille // 3_600_000 for gap, per_mille in polls]  # mWh: W x ms / 3600 x share
    counters = list(accumulate(steps, initial=7_000_000))[1:]
    leaves = [leaf(at, c) for at, c in zip(ats, counters, strict=True)]
    assert samples(leaves, EXPORT, most_w=most_w) == sorted(zip(ats, counters, strict=True))


def test_a_raised_scale_factor_is_refused_at_the_posted_connection_and_at_10_mw() -> None:
    """The note's case: a 1 MW MG, 1-s polls, its meter's count at 1 MWh kept while TotWh_SF goes 0 -> 1: the
    leaf reads 10 MWh, 9 MWh counted in a second where 1 MW carries 3.06 kWh (and 10 MW 30.6 kWh)."""
    leaves = [leaf(0, 10**9), leaf(1_000, 10**9 + 250_000), leaf(2_000, 10 * (10**9 + 250_000))]
    for most_w in (ONE_MW, None):
        with pytest.raises(CounterBroken, match=r"jumps forward 9002250000 mWh between 1000 and 2000 ms"):
            metered(leaves, (0, 2_000), EXPORT, 1_000, most_w=most_w)
    # the words: what the step was bounded by
    with pytest.raises(CounterBroken, match=r"\(3055555 mWh at 1000000 W, posted\)"):
        samples(leaves, EXPORT, most_w=ONE_MW)
    with pytest.raises(CounterBroken, match=r"\(30555555 mWh at 10000000 W, none posted\)"):
        samples(leaves, EXPORT)


def test_where_no_capacity_is_posted_10_mw_bounds_it_so_a_small_counter_still_passes() -> None:
    """Without a posted capacity the bound is 10 MW (no MG peergrid serves carries that at its PCC): a raised
    scale factor on a counter under 3.4 kWh (9x it within 30.6 kWh a second) still reads as counted; with the
    MG's 1 MW posted it is refused."""
    leaves = [leaf(0, 3_000_000), leaf(1_000, 30_000_000)]  # 3 kWh read as 30 kWh: 27 kWh in a second
    assert metered(leaves, (0, 1_000), EXPORT, 1_000) == 27_000
    with pytest.raises(CounterBroken, match="jumps forward"):
        metered(leaves, (0, 1_000), EXPORT, 1_000, most_w=ONE_MW)


def test_the_bound_is_the_roll_overs_and_a_step_at_it_counts() -> None:
    bound = roll_bound_mwh(1_000, ONE_MW)
    assert bound == 3_055_555  # 1 MW over 1 s + 10 s, in mWh
    assert counted_forward(5, 5 + bound, 1_000, ONE_MW) == bound
    assert counted_forward(5, 6 + bound, 1_000, ONE_MW) is None
    assert counted_forward(5, 5, 0, ONE_MW) == 0
    with pytest.raises(ValueError, match="went back"):
        counted_forward(6, 5, 1_000, ONE_MW)
    with pytest.raises(ValueError, match="not later"):
        counted_forward(5, 6, -1, ONE_MW)


def test_a_roll_over_then_a_jump_is_refused_and_a_roll_over_alone_still_counts() -> None:
    wrap = [leaf(0, ACC32 - 2_000_000), leaf(1_000, 500_000)]
    assert rolled_over(ACC32 - 2_000_000, 500_000, 1_000, ONE_MW) == 2_500_000
    assert metered(wrap, (0, 1_000), EXPORT, 1_000, most_w=ONE_MW) == 2_500
    with pytest.raises(CounterBroken, match="jumps forward 4500000 mWh between 1000 and 2000 ms"):
        metered([*wrap, leaf(2_000, 5_000_000)], (0, 1_000), EXPORT, 1_000, most_w=ONE_MW)


def test_a_reset_is_the_same_refusal_and_a_jump_outside_the_window_refuses_it_as_a_reset_does() -> None:
    """Both ways a `CounterBroken`, wherever among the readings read for the window the pair stands."""
    honest = [leaf(0, 10**9), leaf(1_000, 10**9 + 1_000), leaf(2_000, 10**9 + 2_000)]
    assert metered(honest, (0, 1_000), EXPORT, 1_000) == 1
    with pytest.raises(CounterBroken, match="runs backwards between 2000 and 3000 ms"):
        metered([*honest, leaf(3_000, 5)], (0, 1_000), EXPORT, 1_000)
    with pytest.raises(CounterBroken, match=r"jumps forward .* between 2000 and 3000 ms"):
        metered([*honest, leaf(3_000, 10**11)], (0, 1_000), EXPORT, 1_000)


def test_a_signed_meters_counter_is_bounded_alike() -> None:
    """A meter-signed reading's counters (`rolls=False` at the DSO) never roll, and never jump either."""
    leaves = [leaf(0, 10**9), leaf(1_000, 10**10)]
    with pytest.raises(CounterBroken, match="jumps forward"):
        metered(leaves, (0, 1_000), EXPORT, 1_000, rolls=False, most_w=ONE_MW)
