"""`peergrid_ledger.metering`: the one reading of an MG's PCC meter leaves that the edge states a trade from and
the DSO settles a dispute from. Properties of the arithmetic (exact at readings, linear between them, additive
over adjoining windows, monotone in energy, order-free), and every bad reading refused with `Unmetered`, never
another exception and never a number."""

from __future__ import annotations

import math
import random
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from peergrid_ledger.codec import encode
from peergrid_ledger.metering import (
    COUNTER,
    Unmetered,
    commitment_intervals,
    counter_at,
    meter_shares,
    metered,
    pro_rata,
    samples,
    trade_share,
)

EXPORT = COUNTER["seller"]


def leaf(at_ms: Any, counters: Any, device: Any = "pcc", nature: Any = "meter") -> bytes:
    """A reading leaf as the edge seals it (`commitments.reading_leaf`): quantities in milli-units."""
    return encode({"at_ms": at_ms, "device": device, "milli": counters, "nature": nature})


def meter(series: list[tuple[int, int]], counter: str = EXPORT) -> list[bytes]:
    return [leaf(at, {counter: c, "power_w": 0}) for at, c in series]


@st.composite
def series(draw: st.DrawFn, max_step_ms: int = 5_000) -> list[tuple[int, int]]:
    """A meter's (at_ms, counter mWh): times rising, the counter never falling."""
    gaps = draw(st.lists(st.integers(1, max_step_ms), min_size=1, max_size=15))
    steps = draw(st.lists(st.integers(0, 10**6), min_size=len(gaps), max_size=len(gaps)))
    at, c, out = draw(st.integers(0, 10**9)), draw(st.integers(0, 10**12)), []
    for gap, step in zip(gaps, steps, strict=True):
        at, c = at + gap, c + step
        out.append((at, c))
    return out


def within(found: list[tuple[int, int]], data: st.DataObject) -> tuple[int, int]:
    """A window inside the readings' span."""
    lo, hi = found[0][0], found[-1][0]
    a, b = data.draw(st.integers(lo, hi)), data.draw(st.integers(lo, hi))
    return min(a, b), max(a, b)


# --- the arithmetic ----------------------------------------------------------------------------------------------


@given(found=series())
def test_the_counter_at_a_reading_is_that_reading_and_energy_between_readings_is_their_difference(
    found: list[tuple[int, int]],
) -> None:
    for at, c in found:
        assert counter_at(found, at, 1) == c  # exact, whatever the gap allowed
    (t0, c0), (t1, c1) = found[0], found[-1]
    assert metered(meter(found), (t0, t1), EXPORT, 1) == Fraction(c1 - c0, 1000)


@given(times=st.lists(st.integers(0, 10**6), min_size=2, max_size=12, unique=True), rate=st.integers(0, 2_777),
       data=st.data())  # fmt: skip
def test_a_steady_power_is_measured_exactly_between_any_readings(
    times: list[int], rate: int, data: st.DataObject
) -> None:
    """A counter rising at `rate` mWh per ms, read at arbitrary times: any window is rate × its length. At most
    10 MW (2,777 mWh per ms): a faster counter is no connection's energy where none is posted (L3)."""
    found = [(t, 7 + rate * t) for t in sorted(times)]
    start, end = within(found, data)
    assert metered(meter(found), (start, end), EXPORT, 10**6) == Fraction(rate * (end - start), 1000)


@given(found=series(), data=st.data())
def test_energy_is_additive_over_adjoining_windows_and_never_negative(
    found: list[tuple[int, int]], data: st.DataObject
) -> None:
    a, c = within(found, data)
    b = data.draw(st.integers(a, c))
    leaves, gap = meter(found), 5_000
    whole = metered(leaves, (a, c), EXPORT, gap)
    assert whole == metered(leaves, (a, b), EXPORT, gap) + metered(leaves, (b, c), EXPORT, gap)
    assert whole >= 0


@given(steps=st.lists(st.integers(0, 5_000_000), min_size=1, max_size=12), boundary=st.integers(0, 120_000),
       bump=st.integers(0, 10**6), at=st.integers(0, 12))  # fmt: skip
def test_counter_at_is_monotone_in_any_later_bump(
    steps: list[int], boundary: int, bump: int, at: int
) -> None:
    """Energy that flowed at or after some reading raises every later counter by the same amount: the counter
    read at any boundary never falls, and the energy over a window never falls."""
    found, c = [], 0
    for i, step in enumerate(steps):
        c += step
        found.append((i * 10_000, c))
    bumped = [(t, v + bump if i >= at else v) for i, (t, v) in enumerate(found)]
    last = found[-1][0]
    lo, hi = sorted((boundary % (last + 1), (boundary * 7) % (last + 1)))
    before = counter_at(found, hi, 10_000) - counter_at(found, lo, 10_000)
    after = counter_at(bumped, hi, 10_000) - counter_at(bumped, lo, 10_000)
    assert 0 <= before <= after
    assert counter_at(found, lo, 10_000) <= counter_at(bumped, lo, 10_000)


@given(found=series(), seed=st.integers(0, 2**32), data=st.data())
def test_the_order_of_the_leaves_and_other_readings_among_them_change_nothing(
    found: list[tuple[int, int]], seed: int, data: st.DataObject
) -> None:
    window = within(found, data)
    others = [
        leaf(found[0][0], {"power_w": -5, EXPORT: 1}, device="pv1", nature="pv"),  # another nature's counter
        leaf(found[-1][0], {"power_w": 3}),  # the meter, without this counter
        leaf(found[0][0], {"import_wh": 10**15}),  # the meter's other counter
    ]
    mixed = meter(found) + others
    random.Random(seed).shuffle(mixed)
    assert samples(mixed, EXPORT) == found
    assert metered(mixed, window, EXPORT, 5_000) == metered(meter(found), window, EXPORT, 5_000)


# --- what cannot be metered ---------------------------------------------------------------------------------------


@given(found=series(), where=st.integers(0, 14), drop=st.integers(1, 10**6))
def test_a_counter_that_runs_backwards_measures_nothing(
    found: list[tuple[int, int]], where: int, drop: int
) -> None:
    """A reset or a replaced meter: no rollover is undone, the whole MG's metering is refused."""
    assume(len(found) >= 2)
    i = 1 + where % (len(found) - 1)
    assume(found[i - 1][1] > 0)  # a counter that falls to below zero is refused as no meter's reading
    broken = [*found[:i], (found[i][0], max(0, found[i - 1][1] - drop)), *found[i + 1 :]]
    with pytest.raises(Unmetered, match="runs backwards"):
        metered(meter(broken), (found[0][0], found[-1][0]), EXPORT, 10**9)


@given(found=series(max_step_ms=50_000), gap=st.integers(1, 50_000), data=st.data())
def test_a_boundary_is_measured_only_between_readings_at_most_the_gap_apart(
    found: list[tuple[int, int]], gap: int, data: st.DataObject
) -> None:
    at = data.draw(st.integers(found[0][0] - 10, found[-1][0] + 10))
    before = [t for t, _ in found if t <= at]
    after = [t for t, _ in found if t >= at]
    try:
        counter_at(found, at, gap)
    except Unmetered as exc:
        assert "apart around" in str(exc)
        assert not before or not after or after[0] - before[-1] > gap
    else:
        assert before and after and after[0] - before[-1] <= gap


BAD_READINGS = [
    (b"\xff\x00junk", "does not decode"),
    (encode([1, 2]), "not a reading leaf"),
    (encode({"at_ms": 1, "device": "pcc", "milli": [1], "nature": "meter"}), "not a reading leaf"),
    (leaf("1", {EXPORT: 5}), "not what a meter reports"),
    (leaf(-1, {EXPORT: 5}), "not what a meter reports"),
    (leaf(1, {EXPORT: -5}), "not what a meter reports"),
    (leaf(1, {EXPORT: True}), "not what a meter reports"),
    (leaf(1, {EXPORT: b"\x05"}), "not what a meter reports"),
    (leaf(1, {EXPORT: 5}, device=7), "not what a meter reports"),
]


@pytest.mark.parametrize(("bad", "why"), BAD_READINGS)
def test_a_bad_reading_among_good_ones_is_refused_with_why(bad: bytes, why: str) -> None:
    good = meter([(0, 10), (1000, 20), (2000, 30)])
    with pytest.raises(Unmetered, match=why):
        metered([*good, bad], (0, 2000), EXPORT, 1000)


def test_two_meters_leave_the_pcc_unknown() -> None:
    leaves = [*meter([(0, 10), (2000, 30)]), leaf(1000, {EXPORT: 15}, device="sub")]
    with pytest.raises(Unmetered, match=r"more than one meter \(pcc, sub\)"):
        metered(leaves, (0, 2000), EXPORT, 5_000)


@given(junk=st.lists(st.binary(max_size=40), max_size=4), found=series())
def test_arbitrary_bytes_give_a_number_or_unmetered_never_a_crash(
    junk: list[bytes], found: list[tuple[int, int]]
) -> None:
    try:
        energy = metered(meter(found) + junk, (found[0][0], found[-1][0]), EXPORT, 10**9)
    except Unmetered:
        return
    assert energy == Fraction(found[-1][1] - found[0][1], 1000)  # junk that decoded to nothing of the meter's


def test_arguments_no_caller_should_pass_are_refused() -> None:
    good = meter([(0, 10), (1000, 20)])
    with pytest.raises(ValueError, match="max_gap_ms must be positive"):
        metered(good, (0, 1000), EXPORT, 0)
    with pytest.raises(ValueError, match="ends before it starts"):
        metered(good, (1000, 0), EXPORT, 1000)
    with pytest.raises(ValueError, match="must be positive"):
        commitment_intervals((0, 10), 0, 5)
    with pytest.raises(ValueError, match="among trades of 4 Wh"):
        trade_share(Fraction(1), 5, 4)
    with pytest.raises(ValueError):
        trade_share(Fraction(1), -1, 4)
    assert trade_share(Fraction(10), 0, 0) == 0


# --- shares and commitment intervals ------------------------------------------------------------------------------


@given(st.integers(0, 10**6), st.integers(0, 10**5), st.integers(0, 10**5), st.integers(0, 10**5))
def test_a_share_is_monotone_in_the_energy_and_never_above_the_trade(
    e: int, more: int, q: int, rest: int
) -> None:
    total = q + rest
    assert 0 <= trade_share(Fraction(e), q, total) <= q
    assert trade_share(Fraction(e + more), q, total) >= trade_share(Fraction(e), q, total)


@given(energy=st.fractions(min_value=0, max_value=10**6), quantities=st.lists(st.integers(0, 10**5), min_size=1, max_size=8))  # fmt: skip
def test_the_shares_of_an_mgs_trades_never_add_up_to_more_than_it_metered(
    energy: Fraction, quantities: list[int]
) -> None:
    total = sum(quantities)
    shares = [trade_share(energy, q, total) for q in quantities]
    assert sum(shares) <= energy and sum(shares) <= total


@given(start=st.integers(0, 10**9), length=st.integers(0, 10**6), commit=st.integers(1, 10**5),
       gap=st.integers(1, 10**5), data=st.data())  # fmt: skip
def test_the_commitment_intervals_hold_every_reading_that_may_bracket_a_boundary(
    start: int, length: int, commit: int, gap: int, data: st.DataObject
) -> None:
    spans = commitment_intervals((start, start + length), commit, gap)
    at = data.draw(st.integers(start - gap, start + length + gap))
    assert at // commit in spans
    assert len(spans) <= (length + 2 * gap) // commit + 2  # and not many more


# --- shares by what the counterparties' meters prove (review11 F2) -----------------------------------------------

trades_st = st.lists(
    st.tuples(st.integers(0, 10**5), st.one_of(st.none(), st.fractions(min_value=0, max_value=2 * 10**5))),
    min_size=1, max_size=8,
)  # fmt: skip
energies = st.fractions(min_value=0, max_value=10**6)


def test_a_buyer_whose_one_seller_delivered_and_the_other_not_is_shared_by_the_sellers_meters() -> None:
    """R11 F2: b bought 500 from s and 500 from c; s proves 500 left, c proves 0; b imported 500. Pro rata by
    the agreed quantities gave 250 on each; by what the sellers' meters prove, 500 and 0. The mirror (a
    seller with two buyers, one of which took nothing) is the same arithmetic."""
    assert [trade_share(Fraction(500), 500, 1000)] * 2 == [250, 250]  # the old rule
    assert meter_shares(Fraction(500), [(500, Fraction(500)), (500, Fraction(0))]) == [500, 0]
    assert meter_shares(Fraction(500), [(500, Fraction(0)), (500, Fraction(500))]) == [0, 500]
    # one counterparty unmetered: nothing better than the agreed quantities is known
    assert meter_shares(Fraction(500), [(500, Fraction(500)), (500, None)]) == [250, 250]
    # no counterparty proves anything: the agreed quantities again (their trades settle at 0 all the same)
    assert meter_shares(Fraction(500), [(500, Fraction(0)), (300, Fraction(0))]) == [312, 187]


def test_energy_metered_beyond_what_was_proven_goes_to_the_unproven_trades() -> None:
    """The same buyer covered c's missing 500 from the grid (imported 1000): 500 on each, so its own share of
    c's trade shows it took all it could and the shortfall is c's (a priced trade's compensation). Shared over
    several unproven trades by what was not proven of each."""
    assert meter_shares(Fraction(1000), [(500, Fraction(500)), (500, Fraction(0))]) == [500, 500]
    # 200 beyond the 600 proven, over the 500 and 100 not proven: 500, 0 + 166.7, 100 + 33.3
    three = [(500, Fraction(500)), (500, Fraction(0)), (200, Fraction(100))]
    assert meter_shares(Fraction(800), three) == [500, 166, 133]


def test_the_leftover_rule_would_double_count_a_shortfall_or_overshare_the_meter() -> None:
    """What "the import less what the other trades account for" gives, and what the proportional rule does:
    two sellers each proving 500 to a buyer that imported 500 (leftover: 0 and 0, though 500 arrived), and
    sellers proving 200 of 600 each to a buyer that imported 1000, 400 from the grid (leftover: 600 and 600,
    more than the meter showed)."""
    assert meter_shares(Fraction(500), [(500, Fraction(500)), (500, Fraction(500))]) == [250, 250]
    shares = meter_shares(Fraction(1000), [(600, Fraction(200)), (600, Fraction(200))])
    assert shares == [500, 500] and sum(shares) <= 1000
    # a proof above the agreed quantity weighs as the quantity: a seller that over-delivered gains nothing
    assert meter_shares(Fraction(600), [(500, Fraction(900)), (500, Fraction(100))]) == [500, 100]

    # where one trade alone is not proven in full, the leftover rule and this one agree (700 - 500, 700 - 100)
    assert meter_shares(Fraction(700), [(500, Fraction(500)), (500, Fraction(100))]) == [500, 200]
    # where several are not, the leftover rule would give 500 and 300, 800 of the 700 metered
    assert meter_shares(Fraction(700), [(500, Fraction(400)), (500, Fraction(100))]) == [440, 260]


@settings(deadline=None)
@given(energy=energies, trades=trades_st)
def test_shares_never_exceed_a_trade_nor_together_the_metered_energy(
    energy: Fraction, trades: list[tuple[int, Fraction | None]]
) -> None:
    shares = meter_shares(energy, trades)
    assert len(shares) == len(trades)
    assert all(0 <= share <= q for share, (q, _) in zip(shares, trades, strict=True))
    assert sum(shares) <= energy


@settings(deadline=None)
@given(energy=energies, trades=trades_st, seed=st.integers(0, 2**32))
def test_shares_do_not_depend_on_the_order_of_the_trades(
    energy: Fraction, trades: list[tuple[int, Fraction | None]], seed: int
) -> None:
    order = list(range(len(trades)))
    random.Random(seed).shuffle(order)
    shuffled = meter_shares(energy, [trades[i] for i in order])
    assert shuffled == [meter_shares(energy, trades)[i] for i in order]


@settings(deadline=None)
@given(energy=energies, trades=trades_st, data=st.data())
def test_shares_are_todays_pro_rata_when_every_trade_is_proven_in_full_or_one_is_unmetered(
    energy: Fraction, trades: list[tuple[int, Fraction | None]], data: st.DataObject
) -> None:
    total = sum(q for q, _ in trades)
    today = [trade_share(energy, q, total) for q, _ in trades]
    in_full = [(q, Fraction(q) + data.draw(st.fractions(min_value=0, max_value=100))) for q, _ in trades]
    assert meter_shares(energy, in_full) == today
    if any(proof is None for _, proof in trades):
        assert meter_shares(energy, trades) == today


@settings(max_examples=200, deadline=None)
@given(energy=energies, more=energies, trades=trades_st, data=st.data())
def test_more_energy_or_a_larger_own_proof_never_gives_a_trade_less(
    energy: Fraction, more: Fraction, trades: list[tuple[int, Fraction | None]], data: st.DataObject
) -> None:
    base = meter_shares(energy, trades)
    assert all(a <= b for a, b in zip(base, meter_shares(energy + more, trades), strict=True))
    i = data.draw(st.integers(0, len(trades) - 1))
    q, proof = trades[i]
    assume(proof is not None)
    raised = [*trades[:i], (q, proof + more), *trades[i + 1 :]]
    assert meter_shares(energy, raised)[i] >= base[i]


@settings(deadline=None)
@given(energy=energies, trades=trades_st, extra=st.integers(1, 10**5))
def test_a_trade_proven_nothing_never_lowers_what_the_others_proved(
    energy: Fraction, trades: list[tuple[int, Fraction | None]], extra: int
) -> None:
    """The F2 property: another trade whose counterparty's meter proves nothing takes nothing of the energy
    while the proven trades do not have all they proved, and never takes a trade below what it proved (the
    old pro rata gave it extra / (Q + extra) of the energy whatever was proven)."""
    proven = [(q, Fraction(0) if p is None else p) for q, p in trades]
    before = meter_shares(energy, proven)
    with_it = meter_shares(energy, [*proven, (extra, Fraction(0))])
    if energy <= sum(min(q, p) for q, p in proven):
        assert with_it == [*before, 0]
    else:
        assert all(
            share >= min(b, math.floor(min(q, p)))
            for share, b, (q, p) in zip(with_it, before, proven, strict=False)
        )


def test_bad_shares_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="a trade of -1 Wh"):
        meter_shares(Fraction(10), [(-1, Fraction(1))])
    with pytest.raises(ValueError, match="proven -1 Wh"):
        meter_shares(Fraction(10), [(5, Fraction(-1))])
    with pytest.raises(ValueError, match="among trades of 4 Wh"):
        pro_rata(Fraction(1), 5, 4)
    assert meter_shares(Fraction(10), []) == []
