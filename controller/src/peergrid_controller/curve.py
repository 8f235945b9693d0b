"""Price–quantity curves: how much energy an MG would sell (+) or buy (-) peer-to-peer at each price.

Promises: `ResponseCurve` is a non-decreasing, right-continuous step function of price on [lo, hi] in kWh per
interval; `value(x)` integrates its inverse, giving the MG's change in cost when it exports x kWh (its private
valuation, which never leaves the MGMC: only offers and bids do). Pure, immutable, no solver.
Assumes breakpoints ascending and quantities non-decreasing (checked in `__post_init__`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class CurveError(ValueError):
    """A curve that is not a non-decreasing step function of price."""


@dataclass(frozen=True)
class ResponseCurve:
    prices: tuple[float, ...]  # ascending breakpoints; prices[0] is the lowest price the curve knows
    quantities: tuple[float, ...]  # kWh exported on [prices[k], prices[k+1]) (negative: bought)
    upper: float = float("inf")  # the price up to which the last step holds (the curve knows nothing above)

    def __post_init__(self) -> None:
        if not self.prices or len(self.prices) != len(self.quantities):
            raise CurveError("a curve needs one quantity per breakpoint and at least one breakpoint")
        if self.upper < self.prices[-1] or any(b <= a for a, b in itertools.pairwise(self.prices)):
            raise CurveError("curve breakpoints must be strictly ascending")
        if any(b < a - 1e-9 for a, b in itertools.pairwise(self.quantities)):
            raise CurveError("a response curve never exports less at a higher price")

    @classmethod
    def flat(cls, quantity: float, price: float = 0.0, upper: float = float("inf")) -> ResponseCurve:
        return cls((price,), (quantity,), upper)

    def at(self, price: float) -> float:
        """Net export at `price` (below the first breakpoint: the first step)."""
        k = bisect.bisect_right(self.prices, price) - 1
        return self.quantities[max(k, 0)]

    def supply(self, price: float) -> float:
        return max(self.at(price), 0.0)

    def demand(self, price: float) -> float:
        return max(-self.at(price), 0.0)

    def marginal_price(self, y: float) -> float:
        """The lowest price at which the MG exports at least y (the inverse curve); beyond the last step, the
        curve's upper price (a buyer values the energy it buys even at the top price at least that much)."""
        for p, q in zip(self.prices, self.quantities, strict=True):
            if q >= y - 1e-9:
                return p
        return self.upper

    def cost_of_export(self, x: float) -> float:
        """Change in the MG's own cost when it exports x kWh (negative x: imports), from the inverse curve."""
        total = 0.0
        lo, hi = (0.0, x) if x >= 0 else (x, 0.0)
        # the inverse is piecewise constant between consecutive quantities
        edges = sorted({lo, hi, *(q for q in self.quantities if lo < q < hi)})
        for a, b in itertools.pairwise(edges):
            total += (b - a) * self.marginal_price((a + b) / 2)
        return total if x >= 0 else -total


def guarded(planned: ResponseCurve, conventional: ResponseCurve) -> ResponseCurve:
    """The planned curve, never trading beyond what the conventional alternative would at the same price.

    `conventional` is the MG's curve when the rest of its day trades with the DSO only (no P2P price
    forecast). At each price the result sells no more than that curve sells and buys no more than it buys,
    so every trade it allows leaves the MG no worse off than its conventional alternative (individual
    rationality even when the forecast the plan leans on turns out wrong). Stays non-decreasing: a median of
    non-decreasing functions.
    """
    prices = sorted(set(planned.prices) | set(conventional.prices))
    quantities: list[float] = []
    for p in prices:
        c, q = conventional.at(p), planned.at(p)
        x = min(max(q, min(c, 0.0)), max(c, 0.0))
        quantities.append(max(x, quantities[-1]) if quantities else x)
    keep = [0] + [k for k in range(1, len(prices)) if quantities[k] > quantities[k - 1] + 1e-9]
    return ResponseCurve(
        tuple(prices[k] for k in keep),
        tuple(quantities[k] for k in keep),
        upper=min(planned.upper, conventional.upper),
    )


def budgeted(
    planned: ResponseCurve,
    fallback: ResponseCurve,
    fallback_value: float,
    budget: float,
    grid: Sequence[float],
) -> ResponseCurve:
    """The planned curve, trading at each price only what still fits the MG's day budget.

    `fallback` is the MG's curve when the rest of its day trades with the DSO only, traced over every price a
    trade can carry; its inverse integrates to F(q) = `fallback_value` + fallback.cost_of_export(q), the cost
    of the interval with q exported and the rest of the day with the DSO alone (convex in q). A trade of q at
    price p is allowed when F(q) - p*q <= `budget` (what the MG may still spend this day and end no worse
    off than its conventional day): whatever the later prices, the fallback then keeps it within budget. The
    allowed q at p form an interval that contains 0 whenever budget >= fallback_value and widens as the MG's
    realised savings grow, so the guard is no stricter than the budget needs — unlike `guarded`, which spends
    none of it. Quantities the fallback never reaches in its price range are refused. The result is a step
    function on `grid` (ascending prices, the market's ticks) and `planned`'s breakpoints; on each step it
    takes the bounds of the step's least favourable end (sellers: its lowest price, buyers: its highest), so
    it holds at every price in the step. Stays non-decreasing: a step keeps the trade of the step before where
    that fits it too, and trades nothing where it does not (a budget below standing still allows only
    purchases in a band that narrows as the price rises: a purchase is never kept past where it fits).
    """
    knots = sorted({0.0, *fallback.quantities})
    q = np.array(knots)
    f = np.array([fallback_value + fallback.cost_of_export(x) for x in knots])
    top = max(planned.upper, grid[-1] if grid else planned.upper)
    points = sorted({*(p for p in grid if planned.prices[0] <= p <= top), *planned.prices})
    prices = np.array([*points, top])
    lo_q, hi_q = _budget_bounds(q, f, budget, prices)
    quantities: list[float] = []
    for k, p in enumerate(points):
        # a trade within both ends' bounds holds at every price of the step (F(x) - p*x is linear in p); with
        # the budget at or above standing still that is [lo at the high end, hi at the low end]. Where the ends
        # do not meet (below standing still: a purchase that fits at the step's low end and not at its high
        # end) it trades nothing: the low end's bound alone lost up to a tick on each kWh (K5)
        low, high = max(float(lo_q[k]), float(lo_q[k + 1])), min(float(hi_q[k]), float(hi_q[k + 1]))
        x = min(max(planned.at(p), low), high) if low <= high else 0.0
        if quantities and x < quantities[-1]:
            # the curve never exports less at a higher price: the step keeps the step before's trade where it
            # fits here too. A purchase forced by a budget below standing still (a DSO deficit past the slack)
            # is allowed over a band that narrows as the price rises: lifted past it, the purchase broke the
            # budget (K5: budget value - 1, 1.82 kWh kept at 0.25 for -0.64); there the step trades nothing
            before = quantities[-1]
            x = before if low <= before <= high or before > 0.0 else 0.0
        quantities.append(x)
    keep = [0] + [k for k in range(1, len(points)) if quantities[k] > quantities[k - 1] + 1e-9]
    return ResponseCurve(
        tuple(points[k] for k in keep), tuple(quantities[k] for k in keep), upper=planned.upper
    )


def _budget_bounds(
    q: np.ndarray, f: np.ndarray, budget: float, prices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per price, the ends of {x in [q[0], q[-1]] : F(x) - p*x <= budget}, F piecewise linear through (q, f).

    F is convex, so the set is one interval; its ends lie on a knot or where a segment crosses the budget.
    An empty set (a budget below even standing still) gives (0, 0): no trade."""
    h = f[None, :] - prices[:, None] * q[None, :] - budget  # (prices, knots)
    ok = h <= 1e-9
    rows = np.arange(len(prices))
    first = np.argmax(ok, axis=1)
    last = len(q) - 1 - np.argmax(ok[:, ::-1], axis=1)
    lo = q[first].astype(float)
    hi = q[last].astype(float)
    # the crossing inside the segment before the first allowed knot and after the last one
    inner = first > 0
    a, b = first[inner] - 1, first[inner]
    ha, hb = h[rows[inner], a], h[rows[inner], b]
    lo[inner] = q[b] - (q[b] - q[a]) * (-hb) / np.maximum(ha - hb, 1e-15)
    inner = last < len(q) - 1
    a, b = last[inner], last[inner] + 1
    ha, hb = h[rows[inner], a], h[rows[inner], b]
    hi[inner] = q[a] + (q[b] - q[a]) * (-ha) / np.maximum(hb - ha, 1e-15)
    none = ~ok.any(axis=1)
    lo[none] = hi[none] = 0.0
    return lo, hi
