"""Forward trades from a day-ahead allocation: matched, checked for individual rationality, put on the chain.

Promises:
- `match(scenario, allocation)` turns the ADMM positions into balanced bilateral trades per interval at the
  interval's price λ_t on the chain's tick: positions in whole Wh (rounded toward zero), an MG whose owner's
  rules forbid the side at that price dropped, the long side scaled down pro rata (largest remainder, ties
  by name) to the short side's volume — never beyond what an MG's position offered — and the largest
  sellers paired with the largest buyers (at most sellers + buyers − 1 trades per interval). No buyer names
  more sellers than a bid may (`MAX_REQUESTS`, the contract's limit): one that would keeps its largest
  trades and the rest is not traded. Every interval's sold and bought energy are equal by construction.
- `commit(scenario, allocation, conventional, reductions)` checks, for every MG with trades, exactly and ex
  ante, with its own day MILP over the day with its trades fixed, that its day cost (its payments at λ_t
  included) is no more than its conventional day cost. An MG that fails takes, for up to `reductions`
  rounds, the largest part of its trades that passes (or declines when none does), and after that declines;
  the rest are matched again and re-checked until every MG that trades passes. A declined MG trades nothing
  day-ahead, and `commit` raises `ForwardError` rather than return a commitment where a declined MG trades
  or any MG's day costs more than its conventional one. The same MILPs are the MGs' dispatch (the trades are
  binding: each MG plans its day knowing them), so the strict guarantee holds ex post in the simulation,
  which has no forecast error.
  What it guarantees when a counterparty does not deliver: nothing beyond the contract's settlement rule
  (`settle` pays for the energy delivered, at most the agreed quantity): the MG that is left short buys the
  gap from the DSO at retail (or sells its surplus at feed-in) and may end worse off than conventional by
  that difference. delivery.py plays such faults (`SimulationConfig.delivery_faults`) and measures it.
- `dispatch(mg, dt, kwh)`: an MG's day MILP with its net P2P export fixed — the check's, the delivery's.
- `post(venue, commitment, clean)` records every interval's forward trades through the market contract (offers at
  λ_t, bids naming the matched sellers, one round, closed) and raises `ForwardError` if the contract refuses
  a move or agrees different trades (pairs, whole Wh or price on the chain's tick).
- `deviation_gains(scenario, commitment, uplift=None)`: each MG's gain from deviating alone at the final
  prices (its own day MILP); with an uplift (uplift.py) the MILP holds the payments' rules (charge due
  anyway, credit only for delivering the committed positions), so the stability check with payments is a
  re-solve, not a subtraction. With `own_rules` what an MG would trade beyond its commitment where its own
  floor or cap is the price is valued at that rule (`own_rule_fees`): what being rationed at its own rule
  is worth to it by its own declaration, nothing (uplift.py pays no more than this gain).
Deterministic. Never reads clocks or I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

import highspy
import numpy as np

from peergrid_controller import lp as lpmod
from peergrid_controller.bargaining import Venue
from peergrid_controller.baselines import BaselineCosts, interval_costs
from peergrid_controller.dayahead import Allocation, Fees, limits_kw, rule_fees
from peergrid_controller.daymodel import DayModel, largest_within
from peergrid_controller.market import (
    MAX_REQUESTS,
    Accepted,
    Bid,
    Offer,
    Trade,
    micro_per_wh,
    price_tick,
    quantize,
    wh,
)
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.schedule import MgSchedule, ScheduleError
from peergrid_controller.uplift import Uplift, largest_remainder, north_west


class ForwardError(RuntimeError):
    """The market contract refused a forward move or agreed other trades than matched, or a commitment broke
    its own promise (a declined MG trading, an MG above its conventional cost): never ignored."""


@dataclass(frozen=True)
class Commitment:
    prices: tuple[float, ...]  # on the chain's tick
    trades: tuple[tuple[Trade, ...], ...]  # per interval
    declined: tuple[str, ...]  # MGs whose exact check failed for good (they trade nothing day-ahead)
    physical_cost: dict[str, tuple[float, ...]]  # per MG and interval, dispatched with its trades fixed
    payments: dict[str, tuple[float, ...]]  # per MG and interval: money received minus paid
    day_cost: dict[str, float]  # physical minus payments, the day's
    checks: int  # MILPs solved for the checks
    # per trading MG and interval: kWh (imported, exported) with the DSO in its dispatch (delivery.py
    # covers a counterparty's shortfall there)
    dso_kwh: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)


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


def _scale(wants: dict[str, int], volume: int) -> dict[str, int]:
    """Scale whole-Wh positions down to `volume` in all (largest remainder, ties by name); as they are when
    they fit."""
    return dict(wants) if sum(wants.values()) <= volume else largest_remainder(wants, volume)


def _pair(
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
        out.append(_pair(t, price, _scale(sells, volume), _scale(buys, volume)))
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


def _ceiling(conventional: BaselineCosts, name: str) -> float:
    """The most an MG's day may cost: its conventional day cost, known only to the MILP's proven relative
    gap (1e-6, lp.py), which bounds the check's own precision too."""
    cost = sum(conventional.per_interval[name])
    return cost + 1e-6 * max(1.0, abs(cost))


@dataclass(frozen=True)
class _Checked:
    physical: dict[str, tuple[float, ...]]
    payments: dict[str, tuple[float, ...]]
    refused: dict[str, list[float]]  # MGs above their ceiling, with their kWh per interval
    checks: int  # MILPs solved
    dso_kwh: dict[str, tuple[tuple[float, float], ...]]


def _check(
    scenario: Scenario, trades: tuple[tuple[Trade, ...], ...], conventional: BaselineCosts
) -> _Checked:
    """Each MG's day with its trades fixed: physical cost, payments and DSO exchange per interval, the MGs
    above their ceiling, and how many MILPs that took."""
    n, dt = scenario.intervals, scenario.interval_hours
    physical: dict[str, tuple[float, ...]] = {}
    payments: dict[str, tuple[float, ...]] = {}
    refused: dict[str, list[float]] = {}
    dso: dict[str, tuple[tuple[float, float], ...]] = {}
    for mg in scenario.microgrids:
        kwh, money = net_by_interval(trades, mg.name)
        if not any(kwh):
            physical[mg.name] = conventional.per_interval[mg.name]
            payments[mg.name] = tuple(0.0 for _ in range(n))
            continue
        day = dispatch(mg, dt, kwh)
        if day.cost - sum(money) > _ceiling(conventional, mg.name):
            refused[mg.name] = kwh
        physical[mg.name], payments[mg.name], dso[mg.name] = day.physical, tuple(money), day.dso_kwh
    return _Checked(physical, payments, refused, len(dso), dso)


def _verify(commitment: Commitment, conventional: BaselineCosts) -> None:
    """Raise ForwardError unless no declined MG trades and every MG's day cost is within its ceiling: what
    `commit` promises, checked on what it returns rather than trusted to its loop."""
    trading = {name for day in commitment.trades for tr in day for name in (tr.seller, tr.buyer)}
    still = sorted(trading & set(commitment.declined))
    if still:
        raise ForwardError(f"{still[0]} declined but still trades day-ahead")
    for name, cost in sorted(commitment.day_cost.items()):
        if cost > _ceiling(conventional, name):
            raise ForwardError(
                f"{name}'s day would cost {cost:.6f}, above its conventional {sum(conventional.per_interval[name]):.6f}"
            )


def commit(
    scenario: Scenario, allocation: Allocation, conventional: BaselineCosts, reductions: int = 4
) -> Commitment:
    dt = scenario.interval_hours
    prices = tuple(price_tick(p) for p in allocation.prices)
    declined: list[str] = []
    checks = 0
    attempt = 0
    while True:
        trades = match(scenario, allocation, declined)
        checked = _check(scenario, trades, conventional)
        checks += checked.checks
        refused = checked.refused
        if not refused:
            break
        # for `reductions` rounds, each MG that fails takes instead the largest trades within what it was
        # matched that keep it within its conventional day cost, or declines when none does; after that it
        # declines. Either way the rest are matched and checked again (their counterparts shrank and they
        # may fail in turn), until nobody fails: each round past `reductions` declines one more MG at least
        positions = dict(allocation.positions)
        for name, kwh in refused.items():
            if attempt >= reductions:
                declined.append(name)
                continue
            mg = next(m for m in scenario.microgrids if m.name == name)
            budget = sum(conventional.per_interval[name])
            lo = [min(q / dt, 0.0) for q in kwh]
            hi = [max(q / dt, 0.0) for q in kwh]
            try:
                reduced = largest_within(mg, dt, prices, lo, hi, budget)
            except ScheduleError:
                declined.append(name)
                continue
            checks += 1
            positions[name] = tuple(quantize(abs(x * dt)) * (1 if x > 0 else -1) for x in reduced)
            if not any(positions[name]):
                declined.append(name)  # nothing it was matched fits its conventional cost
        allocation = replace(allocation, positions=positions)
        attempt += 1
    physical, payments = checked.physical, checked.payments
    commitment = Commitment(
        prices=prices,
        trades=trades,
        declined=tuple(sorted(declined)),
        physical_cost=physical,
        payments=payments,
        day_cost={name: sum(physical[name]) - sum(payments[name]) for name in physical},
        checks=checks,
        dso_kwh=checked.dso_kwh,
    )
    _verify(commitment, conventional)
    return commitment


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
        if [(a.seller, a.buyer, wh(a.quantity_kwh), micro_per_wh(a.price)) for a in closed] != [
            (b.seller, b.buyer, wh(b.quantity_kwh), micro_per_wh(b.price)) for b in mine
        ]:
            raise ForwardError(f"interval {t}: the contract agreed other trades than were matched")
        agreed.append(closed)
    return tuple(agreed)


def own_rule_fees(mg: Microgrid, prices: Sequence[float]) -> Fees:
    """The MG's rule fees (dayahead.rule_fees: its floor's excess over its feed-in per kWh sold, the retail
    price's excess over its cap per kWh bought) in the intervals whose price is its own floor (sell) or cap
    (buy) on the chain's tick, zero elsewhere; None for a side with no such interval. There the owner's
    rule is its declared valuation at the margin: it values a kWh sold at no more than its floor, bought at
    no less than its cap, so being rationed there is worth nothing to it by its own declaration."""
    sell, buy = rule_fees(mg)

    def at(fees: tuple[float, ...] | None, rule: float) -> tuple[float, ...] | None:
        if fees is None:
            return None
        out = tuple(
            f if micro_per_wh(p) == micro_per_wh(rule) else 0.0 for f, p in zip(fees, prices, strict=True)
        )
        return out if any(out) else None

    return at(sell, mg.rules.floor_price), at(buy, mg.rules.cap_price)


def deviation_gains(
    scenario: Scenario,
    commitment: Commitment,
    uplift: Uplift | None = None,
    own_rules: bool = False,
    names: Collection[str] | None = None,
) -> dict[str, float]:
    """Per MG (those in `names`; None: all): how much less its day would cost had it deviated alone from its
    forward trades, trading whatever it liked at the final prices within its owner's rules (its own day
    MILP, best response) — the day-ahead outcome's stability check (issue #7 item 4). ≤ 0 up to solver
    tolerance means no gain.

    With `own_rules` its best response is valued at its own rules where they are the price
    (`_beyond_commitment`): the gain it has by its own declared valuation, without what being rationed at
    its own floor or cap is worth (uplift.py pays no more than this).

    With `uplift` (uplift.py) the payoff includes the MG's credit and charge, and the best response is
    re-solved under the payments' own rules: the charge is due whatever it does (it took part), the credit
    only if it delivers exactly its committed positions — a binary in its MILP that, when on, holds every
    interval's net P2P export at the committed one (`_earn_if_delivered`) and is worth the credit."""
    n, dt = scenario.intervals, scenario.interval_hours
    gains = {}
    for mg in scenario.microgrids:
        if names is not None and mg.name not in names:
            continue
        model = DayModel(mg, dt)
        pairs = [limits_kw(mg, t, commitment.prices[t], dt) for t in range(n)]
        model.trade(commitment.prices, [lo for lo, _ in pairs], [hi for _, hi in pairs])
        kwh, _ = net_by_interval(commitment.trades, mg.name)
        if own_rules:
            _beyond_commitment(model, [q / dt for q in kwh], own_rule_fees(mg, commitment.prices))
        credit = uplift.credit(mg.name) if uplift is not None else 0.0
        charge = uplift.charge(mg.name) if uplift is not None else 0.0
        if credit > 0:
            _earn_if_delivered(model, [q / dt for q in kwh], pairs, credit)
        best = model.schedule.solve().cost + charge
        gains[mg.name] = commitment.day_cost[mg.name] + charge - credit - best
    return gains


def _beyond_commitment(model: DayModel, committed_kw: list[float], fees: Fees) -> None:
    """Charge the rule's fee on each kWh sold (bought) beyond the committed trade in the intervals where the
    MG's own floor (cap) is the price: e_k ≥ x_k − max(c_k, 0) at cost fee_k per kWh (f_k ≥ −x_k − max(−c_k,
    0) for purchases), x_k the net P2P export. Only the energy it was rationed of is valued at its rule: its
    committed trade keeps the price (a fee on it would make the commitment look like a loss and pay the MG
    for it), and trading less than committed loses the price, as without rules."""
    s = model.schedule
    h = s.highs()
    empty = np.zeros(0, np.int32)
    for fee, sign in ((fees[0], 1.0), (fees[1], -1.0)):
        for k, c in enumerate(committed_kw):
            if fee is None or fee[k] <= 0.0:
                continue
            h.addCol(fee[k] * s.dt, 0.0, lpmod.INF, 0, empty, np.zeros(0))
            extra = h.getNumCol() - 1
            index = np.array([s.cols.p2p_sell[k], s.cols.p2p_buy[k], extra], np.int32)
            h.addRow(-lpmod.INF, max(sign * c, 0.0), 3, index, np.array([sign, -sign, -1.0]))


def _earn_if_delivered(
    model: DayModel, committed_kw: list[float], limits: list[tuple[float, float]], credit: float
) -> None:
    """A binary `delivers` worth `credit` (its cost −credit) that, when 1, holds every interval's net P2P
    export at the committed one: |x_k − c_k| ≤ M_k·(1 − delivers), M_k the widest move within the bounds."""
    s = model.schedule
    h = s.highs()
    empty = np.zeros(0, np.int32)
    h.addCol(-credit, 0.0, 1.0, 0, empty, np.zeros(0))
    delivers = h.getNumCol() - 1
    h.changeColIntegrality(delivers, highspy.HighsVarType.kInteger)
    for k, (c, (lo, hi)) in enumerate(zip(committed_kw, limits, strict=True)):
        big = max(hi - lo, abs(c - lo), abs(hi - c), 1e-3)
        # net export = sell − buy (the buy column is fixed at 0 unless rule fees split the two)
        index = np.array([s.cols.p2p_sell[k], s.cols.p2p_buy[k], delivers], np.int32)
        h.addRow(-lpmod.INF, c + big, 3, index, np.array([1.0, -1.0, big]))
        h.addRow(-lpmod.INF, big - c, 3, index, np.array([-1.0, 1.0, big]))
