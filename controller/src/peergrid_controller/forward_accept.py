"""One MG's accept of its forward trades, from its own model: its exact check, its re-check of the clear's
cut, and its accept alone (forward.py's `commit` is rounds of `recheck`; the edge calls `accept_alone`).

Promises:
- `dispatch(mg, dt, kwh)`: an MG's day MILP with its net P2P export fixed — the check's, the delivery's.
- `recheck(mg, dt, prices, accepts, me, conventional, keys, may_reduce)`: one MG's next accept from public
  data (every member's current accept, the closing prices; on a clean session both books', 2n each, its
  trades folded into the day's n intervals: matching.fold) and its own model: its trades if the clear came
  now (matching.py's `provisional`: the contract's `pairing.forward_trades`, ties by chain key; `match`
  runs the same), its exact check with them fixed, and if that fails the largest part of what it got that
  passes, or zeros (it declines) — also when that part is its accept unchanged, so that an MG that fails
  always changes its accept: a round in which no accept changes (the chain's settled round) is one in
  which every MG passed.
- `accept_alone(mg, dt, prices, positions)`: one MG's accept of a closed session from its own data only (an
  MGMC on the edge, which sees no other MG's model): `commit`'s rule with the MG's whole accepted position
  (`accepted_wh`) as its trades — if its day with them fixed costs more than its conventional day, the
  largest part within that cost (`largest_within`), re-checked, for up to `reductions` rounds; else zeros
  (declines). It cannot see the pro-rata cut the clear makes after every accept: its round 1; `recheck`
  is each round after.
The check's ceiling is the MG's conventional day cost, known to the MILP's proven relative gap. Every name
here stays importable from forward.py. Deterministic; solves only the MG's own MILPs; no clocks, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from peergrid_controller import exchange_fee
from peergrid_controller.baselines import conventional as conventional_costs
from peergrid_controller.baselines import interval_costs
from peergrid_controller.dayahead import Allocation
from peergrid_controller.daymodel import largest_within
from peergrid_controller.market import Trade, quantize
from peergrid_controller.matching import accepted_wh, closing_price, fold, net_by_interval, provisional
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.schedule import MgSchedule, ScheduleError
from peergrid_controller.uplift import MICRO

__all__ = ["Acceptance", "Dispatch", "Recheck", "accept_alone", "dispatch", "recheck"]


@dataclass(frozen=True)
class Dispatch:
    cost: float  # the MILP's objective: the day's physical cost
    physical: tuple[float, ...]  # per interval
    dso_kwh: tuple[tuple[float, float], ...]  # per interval: (imported, exported) with the DSO


def dispatch(mg: Microgrid, dt: float, kwh: Sequence[float]) -> Dispatch:
    """The MG's day with its net P2P export fixed at `kwh` per interval (its own MILP; ScheduleError if none
    exists)."""
    sched = MgSchedule(mg, dt, p2p_fixed=[q / dt for q in kwh])
    plan = sched.solve()
    x, cols = sched.last_solution().x, sched.cols
    dso = tuple((x[i] * dt, x[e] * dt) for i, e in zip(cols.dso_import, cols.dso_export, strict=True))
    return Dispatch(plan.cost, interval_costs(cols, x, len(kwh)), dso)


def _ceiling(conventional: Sequence[float]) -> float:
    """The most an MG's day may cost: its conventional day cost (per interval), known only to the MILP's
    proven relative gap (1e-6, lp.py), which bounds the check's own precision too."""
    cost = sum(conventional)
    return cost + 1e-6 * max(1.0, abs(cost))


def _judge(
    mg: Microgrid, dt: float, kwh: Sequence[float], money: Sequence[float], conventional: Sequence[float]
) -> tuple[Dispatch | None, bool]:
    """One MG's exact check: its day with its trades (`kwh` per interval, + sale) fixed, and whether its cost
    less `money` (received) stays within its conventional day cost. No trade: no MILP, it passes."""
    if not any(kwh):
        return None, True
    day = dispatch(mg, dt, kwh)
    return day, day.cost - sum(money) <= _ceiling(conventional)


def _reduce(
    mg: Microgrid, dt: float, prices: Sequence[float], kwh: Sequence[float], budget: float
) -> tuple[float, ...] | None:
    """The largest trades within `kwh` (per interval, + sale) that keep the MG's day cost within `budget`, in
    whole Wh toward zero (kWh); None when not even trading nothing fits."""
    lo = [min(q / dt, 0.0) for q in kwh]
    hi = [max(q / dt, 0.0) for q in kwh]
    try:
        reduced = largest_within(mg, dt, prices, lo, hi, budget)
    except ScheduleError:
        return None
    return tuple(quantize(abs(x * dt)) * (1 if x > 0 else -1) for x in reduced)


@dataclass(frozen=True)
class Recheck:
    """One MG's re-check of its accept against every member's (`recheck`)."""

    positions: tuple[int, ...]  # its next accept: whole Wh per interval (+ sale), no larger than its last
    decision: Literal["kept", "reduced", "declined"]
    kwh: tuple[float, ...]  # its net export per interval in the clear of the accepts it re-checked
    money: tuple[float, ...]  # received per interval for that
    day: Dispatch | None  # its day with those trades fixed (None: it had none, nothing solved)
    passes: bool  # whether that day costs no more than its conventional day (payments included)
    checks: int  # MILPs solved


def recheck(
    mg: Microgrid,
    dt: float,
    prices: Sequence[float],
    accepts: Mapping[str, Sequence[int]],
    me: str,
    conventional: Sequence[float],
    keys: Mapping[str, bytes] | None = None,
    may_reduce: bool = True,
    fee: int = 0,
) -> Recheck:
    """`prices`: the session's closing λ_t (currency per kWh, exact to the nano); `accepts`: every member's
    current accept (whole Wh per interval, + sale; the members that never accepted left out), this MG's
    under `me` (ids: the members' public keys in hex, or names with their chain `keys`: the simulation's);
    `conventional`: its conventional cost per interval. Its trades if the clear came now (`provisional`),
    its exact check with them fixed (`_judge`: payments at the tick included); if that fails, the largest
    part of what it got that passes (`_reduce`, whole Wh) — or, when not even nothing fits, that part is
    empty or its accept unchanged, or `may_reduce` is False, zeros (it declines). On the chain `accepts` is
    the set the round it answers left (`exchange_clearing.accepts_at`). Deterministic; solves this MG's own
    MILPs only. With an exchange `fee` (nano per kWh per side, exchange_fee.py) its money is less the fee
    the chain collects on the Wh it would clear (`exchange_fee.by_interval`, exact to the micro-unit) and
    its reduction prices a sale at p − fee, a purchase at p + fee."""
    n = len(conventional)
    folded = fold(provisional(accepts, prices, keys), n)
    kwh, gross = net_by_interval(folded, me)
    money = _less_fee(gross, folded, me, fee)
    own = tuple(accepts[me])
    day, passes = _judge(mg, dt, kwh, money, conventional)
    checks = 0 if day is None else 1
    if passes:
        return Recheck(own, "kept", tuple(kwh), tuple(money), day, True, checks)
    zeros = (0,) * len(own)
    # on a clean session (`prices` and accepts over both books, matching.book_prices) an interval's kWh may
    # go at two prices: the reduction sees each interval at its trades' mean price
    on_tick = [
        m / q if len(prices) > n and abs(q) > 1e-9 else closing_price(p) / 1000
        for p, q, m in zip(prices[:n], kwh, gross, strict=True)
    ]
    on_tick = exchange_fee.net_prices(on_tick, kwh, fee)
    reduced = _reduce(mg, dt, on_tick, kwh, sum(conventional)) if may_reduce else None
    if reduced is None:
        return Recheck(zeros, "declined", tuple(kwh), tuple(money), day, False, checks)
    if len(prices) > n:
        row = _scaled(own, kwh, reduced)
    else:
        alone = Scenario(mg.name, dt, (mg,))
        allocation = Allocation(tuple(prices), {mg.name: reduced}, 0, 0.0, 0.0, True, 0, 0)
        row = accepted_wh(alone, allocation)[mg.name]
    if row == own:  # no smaller part found: posted again unchanged it would end the rounds while it fails
        row = zeros
    decision: Literal["reduced", "declined"] = "reduced" if any(row) else "declined"
    return Recheck(row, decision, tuple(kwh), tuple(money), day, False, checks + 1)


def _less_fee(money: Sequence[float], trades: Sequence[Sequence[Trade]], me: str, fee: int) -> list[float]:
    """`money` per interval less the exchange fee due on MG `me`'s cleared Wh there (its day's `due`, split
    exactly: exchange_fee.by_interval); unchanged with no fee."""
    if fee == 0:
        return list(money)
    parts = exchange_fee.by_interval(fee, exchange_fee.traded_wh(trades, me))
    return [m - part / MICRO for m, part in zip(money, parts, strict=True)]


def _scaled(own: Sequence[int], kwh: Sequence[float], reduced: Sequence[float]) -> tuple[int, ...]:
    """A clean session's accept (both books, n intervals each) cut in each interval by the reduction's share
    of what it got there, toward zero (so within every rule the books' accepts were cut to already)."""
    n = len(kwh)
    ratio = [min(max(r / q, 0.0), 1.0) if abs(q) > 1e-9 else 0.0 for r, q in zip(reduced, kwh, strict=True)]
    return tuple(int(a * ratio[i % n]) for i, a in enumerate(own))


@dataclass(frozen=True)
class Acceptance:
    """One MG's accept of its closed session's position (`accept_alone`)."""

    positions: tuple[int, ...]  # whole Wh per interval, + sale: what it posts as `exchange.accept`
    decision: Literal["whole", "reduced", "declined", "nothing"]  # "nothing": no position to accept
    day_cost: float  # its day cost with `positions` traded in full at the prices, payments included
    conventional: float  # its conventional day cost (no P2P)
    checks: int  # MILPs solved


def accept_alone(
    mg: Microgrid,
    dt: float,
    prices: Sequence[float],
    positions_kwh: Sequence[float],
    reductions: int = 4,
    fee: int = 0,
) -> Acceptance:
    """`prices`: the session's closing λ_t (currency per kWh, exact to the nano); `positions_kwh`: the MG's
    final stepped position per interval (+ sale); `fee`: the session's exchange fee (nano per kWh per side:
    its cost is its payments less the fee due on its accepted Wh, its reduction at p ∓ fee). Deterministic;
    solves only this MG's own MILPs."""
    alone = Scenario(mg.name, dt, (mg,))
    conventional = conventional_costs(alone)
    budget = sum(conventional.per_interval[mg.name])
    on_tick = tuple(closing_price(p) / 1000 for p in prices)
    allocation = Allocation(tuple(prices), {mg.name: tuple(positions_kwh)}, 0, 0.0, 0.0, True, 0, 0)
    row = accepted_wh(alone, allocation)[mg.name]
    zeros = (0,) * len(row)
    if not any(row):
        return Acceptance(zeros, "nothing", budget, budget, 0)
    decision: Literal["whole", "reduced"] = "whole"
    checks = 0
    for attempt in range(reductions + 1):
        kwh = [q / 1000 for q in row]
        day = dispatch(mg, dt, kwh)
        checks += 1
        cost = day.cost - sum(q * p for q, p in zip(kwh, on_tick, strict=True))
        cost += exchange_fee.due(fee, sum(map(abs, row))) / MICRO
        if cost <= _ceiling(conventional.per_interval[mg.name]):
            return Acceptance(row, decision, cost, budget, checks)
        net = exchange_fee.net_prices(on_tick, kwh, fee)
        reduced = None if attempt == reductions else _reduce(mg, dt, net, kwh, budget)
        if reduced is None:
            break
        checks += 1
        row = accepted_wh(alone, replace(allocation, positions={mg.name: reduced}))[mg.name]
        if not any(row):
            break
        decision = "reduced"
    return Acceptance(zeros, "declined", budget, budget, checks)
