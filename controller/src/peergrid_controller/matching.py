"""Forward trades from day-ahead positions, and an MG's positions back from trades (forward.py's matching).

Promises:
- `match(scenario, allocation, excluded)` turns the ADMM positions into balanced bilateral trades per interval at
  the interval's price λ_t on the chain's tick: positions in whole Wh (rounded toward zero), an MG whose owner's
  rules forbid the side at that price dropped, the long side scaled down pro rata (largest remainder, ties by
  name) to the short side's volume — never beyond what an MG's position offered — and the largest sellers
  paired with the largest buyers (`pair`: at most sellers + buyers − 1 trades per interval). No buyer names
  more sellers than a bid may (`MAX_REQUESTS`, the contract's limit): one that would keeps its largest trades
  and the rest is not traded. Every interval's sold and bought energy are equal by construction. The MGs in
  `excluded` (declined) trade nothing. A malformed allocation (prices or positions not one per interval, an MG
  missing) raises ValueError.
- `net_by_interval(trades, name)`: one MG's net export (kWh) and money received per interval from a day's trades.
Pure and deterministic: no solver, no clocks, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from peergrid_controller.dayahead import Allocation
from peergrid_controller.dayrules import limits_kw
from peergrid_controller.market import MAX_REQUESTS, Trade, price_tick, quantize, wh
from peergrid_controller.model import Scenario
from peergrid_controller.uplift import largest_remainder, north_west


def _scale(wants: dict[str, int], volume: int) -> dict[str, int]:
    """Scale whole-Wh positions down to `volume` in all (largest remainder, ties by name); as they are when
    they fit."""
    return dict(wants) if sum(wants.values()) <= volume else largest_remainder(wants, volume)


def pair(
    interval: int, price: float, sells: dict[str, int], buys: dict[str, int], limit: int = MAX_REQUESTS
) -> tuple[Trade, ...]:
    """Largest sellers to largest buyers (north-west corner in descending size, ties by name): exact in whole
    Wh, at most |S| + |B| − 1 trades, so that a large buyer names few sellers. A buyer that would still name
    more than `limit` sellers (the contract refuses a longer bid) keeps its `limit` largest trades (ties by
    seller name) and the rest is not traded day-ahead on either side, so the interval stays balanced.
    Trades come sorted by (seller, buyer)."""

    def largest_first(side: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(
            ((name, amount) for name, amount in side.items() if amount > 0), key=lambda x: (-x[1], x[0])
        )

    named: dict[str, list[tuple[str, int]]] = {}
    for seller, buyer, amount in north_west(largest_first(sells), largest_first(buys)):
        named.setdefault(buyer, []).append((seller, amount))
    kept = (
        (seller, buyer, amount)
        for buyer, pairs in named.items()
        for seller, amount in sorted(pairs, key=lambda x: (-x[1], x[0]))[:limit]
    )
    return tuple(Trade(interval, s, b, amount / 1000, price) for s, b, amount in sorted(kept))


def match(
    scenario: Scenario, allocation: Allocation, excluded: Sequence[str] = ()
) -> tuple[tuple[Trade, ...], ...]:
    n, dt = scenario.intervals, scenario.interval_hours
    if len(allocation.prices) != n:
        raise ValueError(f"allocation has {len(allocation.prices)} prices for {n} intervals")
    for mg in scenario.microgrids:
        if mg.name not in allocation.positions:
            raise ValueError(f"allocation has no positions for {mg.name}")
        if len(allocation.positions[mg.name]) != n:
            raise ValueError(
                f"{mg.name} has {len(allocation.positions[mg.name])} positions for {n} intervals"
            )
    out = []
    for t in range(n):
        price = price_tick(allocation.prices[t])
        sells: dict[str, int] = {}
        buys: dict[str, int] = {}
        for mg in scenario.microgrids:
            if mg.name in excluded:
                continue
            q = allocation.positions[mg.name][t]
            lo, hi = limits_kw(mg, t, price, dt)
            amount = wh(quantize(abs(q)))  # toward zero, whole Wh
            if q > 0:
                sells[mg.name] = min(amount, int(hi * dt * 1000 + 1e-6))
            elif q < 0:
                buys[mg.name] = min(amount, int(-lo * dt * 1000 + 1e-6))
        volume = min(sum(sells.values()), sum(buys.values()))
        out.append(pair(t, price, _scale(sells, volume), _scale(buys, volume)))
    return tuple(out)


def net_by_interval(trades: Sequence[Sequence[Trade]], name: str) -> tuple[list[float], list[float]]:
    """kWh net export and money received per interval for one MG."""
    kwh, money = [0.0] * len(trades), [0.0] * len(trades)
    for t, interval in enumerate(trades):
        for tr in interval:
            sign = 1.0 if tr.seller == name else -1.0 if tr.buyer == name else 0.0
            kwh[t] += sign * tr.quantity_kwh
            money[t] += sign * tr.quantity_kwh * tr.price
    return kwh, money
