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
- `accepted_clean_wh`, `book_accepts`, `book_prices`, `fold`: the same on a clean session (cleanbook.py),
  book by book: the general book's n intervals then the clean book's n, paired apart by `provisional` at each
  book's price, and folded back into the day's n intervals (an MG's net export is the sum of its books').
- `provisional(accepts, prices, keys)`: the trades the exchange contract's clear would make of a set of
  accepts (whole Wh by member id) now, ties by the members' chain keys: public data only.
- `closing_price(price)`: λ_t (currency per kWh) on the chain's tick in micro-units per Wh, through the
  ledger's one conversion (`exchange.micro_per_wh` of the nano price).
- `net_by_interval(trades, name)`: one MG's net export (kWh) and money received per interval from a day's trades.
Pure and deterministic: no solver, no clocks, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from peergrid_controller.chain_venue import key_for
from peergrid_controller.cleanbook import clean_kind, takes_clean
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
            lo, hi = limits_kw(mg, t, micro[t] / 1000, dt)
            row.append(_cut(allocation.positions[mg.name][t], lo if micro[t] >= 0 else 0.0, hi, dt))
        out[mg.name] = tuple(row)
    return out


def _cut(q: float, lo: float, hi: float, dt: float) -> int:
    """A position (kWh, + sale) in whole Wh toward zero, within [lo, hi] (kW)."""
    amount = wh(quantize(abs(q)))
    if q > 0:
        return min(amount, int(hi * dt * 1000 + 1e-6))
    if q < 0:
        return -min(amount, int(-lo * dt * 1000 + 1e-6))
    return 0


def accepted_clean_wh(
    scenario: Scenario, allocation: Allocation, excluded: Sequence[str] = ()
) -> dict[str, tuple[int, ...]]:
    """`accepted_wh` for a clean session's clean book (cleanbook.py; zeros where the allocation has none): a
    clean sale cut to what its owner's floor and maximum allow at the clean closing price, a clean purchase
    only by a clean-only member and within its cap + premium there (`market.acceptable`), its physical
    limit and maximum, and none at a negative price."""
    _check(scenario, allocation)
    n, dt = scenario.intervals, scenario.interval_hours
    micro = [closing_price(p) for p in allocation.clean_prices]
    out: dict[str, tuple[int, ...]] = {}
    for mg in scenario.microgrids:
        clean = allocation.clean_positions.get(mg.name)
        if mg.name in excluded or clean is None:
            out[mg.name] = (0,) * n
            continue
        free = replace(mg, rules=replace(mg.rules, clean_only=False))
        row = []
        for t in range(n):
            hi = limits_kw(mg, t, micro[t] / 1000, dt)[1] if clean_kind(mg) == "seller" else 0.0
            buys = mg.rules.clean_only and micro[t] >= 0 and takes_clean(mg, micro[t] / 1000)
            lo = limits_kw(free, t, math.nan, dt)[0] if buys else 0.0
            row.append(_cut(clean[t], lo, hi, dt))
        out[mg.name] = tuple(row)
    return out


def book_accepts(
    scenario: Scenario, allocation: Allocation, excluded: Sequence[str] = ()
) -> dict[str, tuple[int, ...]]:
    """Every MG's accept over the books the allocation has: the general book's n intervals (`accepted_wh`),
    then on a clean session the clean book's n (`accepted_clean_wh`): what `provisional` pairs over
    `book_prices`, and `fold` puts back into the day's intervals."""
    general = accepted_wh(scenario, allocation, excluded)
    if not allocation.clean_positions:
        return general
    clean = accepted_clean_wh(scenario, allocation, excluded)
    return {name: general[name] + clean[name] for name in general}


def book_prices(allocation: Allocation) -> tuple[float, ...]:
    """λᴳ_t, then λᶜ_t on a clean session (the books `book_accepts` gives positions for)."""
    return tuple(allocation.prices) + tuple(allocation.clean_prices)


def fold(trades: Sequence[Sequence[Trade]], n: int) -> tuple[tuple[Trade, ...], ...]:
    """The trades of books laid end to end (n intervals each: `provisional` over `book_prices`) as the day's
    n intervals, each book's trade at its own price; one book: unchanged. A pair meets in one book only (a
    clean-only member never buys general), so each interval's trade ids stay unique."""
    if len(trades) == n:
        return tuple(tuple(day) for day in trades)
    out = []
    for t in range(n):
        day = [tr for book in range(len(trades) // n) for tr in trades[book * n + t]]
        out.append(
            tuple(sorted((replace(tr, interval=t) for tr in day), key=lambda tr: (tr.seller, tr.buyer)))
        )
    return tuple(out)


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
    trades = provisional(book_accepts(scenario, allocation, excluded), book_prices(allocation), keys)
    return fold(trades, scenario.intervals)


def net_by_interval(trades: Sequence[Sequence[Trade]], name: str) -> tuple[list[float], list[float]]:
    """kWh net export and money received per interval for one MG."""
    kwh, money = [0.0] * len(trades), [0.0] * len(trades)
    for t, interval in enumerate(trades):
        for tr in interval:
            sign = 1.0 if tr.seller == name else -1.0 if tr.buyer == name else 0.0
            kwh[t] += sign * tr.quantity_kwh
            money[t] += sign * tr.quantity_kwh * tr.price
    return kwh, money
