"""A step of the day-budget curve (`curve.budgeted`) whose two ends allow no common trade trades nothing
(K5: tests/edge/test_edge_guard_property.py's failing case). With the budget below standing still (nothing
saved and the guard's slack taken off), a trade the step's low end allows and its high end refuses was kept
for the whole step: the edge MG bought 1 kWh worth 0.05 at 0.0505 (its DSO-only day traced at 0.050001: the
trace's own 1e-6 made the purchase look worth 1e-6/kWh at 0.05), 5.5e-4 over its conventional day. Every
trade a step keeps now fits the budget at every price of the step, on the tick grid or between."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from peergrid_controller.curve import ResponseCurve, budgeted

LO, HI = 0.05, 0.30
TICKS = [round(LO + k * 0.001, 3) for k in range(round((HI - LO) / 0.001) + 1)]
SLACK = 1e-6  # rationality.SLACK: the guard judges against the budget less it


def f(fallback: ResponseCurve, value: float, q: float) -> float:
    """F(q): the interval with q exported and the rest of the day with the DSO alone."""
    return value + fallback.cost_of_export(q)


def test_the_edge_guards_case_buys_nothing_between_the_ticks() -> None:
    value = 13.585207756232686  # the MG's conventional value at its interval 1, all it has left
    fallback = ResponseCurve((0.0, 0.050001, 0.120001), (-128.0, 12.0, 140.0), 0.24)
    planned = ResponseCurve((0.05,), (-48.0,), 0.12)
    safe = budgeted(
        planned,
        fallback,
        value,
        value - SLACK,
        [round(0.05 + k * 0.001, 3) for k in range(71)],
    )
    assert safe.at(0.050546875) == 0.0  # before: -1.0, F(-1) + 0.0505 = value + 5.5e-4
    assert all(q >= 0.0 for q in safe.quantities)


def test_a_forced_purchase_is_not_lifted_past_the_band_it_fits() -> None:
    """K5's case (found by Hypothesis): the budget 1 below standing still (a DSO deficit past the slack), so at
    each price only a purchase of at least 1 / (0.6 - p) kWh fits (the fallback saves 0.6 on each of its 3 kWh).
    The band narrows as the price rises; the curve's monotone rule lifted the 1.82 kWh that fit at 0.05 across
    every step: at 0.25 it kept F - p*q = -0.64 against a budget of -1. Now it buys where the purchase fits and
    nothing where the step before's purchase no longer does."""
    fallback = ResponseCurve((0.0, 0.005), (-3.0, -3.0), 0.6)
    planned = ResponseCurve((LO,), (0.0,), HI)
    safe = budgeted(planned, fallback, 0.0, -1.0, TICKS)
    assert safe.at(0.25) == 0.0  # before: -1.8214936247723135
    assert safe.at(LO) == pytest.approx(-1 / (0.6 - 0.051))  # the step [0.05, 0.051) fits at both its ends
    for price in (LO, 0.0505, 0.25, HI):
        q = safe.at(price)
        assert q == 0.0 or f(fallback, 0.0, q) - price * q <= -1.0 + 1e-9, price


@st.composite
def curves(draw: st.DrawFn, lo: float = LO, top: float = HI) -> ResponseCurve:
    n = draw(st.integers(1, 6))
    cents = sorted(set(draw(st.lists(st.integers(1, 59), min_size=n, max_size=n))))
    prices = tuple([lo] + [c / 200 + draw(st.sampled_from([0.0, 1e-6])) for c in cents if lo < c / 200 < top])
    steps = draw(st.lists(st.floats(0.0, 25.0), min_size=len(prices), max_size=len(prices)))
    start = draw(st.floats(-40.0, 10.0))
    return ResponseCurve(prices, tuple(itertools.accumulate(steps, initial=start))[1:], top)


@given(
    curves(),
    curves(lo=0.0, top=0.6),
    st.floats(0.0, 200.0),
    st.one_of(st.just(-SLACK), st.floats(0.0, 5.0), st.floats(-5.0, 0.0)),  # below: a DSO deficit
    st.floats(LO, HI),
)
@example(  # the edge's case at its slack
    ResponseCurve((0.05,), (-48.0,), 0.12),
    ResponseCurve((0.0, 0.050001, 0.120001), (-128.0, 12.0, 140.0), 0.6),
    13.585207756232686,
    -SLACK,
    0.050546875,
)
@example(  # K5's forced purchase, lifted across the steps before
    ResponseCurve((LO,), (0.0,), HI), ResponseCurve((0.0, 0.005), (-3.0, -3.0), 0.6), 0.0, -1.0, 0.25
)
@settings(max_examples=300, deadline=None)
def test_a_trade_kept_fits_the_budget_at_every_price_of_its_step(
    planned: ResponseCurve,
    fallback: ResponseCurve,
    value: float,
    saved: float,
    price: float,
) -> None:
    budget = value + saved  # -SLACK: nothing saved, the guard's slack taken off (rationality.Guarded.curve)
    q = budgeted(planned, fallback, value, budget, TICKS).at(min(price, planned.upper))
    if q != 0.0:
        assert f(fallback, value, q) - price * q <= budget + 1e-6
