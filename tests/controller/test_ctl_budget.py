"""The day-budget IR guard (curve.budgeted, rationality.Guarded): no trade it allows can leave the MG worse off
than falling back on the DSO alone, it is never stricter than the per-trade guard, and over seeded feeders with
gensets, storage and owners' rules no MG ends the day worse off than in the conventional market."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller.curve import ResponseCurve, budgeted, guarded
from peergrid_controller.simulate import SimulationConfig, simulate
from peergrid_controller.synth import synthetic_scenario

LO, HI = 0.05, 0.30
TICKS = [round(LO + k * 0.001, 3) for k in range(round((HI - LO) / 0.001) + 1)]


@st.composite
def curves(draw: st.DrawFn, lo: float = LO, top: float = HI) -> ResponseCurve:
    """A random non-decreasing step curve from `lo` (buyer, seller, or storage that does both)."""
    n = draw(st.integers(1, 6))
    cents = sorted(set(draw(st.lists(st.integers(1, 59), min_size=n, max_size=n))))
    prices = tuple([lo] + [c / 200 for c in cents if lo < c / 200 < top])
    steps = draw(st.lists(st.floats(0.0, 25.0), min_size=len(prices), max_size=len(prices)))
    start = draw(st.floats(-40.0, 10.0))
    return ResponseCurve(prices, tuple(itertools.accumulate(steps, initial=start))[1:], top)


def cost(fallback: ResponseCurve, value: float, q: float) -> float:
    """F(q): the interval with q exported and the rest of the day with the DSO alone."""
    return value + fallback.cost_of_export(q)


@given(curves(), curves(lo=0.0, top=0.6), st.floats(0.0, 200.0), st.floats(0.0, 5.0), st.sampled_from(TICKS))
@settings(max_examples=200, deadline=None)
def test_every_trade_the_budget_allows_fits_the_budget(
    planned: ResponseCurve, fallback: ResponseCurve, value: float, slack: float, price: float
) -> None:
    budget = value + slack
    safe = budgeted(planned, fallback, value, budget, TICKS)
    q = safe.at(price)
    lowest, highest = fallback.quantities[0], fallback.quantities[-1]
    assert min(lowest, 0.0) - 1e-6 <= q <= max(highest, 0.0) + 1e-6  # never beyond what it can absorb
    assert cost(fallback, value, q) - price * q <= budget + 1e-6
    # the guard only cuts the plan back towards zero trade, never turns a buyer into a seller
    p = planned.at(price)
    assert min(p, 0.0) - 1e-9 <= q <= max(p, 0.0) + 1e-9
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(safe.quantities))


@given(curves(), curves(lo=0.0, top=0.6), st.floats(0.0, 200.0), st.sampled_from(TICKS))
@settings(max_examples=200, deadline=None)
def test_with_no_savings_it_still_allows_all_the_per_trade_guard_does(
    planned: ResponseCurve, fallback: ResponseCurve, value: float, price: float
) -> None:
    """Budget = the conventional value (nothing saved yet): at least every trade the conventional alternative
    itself would make at that price (curve.guarded) is allowed; with savings, more."""
    strict = budgeted(planned, fallback, value, value, TICKS).at(price)
    per_trade = guarded(planned, fallback).at(price)
    assert abs(strict) >= abs(per_trade) - 1e-6
    richer = budgeted(planned, fallback, value, value + 10.0, TICKS).at(price)
    assert abs(richer) >= abs(strict) - 1e-6


def test_a_worked_budget() -> None:
    """Fallback: selling costs 0.20/kWh up to 10 kWh (its own later use), nothing beyond. Plan: sell 10 kWh at
    0.15. With nothing saved no sale at 0.15 loses less than nothing; with 0.25 saved, 5 kWh (0.05 × 5)."""
    fallback = ResponseCurve((0.0, 0.20), (0.0, 10.0), 0.6)
    planned = ResponseCurve((LO, 0.15), (0.0, 10.0), HI)
    assert budgeted(planned, fallback, 100.0, 100.0, TICKS).at(0.15) == pytest.approx(0.0, abs=1e-9)
    assert budgeted(planned, fallback, 100.0, 100.25, TICKS).at(0.15) == pytest.approx(5.0, abs=1e-6)
    assert budgeted(planned, fallback, 100.0, 100.25, TICKS).at(0.20) == pytest.approx(10.0, abs=1e-6)


def test_below_standing_still_only_a_trade_that_wins_the_deficit_back_is_allowed() -> None:
    """Fallback: buying up to 5 kWh is worth 0.20/kWh to it, selling up to 10 kWh costs it 0.20/kWh. 1.0 short:
    only selling all 10 kWh at 0.30 (gain 1.0) fits; 2.0 short: nothing does."""
    fallback = ResponseCurve((0.0, 0.20), (-5.0, 10.0), 0.6)
    planned = ResponseCurve((LO, 0.15), (-5.0, 10.0), HI)
    short = budgeted(planned, fallback, 100.0, 99.0, TICKS)
    assert short.at(0.30) == pytest.approx(10.0, abs=1e-6)
    assert all(abs(short.at(p)) < 1e-6 for p in TICKS if p < 0.299)
    hopeless = budgeted(planned, fallback, 100.0, 98.0, TICKS)
    assert all(abs(q) < 1e-9 for q in hopeless.quantities)


@pytest.mark.parametrize("seed", range(4))
def test_no_mg_ends_the_day_worse_off_with_gensets_storage_and_rules(seed: int) -> None:
    """Half-hour intervals over a day (the gensets' minimum up/down time spans two), owners' rules on odd
    seeds."""
    scenario = synthetic_scenario(4 + seed % 2, 48, seed=10 + seed, interval_hours=0.5, rules=seed % 2 == 1)
    scenario = replace(
        scenario,
        microgrids=tuple(replace(m, rules=replace(m.rules, clean_premium=0.0)) for m in scenario.microgrids),
    )
    assert any(m.gensets for m in scenario.microgrids) and any(m.batteries for m in scenario.microgrids)
    result = simulate(scenario, SimulationConfig(with_central=False))
    assert sum(len(i.trades) for i in result.intervals) > 10  # the feeder did trade: the test is not vacuous
    totals = result.totals()
    p2p, conventional = totals["mg_cost_p2p"], totals["mg_cost_conventional"]
    assert isinstance(p2p, dict) and isinstance(conventional, dict)
    assert {m: p2p[m] - conventional[m] for m in p2p if p2p[m] > conventional[m] + 1e-5} == {}
