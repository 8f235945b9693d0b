"""Forward trades from day-ahead positions, and an MG's positions back from trades (forward.py's matching).

Promises:
- `accepted_wh(scenario, allocation, excluded)`: each MG's accepted net position per interval in whole Wh
  (signed, + = sale): its ADMM position rounded toward zero, cut to what its owner's rules allow at the
  interval's closing price on the chain's tick (`closing_price`: no sale below its floor, no purchase above
  its cap, none beyond its maximum quantity, a clean-only MG never buys) and no purchase at a negative price
  (the market contract has none); zeros for the MGs in `excluded` (declined). Exactly what each MG posts as
  `exchange.accept` on the chain, so the contract judges the same numbers.
- `match(scenario, allocation, excluded)` turns those into balanced bilateral trades per interval at the
  closing price (`provisional` of them: the one rule for a clear's trades from a set of accepts, which
  forward.recheck runs on every member's accept), with the ledger's own arithmetic (`peergrid_ledger.contracts.pairing.forward_trades`, the
  one the exchange contract's `exchange.clear` runs): the long side scaled pro rata to the short side's
  volume (largest remainder), the largest sellers paired with the largest buyers (at most |S| + |B| − 1
  trades), no buyer naming more than `MAX_REQUESTS` sellers (the contract's MAX_DEMANDS), and every tie
  broken by the MG's public key on the chain (`chain_venue.key_for`), as the contract breaks it, whatever the
  venue. Every interval's sold and bought energy are equal. A malformed allocation (prices or positions not
  one per interval, an MG missing) raises ValueError.
- `provisional(accepts, prices, keys)`: the trades the exchange contract's clear would make of a set of
  accepts (whole Wh by member id) now, ties by the members' chain keys: public data only.
- `closing_price(price)`: λ_t (currency per kWh) on the chain's tick in micro-units per Wh, through the
  ledger's one conversion (`exchange.micro_per_wh` of the nano price).
- `net_by_interval(trades, name)`: one MG's net export (kWh) and money received per interval from a day's trades.
Pure and deterministic: no solver, no clocks, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from peergrid_controller.chain_venue import key_for
from peergrid_controller.dayahead import Allocation
from peergrid_controller.dayexchange import nano
from peergrid_controller.dayrules import limits_kw
from peergrid_controller.market import MAX_REQUESTS, Trade, quantize, wh
from peergrid_controller.model import Scenario
from peergrid_ledger.contracts import pairing
from peergrid_ledger.contracts.exchange import micro_per_wh as chain_micro_per_wh


def closing_price(price: float) -> int:
    """λ_t in currency per kWh (an allocation's, exact to the nano) in micro-units per Wh, as the chain has it."""
    return chain_micro_per_wh(nano(price))


def pair(
    interval: int, price: float, sells: Mapping[str, int], buys: Mapping[str, int], limit: int = MAX_REQUESTS
) -> tuple[Trade, ...]:
    """The ledger's pairing (`pairing.pair`: largest sellers to largest buyers, a buyer past `limit` sellers
    keeps its largest trades, ties by the ids given: here names) as trades at `price`, sorted by
    (seller, buyer)."""
    return tuple(Trade(interval, s, b, q / 1000, price) for s, b, q in pairing.pair(sells, buys, limit))


def _check(scenario: Scenario, allocation: Allocation) -> None:
    n = scenario.intervals
    if len(allocation.prices) != n:
        raise ValueError(f"allocation has {len(allocation.prices)} prices for {n} intervals")
    for mg in scenario.microgrids:
        if mg.name not in allocation.positions:
            raise ValueError(f"allocation has no positions for {mg.name}")
        if len(allocation.positions[mg.name]) != n:
            raise ValueError(
                f"{mg.name} has {len(allocation.positions[mg.name])} positions for {n} intervals"
            )


def accepted_wh(
    scenario: Scenario, allocation: Allocation, excluded: Sequence[str] = ()
) -> dict[str, tuple[int, ...]]:
    _check(scenario, allocation)
    n, dt = scenario.intervals, scenario.interval_hours
    micro = [closing_price(p) for p in allocation.prices]
    out: dict[str, tuple[int, ...]] = {}
    for mg in scenario.microgrids:
        if mg.name in excluded:
            out[mg.name] = (0,) * n
            continue
        row = []
        for t in range(n):
            q = allocation.positions[mg.name][t]
            lo, hi = limits_kw(mg, t, micro[t] / 1000, dt)
            amount = wh(quantize(abs(q)))  # toward zero, whole Wh
            if q > 0:
                row.append(min(amount, int(hi * dt * 1000 + 1e-6)))
            elif q < 0 and micro[t] >= 0:
                row.append(-min(amount, int(-lo * dt * 1000 + 1e-6)))
            else:
                row.append(0)
        out[mg.name] = tuple(row)
    return out


def provisional(
    accepts: Mapping[str, Sequence[int]], prices: Sequence[float], keys: Mapping[str, bytes] | None = None
) -> tuple[tuple[Trade, ...], ...]:
    """The trades the exchange contract's clear would make of `accepts` (whole Wh per interval, + sale, by
    member id) now: per interval `pairing.forward_trades` — the contract's own function — with every tie
    broken by the members' chain keys (`keys`; None: each id is its key in hex), at `prices` (λ_t exact,
    put on the chain's tick here), sorted by (seller, buyer) id. Public data only: every member computes the
    same trades."""
    key = {who: bytes.fromhex(who) if keys is None else keys[who] for who in accepts}
    named = {k: who for who, k in key.items()}
    out = []
    for t, p in enumerate(prices):
        price = closing_price(p) / 1000
        sells = {key[who]: row[t] for who, row in accepts.items() if row[t] > 0}
        buys = {key[who]: -row[t] for who, row in accepts.items() if row[t] < 0}
        trades = pairing.forward_trades(sells, buys, MAX_REQUESTS)
        day = (Trade(t, named[s], named[b], q / 1000, price) for s, b, q in trades)
        out.append(tuple(sorted(day, key=lambda tr: (tr.seller, tr.buyer))))
    return tuple(out)


def match(
    scenario: Scenario, allocation: Allocation, excluded: Sequence[str] = ()
) -> tuple[tuple[Trade, ...], ...]:
    keys = {mg.name: key_for(scenario.name, mg.name).public for mg in scenario.microgrids}
    return provisional(accepted_wh(scenario, allocation, excluded), allocation.prices, keys)


def net_by_interval(trades: Sequence[Sequence[Trade]], name: str) -> tuple[list[float], list[float]]:
    """kWh net export and money received per interval for one MG."""
    kwh, money = [0.0] * len(trades), [0.0] * len(trades)
    for t, interval in enumerate(trades):
        for tr in interval:
            sign = 1.0 if tr.seller == name else -1.0 if tr.buyer == name else 0.0
            kwh[t] += sign * tr.quantity_kwh
            money[t] += sign * tr.quantity_kwh * tr.price
    return kwh, money
