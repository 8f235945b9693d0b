"""Forward trades from a day-ahead allocation: matched, checked for individual rationality, put on the chain.

Promises:
- `match(scenario, allocation)` turns the ADMM positions into balanced bilateral trades per interval at the
  interval's price λ_t on the chain's tick: positions in whole Wh (rounded toward zero), an MG whose owner's
  rules forbid the side at that price dropped, the long side scaled down pro rata (largest remainder, ties
  by name) to the short side's volume — never beyond what an MG's position offered — and sellers paired
  with buyers in name order (at most sellers + buyers − 1 trades per interval). Every interval's sold and
  bought energy are equal by construction.
- `commit(scenario, allocation, conventional)` checks, for every MG with trades, exactly and ex ante, with its
  own day MILP over the day with its trades fixed, that its day cost (its payments at λ_t included) is no
  more than its conventional day cost; an MG that fails declines, the rest are matched again without it,
  until nobody declines. The same MILPs are the MGs' dispatch (the trades are binding: each MG plans its day
  knowing them), so the strict guarantee holds ex post in the simulation, which has no forecast error.
  What it guarantees when a counterparty does not deliver: nothing beyond the contract's settlement rule
  (`settle` pays for the energy delivered, at most the agreed quantity): the MG that is left short buys the
  gap from the DSO at retail (or sells its surplus at feed-in) and may end worse off than conventional by
  that difference. The simulation never has a counterparty fail.
- `post(venue, commitment)` records every interval's forward trades through the market contract (offers at
  λ_t, bids naming the matched sellers, one round, closed) and raises `ForwardError` if the contract refuses
  a move or agrees different trades.
Deterministic. Never reads clocks or I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from peergrid_controller.bargaining import Venue
from peergrid_controller.baselines import BaselineCosts, interval_costs
from peergrid_controller.dayahead import Allocation, limits_kw
from peergrid_controller.daymodel import DayModel, largest_within
from peergrid_controller.market import Accepted, Bid, Offer, Trade, price_tick, quantize, wh
from peergrid_controller.model import Scenario
from peergrid_controller.schedule import MgSchedule, ScheduleError


class ForwardError(RuntimeError):
    """The market contract refused a forward move or agreed other trades than matched: never ignored."""


@dataclass(frozen=True)
class Commitment:
    prices: tuple[float, ...]  # on the chain's tick
    trades: tuple[tuple[Trade, ...], ...]  # per interval
    declined: tuple[str, ...]  # MGs whose exact check failed (they trade nothing day-ahead)
    physical_cost: dict[str, tuple[float, ...]]  # per MG and interval, dispatched with its trades fixed
    payments: dict[str, tuple[float, ...]]  # per MG and interval: money received minus paid
    day_cost: dict[str, float]  # physical minus payments, the day's
    checks: int  # MILPs solved for the checks


def _scale(wants: dict[str, int], volume: int) -> dict[str, int]:
    """Scale whole-Wh positions down to `volume` in all: floors, then the largest remainders (ties by name)."""
    total = sum(wants.values())
    if total <= volume:
        return dict(wants)
    share = {name: w * volume // total for name, w in wants.items()}
    left = volume - sum(share.values())
    order = sorted(wants, key=lambda name: (-(wants[name] * volume % total), name))
    for name in order[:left]:
        share[name] += 1
    return share


def _pair(interval: int, price: float, sells: dict[str, int], buys: dict[str, int]) -> tuple[Trade, ...]:
    """Sellers to buyers in name order (north-west corner): exact in whole Wh, at most |S| + |B| − 1 trades."""
    sellers = sorted((name, amount) for name, amount in sells.items() if amount > 0)
    buyers = sorted((name, amount) for name, amount in buys.items() if amount > 0)
    left_s = [amount for _, amount in sellers]
    left_b = [amount for _, amount in buyers]
    trades = []
    i = j = 0
    while i < len(sellers) and j < len(buyers):
        amount = min(left_s[i], left_b[j])
        trades.append(Trade(interval, sellers[i][0], buyers[j][0], amount / 1000, price))
        left_s[i] -= amount
        left_b[j] -= amount
        if left_s[i] == 0:
            i += 1
        if left_b[j] == 0:
            j += 1
    return tuple(trades)


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
        out.append(_pair(t, price, _scale(sells, volume), _scale(buys, volume)))
    return tuple(out)


def _net(trades: tuple[tuple[Trade, ...], ...], name: str) -> tuple[list[float], list[float]]:
    """kWh net export and money received per interval for one MG."""
    kwh, money = [0.0] * len(trades), [0.0] * len(trades)
    for t, interval in enumerate(trades):
        for tr in interval:
            sign = 1.0 if tr.seller == name else -1.0 if tr.buyer == name else 0.0
            kwh[t] += sign * tr.quantity_kwh
            money[t] += sign * tr.quantity_kwh * tr.price
    return kwh, money


def _ceiling(conventional: BaselineCosts, name: str) -> float:
    """The most an MG's day may cost: its conventional day cost, known only to the MILP's proven relative
    gap (1e-6, lp.py), which bounds the check's own precision too."""
    cost = sum(conventional.per_interval[name])
    return cost + 1e-6 * max(1.0, abs(cost))


def commit(
    scenario: Scenario, allocation: Allocation, conventional: BaselineCosts, reductions: int = 4
) -> Commitment:
    n, dt = scenario.intervals, scenario.interval_hours
    prices = tuple(price_tick(p) for p in allocation.prices)
    declined: list[str] = []
    checks = 0
    for attempt in range(reductions + 1):
        trades = match(scenario, allocation, declined)
        physical: dict[str, tuple[float, ...]] = {}
        payments: dict[str, tuple[float, ...]] = {}
        refused: dict[str, list[float]] = {}
        for mg in scenario.microgrids:
            kwh, money = _net(trades, mg.name)
            if not any(kwh):
                physical[mg.name] = conventional.per_interval[mg.name]
                payments[mg.name] = tuple(0.0 for _ in range(n))
                continue
            sched = MgSchedule(mg, dt, p2p_fixed=[q / dt for q in kwh])
            plan = sched.solve()
            checks += 1
            if plan.cost - sum(money) > _ceiling(conventional, mg.name):
                refused[mg.name] = kwh
            physical[mg.name] = interval_costs(sched.cols, sched.last_solution().x, n)
            payments[mg.name] = tuple(money)
        if not refused:
            break
        # each MG that fails takes instead the largest trades within what it was matched that keep it within
        # its conventional day cost, or declines when none does (or after `reductions` rounds: the others'
        # positions shrink with it and may fail in turn)
        positions = dict(allocation.positions)
        for name, kwh in refused.items():
            mg = next(m for m in scenario.microgrids if m.name == name)
            budget = sum(conventional.per_interval[name])
            try:
                if attempt == reductions:
                    raise ScheduleError("infeasible", "out of rounds")
                lo = [min(q / dt, 0.0) for q in kwh]
                hi = [max(q / dt, 0.0) for q in kwh]
                reduced = largest_within(mg, dt, prices, lo, hi, budget)
                checks += 1
                positions[name] = tuple(quantize(abs(x * dt)) * (1 if x > 0 else -1) for x in reduced)
                if not any(positions[name]):
                    declined.append(name)  # nothing it was matched fits its conventional cost
            except ScheduleError:
                declined.append(name)
        allocation = replace(allocation, positions=positions)
    return Commitment(
        prices=prices,
        trades=trades,
        declined=tuple(sorted(declined)),
        physical_cost=physical,
        payments=payments,
        day_cost={name: sum(physical[name]) - sum(payments[name]) for name in physical},
        checks=checks,
    )


def post(venue: Venue, commitment: Commitment, clean: dict[str, bool]) -> tuple[tuple[Trade, ...], ...]:
    """Record the forward trades interval by interval; returns the trades the contract agreed."""
    agreed: list[tuple[Trade, ...]] = []
    for t, trades in enumerate(commitment.trades):
        sold: dict[str, float] = {}
        asked: dict[str, list[tuple[str, float]]] = {}
        for tr in trades:
            sold[tr.seller] = sold.get(tr.seller, 0.0) + tr.quantity_kwh
            asked.setdefault(tr.buyer, []).append((tr.seller, tr.quantity_kwh))
        price = commitment.prices[t]
        for seller in sorted(sold):
            verdict = venue.post_offer(Offer(seller, t, price, round(sold[seller], 3), clean[seller]))
            if not isinstance(verdict, Accepted):
                raise ForwardError(f"interval {t}: offer of {seller} refused: {verdict}")
        for buyer in sorted(asked):
            verdict = venue.post_bid(Bid(buyer, t, tuple(sorted(asked[buyer]))))
            if not isinstance(verdict, Accepted):
                raise ForwardError(f"interval {t}: bid of {buyer} refused: {verdict}")
        if not trades:
            agreed.append(())
            continue
        venue.close_round()
        closed = tuple(sorted(venue.finish(t), key=lambda tr: (tr.seller, tr.buyer)))
        mine = tuple(sorted(trades, key=lambda tr: (tr.seller, tr.buyer)))
        if [(a.seller, a.buyer, wh(a.quantity_kwh)) for a in closed] != [
            (b.seller, b.buyer, wh(b.quantity_kwh)) for b in mine
        ]:
            raise ForwardError(f"interval {t}: the contract agreed other trades than were matched")
        agreed.append(closed)
    return tuple(agreed)


def deviation_gains(scenario: Scenario, commitment: Commitment) -> dict[str, float]:
    """Per MG: how much less its day would cost had it deviated alone from its forward trades, trading
    whatever it liked at the final prices within its owner's rules (its own day MILP, best response) — the
    day-ahead outcome's stability check (issue #7 item 4). ≤ 0 up to solver tolerance means no gain."""
    n, dt = scenario.intervals, scenario.interval_hours
    gains = {}
    for mg in scenario.microgrids:
        model = DayModel(mg, dt)
        pairs = [limits_kw(mg, t, commitment.prices[t], dt) for t in range(n)]
        model.trade(commitment.prices, [lo for lo, _ in pairs], [hi for _, hi in pairs])
        best = model.schedule.solve().cost
        gains[mg.name] = commitment.day_cost[mg.name] - best
    return gains
