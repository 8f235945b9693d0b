"""The DSO-posted connection capacity as this MGMC's replica holds it, applied to what the MGMC posts.

Promises: since c10acc4 the MGMC chain refuses (`rule-violation`) an `offer` or a seller's `move` quantity, a
`bid`'s or a buyer's `move` total (not with genesis `cap_on_fills`: the closing then caps the fills), an
`exchange.position` and an `exchange.accept` (per interval its net |general + clean|) above the connection
capacity the DSO posted for the trading key (`market.capacity`: Wh per interval, standing from an interval
on; posted for each MG's anonym, the key it trades with). So the MGMC cuts what it posts to it first, as it
cuts a debtor's purchases (`debts.sales_only`):
  `connected_rules`  the owner's rules with max_quantity cut to the interval's capacity (intraday: the
                     controller's `make_offer`/`make_bid` then clip, and so do the DSO's re-bargains);
  `connected_bounds` the day-ahead answer range (kW per interval) within ±capacity;
  `within_capacity`  a post's or an accept's row (one book, or a clean session's both: general then clean),
                     each interval's net cut to its capacity, reduce-only: toward zero, general book first;
  `first_above`      the first interval where such a row is above the capacity standing now: the chain's own
                     rule, read after a refusal to tell one for a capacity that landed ahead of the post (cut
                     and sent once more) from any other (never retried).
Where no capacity is posted every function returns its input unchanged (`connected_rules` and
`connected_bounds` the very object), so nothing moves where the DSO posts none (the pinned runs).
Assumes the state is the replica's MGMC chain state. Pure: reads the state it is given, no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar

from peergrid_controller.model import ContractRules
from peergrid_ledger.contracts.market_state import capacities, standing_capacity
from peergrid_ledger.state import StateReader

Q = TypeVar("Q", int, float)
Bounds = tuple[list[float], list[float]]


def capacity_row(state: StateReader, key: bytes, first: int, n: int) -> list[int | None]:
    """The capacity (Wh) standing for `key` in chain intervals first .. first + n - 1 (None: none posted
    there). One state read for the row."""
    entries = capacities(state, key)
    return [standing_capacity(entries, first + t) for t in range(n)]


def connected_rules(rules: ContractRules, state: StateReader, key: bytes, interval: int) -> ContractRules:
    """`rules` with max_quantity_kwh cut to the capacity standing for `key` in `interval`; `rules` itself
    where none stands or its own maximum is the tighter."""
    cap = standing_capacity(capacities(state, key), interval)
    if cap is None or cap / 1000 >= rules.max_quantity_kwh:
        return rules
    return dataclasses.replace(rules, max_quantity_kwh=cap / 1000)


def connected_bounds(bounds: Bounds, caps: Sequence[int | None], dt: float) -> Bounds:
    """An MG's day-ahead answer range (`bounds`: lo, hi per interval, kW of net export, lo <= 0 <= hi) within
    ±capacity (`caps`: Wh per interval, `capacity_row`) for intervals of `dt` hours; `bounds` itself where no
    interval has one."""
    if all(cap is None for cap in caps):
        return bounds
    lo, hi = bounds
    kw = [None if cap is None else cap / 1000 / dt for cap in caps]
    return (
        [v if k is None else max(v, -k) for v, k in zip(lo, kw, strict=True)],
        [v if k is None else min(v, k) for v, k in zip(hi, kw, strict=True)],
    )


def within_capacity(row: Sequence[Q], caps: Sequence[int | None], scale: int = 1) -> tuple[Q, ...]:
    """`row` with each interval's net cut to its capacity: one book (n = len(caps) positions) or a clean
    session's two (2n: general then clean, netted per interval as the chain nets them); `caps` in Wh,
    `scale` the Wh per unit of `row` (1: Wh, 1000: kWh). The excess is taken off the books whose sign is the
    net's, general first, each toward zero and never past it, so every value keeps its sign and shrinks or
    stays (reduce-only, as an accept must be; the chain keeps both books of an interval of one sign anyway).
    Intervals within their capacity, or without one, keep their values."""
    n = len(caps)
    if len(row) not in (n, 2 * n):
        raise ValueError(f"a row of {len(row)} positions for {n} intervals (one book: n, two: 2n)")
    out = list(row)
    two = len(out) == 2 * n
    for t, cap in enumerate(caps):
        if cap is None:
            continue
        places = (t, n + t) if two else (t,)
        net = sum(out[i] for i in places)
        excess = abs(net) * scale - cap
        if excess <= 0:
            continue
        sign = 1 if net > 0 else -1
        for i in places:
            value = out[i]
            if excess <= 0 or value * sign <= 0:
                continue  # nothing left to cut, or a book of the other sign: cutting it would grow the net
            cut = min(abs(value) * scale, excess)
            out[i] = type(value)(value - sign * cut / scale)
            excess -= cut
    return tuple(out)


def first_above(row: Sequence[int], caps: Sequence[int | None]) -> tuple[int, int, int] | None:
    """(t, net Wh, capacity Wh) of the first interval t whose net (one book, or both: `within_capacity`'s
    rows, in Wh) is above the capacity standing there, as the chain judges it (`market_capacity.
    within_capacity`: |net| > capacity); None where every interval is within its own, or has none."""
    n = len(caps)
    if len(row) not in (n, 2 * n):
        raise ValueError(f"a row of {len(row)} positions for {n} intervals (one book: n, two: 2n)")
    two = len(row) == 2 * n
    for t, cap in enumerate(caps):
        net = row[t] + (row[n + t] if two else 0)
        if cap is not None and abs(net) > cap:
            return t, net, cap
    return None
