"""Price–quantity curves: how much energy an MG would sell (+) or buy (-) peer-to-peer at each price.

Promises: `ResponseCurve` is a non-decreasing, right-continuous step function of price on [lo, hi] in kWh per
interval; `value(x)` integrates its inverse, giving the MG's change in cost when it exports x kWh (its private
valuation, which never leaves the MGMC: only offers and bids do). Pure, immutable, no solver.
Assumes breakpoints ascending and quantities non-decreasing (checked in `__post_init__`).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass


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
