"""Forward trades from a day-ahead allocation: matched, checked for individual rationality, put on the chain.

Promises:
- `match(scenario, allocation)` (matching.py) turns the ADMM positions into balanced bilateral trades per
  interval at the interval's closing price on the chain's tick, within each MG's position and owner's rules,
  with the ledger's own arithmetic (the exchange contract's `exchange.clear` runs the same function).
- `commit(scenario, allocation, conventional, reductions)` checks, for every MG with trades, exactly and ex
  ante, with its own day MILP over the day with its trades fixed, that its day cost (its payments at λ_t
  included) is no more than its conventional day cost. An MG that fails takes, for up to `reductions`
  rounds, the largest part of its trades that passes (or declines when none does), and after that declines;
  the rest are matched again and re-checked until every MG that trades passes. It is rounds of `recheck`,
  every MG at once, from every MG accepting its whole position: the rule the exchange contract's accept
  rounds let each MGMC apply alone on the chain (one rule, not two; byte-identical to the loop before). A declined MG trades nothing
  day-ahead, and `commit` raises `ForwardError` rather than return a commitment where a declined MG trades
  or any MG's day costs more than its conventional one. The same MILPs are the MGs' dispatch (the trades are
  binding: each MG plans its day knowing them), so the strict guarantee holds ex post in the simulation,
  which has no forecast error.
  What it guarantees when a counterparty does not deliver: nothing beyond the contract's settlement rule
  (`settle` pays for the energy delivered, at most the agreed quantity): the MG that is left short buys the
  gap from the DSO at retail (or sells its surplus at feed-in) and may end worse off than conventional by
  that difference. delivery.py plays such faults (`SimulationConfig.delivery_faults`) and measures it.
- `dispatch(mg, dt, kwh)`: an MG's day MILP with its net P2P export fixed — the check's, the delivery's.
  `Commitment.accepted` is each MG's accepted position per interval (whole Wh, zeros for a declined MG):
  what the final `match` was computed from.
- `clear(clearing, scenario, commitment, clean)` (a venue whose exchange clears on the chain: the MGMC
  chain's exchange contract) has each MG post its accepted positions (`exchange.accept`, in scenario order),
  the coordinator clear, and returns the trades the contract computed; `ForwardError` if it refuses an
  accept or the clear, or if its trades differ from the commitment's in any pair, Wh or price.
- `recheck(mg, dt, prices, accepts, me, conventional, keys, may_reduce)`: one MG's next accept from public
  data (every member's current accept, the closing prices) and its own model: its trades if the clear came
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
- `post(venue, commitment, clean)` (a venue without such an exchange: the memory venue) records every
  interval's forward trades through the market contract (offers at λ_t, bids naming the matched sellers, one
  round, closed) and raises `ForwardError` if the contract refuses a move or agrees different trades (pairs,
  whole Wh or price on the chain's tick).
- `deviation_gains` and `own_rule_fees` (deviation.py): the commitment's stability check, each MG deviating alone
  at the final prices, with or without make-whole payments. They, `match` and `net_by_interval` stay importable
  from here.
Deterministic. Never reads clocks or I/O beyond the venue `post` is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import count
from typing import Literal, Protocol, runtime_checkable

from peergrid_controller.bargaining import Venue
from peergrid_controller.baselines import BaselineCosts, interval_costs
from peergrid_controller.baselines import conventional as conventional_costs
from peergrid_controller.chain_venue import key_for
from peergrid_controller.dayahead import Allocation
from peergrid_controller.daymodel import largest_within
from peergrid_controller.deviation import deviation_gains, own_rule_fees
from peergrid_controller.market import (
    Accepted,
    Bid,
    Offer,
    Rejected,
    Trade,
    Verdict,
    micro_per_wh,
    quantize,
    wh,
)
from peergrid_controller.matching import (
    accepted_wh,
    closing_price,
    match,
    net_by_interval,
    pair,
    provisional,
)
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.schedule import MgSchedule, ScheduleError

__all__ = [
    "Acceptance",
    "Commitment",
    "Dispatch",
    "ForwardClearing",
    "ForwardError",
    "Recheck",
    "accept_alone",
    "clear",
    "commit",
    "deviation_gains",
    "dispatch",
    "match",
    "net_by_interval",
    "own_rule_fees",
    "post",
    "provisional",
    "recheck",
]

_pair = pair  # its name here before matching.py (the tests pair through it)


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
    # per MG and interval: its accepted position in whole Wh (+ sale), zeros for a declined MG: what the
    # trades were matched from, and what it accepts on the chain (`clear`)
    accepted: dict[str, tuple[int, ...]] = field(default_factory=dict)


@runtime_checkable
class ForwardClearing(Protocol):
    """A venue's exchange that computes the forward trades itself (chain_venue.ChainExchange: the exchange
    contract's `exchange.accept` and `exchange.clear` on the session the allocation closed)."""

    def ready(self) -> bool:
        """Whether a closed session awaits its clear (none: the allocation was not recorded here)."""
        ...

    def accept(self, name: str, positions_wh: Sequence[int], clean: bool) -> Verdict: ...

    def clear(self) -> tuple[tuple[Trade, ...], ...] | Rejected: ...


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
    """Each MG's day with its trades fixed (`_judge`): physical cost, payments and DSO exchange per
    interval, the MGs above their ceiling, and how many MILPs that took."""
    n, dt = scenario.intervals, scenario.interval_hours
    physical: dict[str, tuple[float, ...]] = {}
    payments: dict[str, tuple[float, ...]] = {}
    refused: dict[str, list[float]] = {}
    dso: dict[str, tuple[tuple[float, float], ...]] = {}
    for mg in scenario.microgrids:
        kwh, money = net_by_interval(trades, mg.name)
        day, passes = _judge(mg, dt, kwh, money, conventional.per_interval[mg.name])
        if day is None:
            physical[mg.name] = conventional.per_interval[mg.name]
            payments[mg.name] = tuple(0.0 for _ in range(n))
            continue
        if not passes:
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
        if cost > _ceiling(conventional.per_interval[name]):
            raise ForwardError(
                f"{name}'s day would cost {cost:.6f}, above its conventional {sum(conventional.per_interval[name]):.6f}"
            )


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
) -> Recheck:
    """`prices`: the session's closing λ_t (currency per kWh, exact to the nano); `accepts`: every member's
    current accept (whole Wh per interval, + sale; the members that never accepted left out), this MG's
    under `me` (ids: the members' public keys in hex, or names with their chain `keys`: the simulation's);
    `conventional`: its conventional cost per interval. Its trades if the clear came now (`provisional`),
    its exact check with them fixed (`_judge`: payments at the tick included); if that fails, the largest
    part of what it got that passes (`_reduce`, whole Wh) — or, when not even nothing fits, that part is
    empty or its accept unchanged, or `may_reduce` is False, zeros (it declines). On the chain `accepts` is
    the set the round it answers left (`exchange_clearing.accepts_at`). Deterministic; solves this MG's own
    MILPs only."""
    kwh, money = net_by_interval(provisional(accepts, prices, keys), me)
    own = tuple(accepts[me])
    day, passes = _judge(mg, dt, kwh, money, conventional)
    checks = 0 if day is None else 1
    if passes:
        return Recheck(own, "kept", tuple(kwh), tuple(money), day, True, checks)
    zeros = (0,) * len(own)
    on_tick = [closing_price(p) / 1000 for p in prices]
    reduced = _reduce(mg, dt, on_tick, kwh, sum(conventional)) if may_reduce else None
    if reduced is None:
        return Recheck(zeros, "declined", tuple(kwh), tuple(money), day, False, checks)
    alone = Scenario(mg.name, dt, (mg,))
    allocation = Allocation(tuple(prices), {mg.name: reduced}, 0, 0.0, 0.0, True, 0, 0)
    row = accepted_wh(alone, allocation)[mg.name]
    if row == own:  # no smaller part found: posted again unchanged it would end the rounds while it fails
        row = zeros
    decision: Literal["reduced", "declined"] = "reduced" if any(row) else "declined"
    return Recheck(row, decision, tuple(kwh), tuple(money), day, False, checks + 1)


def commit(
    scenario: Scenario, allocation: Allocation, conventional: BaselineCosts, reductions: int = 4
) -> Commitment:
    """Rounds of `recheck`, every MG at once, from every MG accepting its whole position (`accepted_wh`):
    each round every MG re-checks the clear of the round before; the rounds end when every MG passed, i.e.
    no accept changed (the chain's settled round); an MG that fails after `reductions` rounds declines."""
    dt = scenario.interval_hours
    keys = {mg.name: key_for(scenario.name, mg.name).public for mg in scenario.microgrids}
    accepts = accepted_wh(scenario, allocation)
    declined: list[str] = []
    checks = 0
    for round_ in count(1):
        rechecked = {
            mg.name: recheck(
                mg,
                dt,
                allocation.prices,
                accepts,
                mg.name,
                conventional.per_interval[mg.name],
                keys,
                may_reduce=round_ <= reductions,
            )
            for mg in scenario.microgrids
        }
        checks += sum(r.checks for r in rechecked.values())
        if all(r.passes for r in rechecked.values()):
            break
        for name, r in rechecked.items():
            accepts[name] = r.positions
            if r.decision == "declined":
                declined.append(name)
    physical = {
        name: r.day.physical if r.day is not None else conventional.per_interval[name]
        for name, r in rechecked.items()
    }
    payments = {name: r.money for name, r in rechecked.items()}
    commitment = Commitment(
        prices=tuple(closing_price(p) / 1000 for p in allocation.prices),
        trades=provisional(accepts, allocation.prices, keys),
        declined=tuple(sorted(declined)),
        physical_cost=physical,
        payments=payments,
        day_cost={name: sum(physical[name]) - sum(payments[name]) for name in physical},
        checks=checks,
        dso_kwh={name: r.day.dso_kwh for name, r in rechecked.items() if r.day is not None},
        accepted=accepts,
    )
    _verify(commitment, conventional)
    return commitment


def _same(theirs: Sequence[Trade], ours: Sequence[Trade]) -> bool:
    """The same trades in pairs, whole Wh and price on the chain's tick, whatever the order."""

    def key(trades: Sequence[Trade]) -> list[tuple[str, str, int, int]]:
        return sorted((tr.seller, tr.buyer, wh(tr.quantity_kwh), micro_per_wh(tr.price)) for tr in trades)

    return key(theirs) == key(ours)


def clear(
    clearing: ForwardClearing, scenario: Scenario, commitment: Commitment, clean: Mapping[str, bool]
) -> tuple[tuple[Trade, ...], ...]:
    """Each MG accepts its positions on the chain, the coordinator clears; the trades the contract computed."""
    for mg in scenario.microgrids:
        positions = commitment.accepted.get(mg.name, (0,) * scenario.intervals)
        verdict = clearing.accept(mg.name, positions, clean[mg.name])
        if not isinstance(verdict, Accepted):
            raise ForwardError(f"the exchange refused {mg.name}'s accepted positions: {verdict}")
    cleared = clearing.clear()
    if isinstance(cleared, Rejected):
        raise ForwardError(f"the exchange refused to clear the forward trades: {cleared}")
    if len(cleared) != len(commitment.trades):
        raise ForwardError(
            f"the exchange cleared {len(cleared)} intervals, {len(commitment.trades)} were matched"
        )
    for t, (theirs, ours) in enumerate(zip(cleared, commitment.trades, strict=True)):
        if not _same(theirs, ours):
            raise ForwardError(f"interval {t}: the exchange cleared other trades than were matched")
    return tuple(tuple(sorted(day, key=lambda tr: (tr.seller, tr.buyer))) for day in cleared)


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
) -> Acceptance:
    """`prices`: the session's closing λ_t (currency per kWh, exact to the nano); `positions_kwh`: the MG's
    final stepped position per interval (+ sale). Deterministic; solves only this MG's own MILPs."""
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
        if cost <= _ceiling(conventional.per_interval[mg.name]):
            return Acceptance(row, decision, cost, budget, checks)
        reduced = None if attempt == reductions else _reduce(mg, dt, on_tick, kwh, budget)
        if reduced is None:
            break
        checks += 1
        row = accepted_wh(alone, replace(allocation, positions={mg.name: reduced}))[mg.name]
        if not any(row):
            break
        decision = "reduced"
    return Acceptance(zeros, "declined", budget, budget, checks)


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
        if not _same(closed, trades):
            raise ForwardError(f"interval {t}: the contract agreed other trades than were matched")
        agreed.append(closed)
    return tuple(agreed)
