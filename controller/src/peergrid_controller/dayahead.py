"""Day-ahead allocation: every MG's net P2P export for every interval of the day, by exchange ADMM.

Promises: `allocate(scenario)` runs the exchange problem of Boyd et al., "Distributed optimization and
statistical learning via ADMM" §7.3.2, over the whole day: minimise Σ_i f_i(q_i) subject to Σ_i q_i,t = 0 in
every interval t, where q_i,t is MG i's net P2P export (kWh) and f_i its own day cost (the schedule MILP of
schedule.py). Each MGMC repeatedly solves its own day with q_i free, paying the price λ_t for every kWh it
takes and a proximal term (ρ/2)(q_i,t − q_i,t^k + q̄_t^k)²; the coordinator (any node: the computation is
public) only sees positions and sends back λ_t ← λ_t − ρ·q̄_t. Only positions and prices are exchanged, never
DER data. It stops when the worst interval's imbalance (primal residual) and the largest move of any MG
(dual residual) are both within `tolerance_kwh`, or at `max_iterations` (`converged` false).

The proximal square is piecewise linear (daymodel.py: HiGHS refuses mixed-integer QPs and its QP solver
cycled on these models), so every iteration is a warm LP. Genset MGs: the first response (at the starting
prices, no proximal term) is a MILP that decides on/off; later iterations keep it fixed, and every
`recommit_every` iterations and at convergence each genset MG re-decides it with a MILP that includes its
proximal term (at most `recommits` times). The allocation is therefore the optimum of the day with the
commitments last chosen, not of the MILP; each MG's delivered schedule is re-solved as a MILP with its trades
fixed (forward.py).

Owner rules that bind in a uniform-price setting: never more than the maximum quantity per interval (a bound
throughout); never sell below the floor, never buy above the cap at λ_t — judged when ADMM has converged, a
side found on the wrong side of its rule is banned for good in that interval and ADMM goes on (bans only
grow); a clean-only buyer takes no day-ahead position on the buy side (the stage does not know whose energy
is clean) and the clean premium is not part of it: both are left to intraday trading.
Deterministic (HiGHS single-threaded, fixed seed, MGs in scenario order). Never reads clocks or I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from peergrid_controller.builder import p2p_buy_limit, p2p_sell_limit
from peergrid_controller.daymodel import DayModel
from peergrid_controller.market import micro_per_wh, price_tick
from peergrid_controller.model import Microgrid, Scenario


class DayAheadError(ValueError):
    """Input the day-ahead stage cannot work with (names the field)."""


@dataclass(frozen=True)
class DayAheadConfig:
    rho: float = 0.005  # currency per kWh²: proximal weight, and the price step per kWh of mean imbalance
    max_iterations: int = 400
    tolerance_kwh: float = 0.01  # primal (worst interval's imbalance) and dual (largest move) residual
    # residual balancing (Boyd §3.4.1): ρ doubles when the imbalance dominates, halves when the moves do
    adapt_every: int = 10
    rho_max: float = 0.5
    recommit_every: int = 50  # also re-decide every this many iterations before converging (0: only then)
    recommits: int = 8  # times genset on/off may be re-decided at the prices found (a MILP per genset MG)
    resolution_kwh: float = 0.01  # the proximal square is exact at ±resolution·2^j (schedule.proximal)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rho) and self.rho > 0):
            raise DayAheadError(f"rho must be finite and > 0, got {self.rho}")
        if not (math.isfinite(self.rho_max) and self.rho_max >= self.rho):
            raise DayAheadError(f"rho_max must be finite and >= rho, got {self.rho_max}")
        if self.max_iterations < 1:
            raise DayAheadError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if not (math.isfinite(self.tolerance_kwh) and self.tolerance_kwh > 0):
            raise DayAheadError(f"tolerance_kwh must be finite and > 0, got {self.tolerance_kwh}")
        if not (math.isfinite(self.resolution_kwh) and self.resolution_kwh > 0):
            raise DayAheadError(f"resolution_kwh must be finite and > 0, got {self.resolution_kwh}")
        if self.recommit_every < 0 or self.recommits < 0:
            raise DayAheadError("recommit_every and recommits must be >= 0")
        if self.adapt_every < 0:
            raise DayAheadError(f"adapt_every must be >= 0, got {self.adapt_every}")


@dataclass(frozen=True)
class Allocation:
    prices: tuple[float, ...]  # λ_t, currency per kWh
    positions: dict[str, tuple[float, ...]]  # kWh net export per interval (+ sell), as ADMM left them
    iterations: int
    primal_residual: float  # kWh: worst interval's |Σ_i q_i,t|
    dual_residual: float  # kWh: largest |Δq_i,t − Δq̄_t| of the last iteration
    converged: bool
    solves: int  # MG solves in all (one per MG per iteration, plus the first responses and re-commitments)
    recommits: int  # times genset on/off was re-decided at the prices found


def limits_kw(mg: Microgrid, t: int, price: float, dt: float) -> tuple[float, float]:
    """The net export range (kW) MG `mg` may take in interval t at `price` under its owner's rules (a NaN
    price: its physical limits, maximum quantity and clean-only rule alone, floor and cap not judged)."""
    rules = mg.rules
    quantity = rules.max_quantity_kwh / dt
    judged = not math.isnan(price)
    may_sell = not judged or micro_per_wh(price) >= micro_per_wh(rules.floor_price)
    hi = min(p2p_sell_limit(mg, t), quantity) if may_sell else 0.0
    may_buy = not rules.clean_only and (
        not judged or math.isinf(rules.cap_price) or micro_per_wh(price) <= micro_per_wh(rules.cap_price)
    )
    lo = -min(p2p_buy_limit(mg, t), quantity) if may_buy else 0.0
    return lo, hi


def _check_prices(scenario: Scenario, prices: Sequence[float]) -> None:
    if len(prices) != scenario.intervals:
        raise DayAheadError(f"{len(prices)} starting prices for {scenario.intervals} intervals")
    bad = [t for t, p in enumerate(prices) if not math.isfinite(p)]
    if bad:
        raise DayAheadError(f"starting price of interval {bad[0]} is not finite ({prices[bad[0]]})")


def starting_prices(scenario: Scenario) -> tuple[float, ...]:
    """Midway between the lowest feed-in and the highest retail price of each interval."""
    mgs = scenario.microgrids
    return tuple(
        (min(mg.tariff.feed_in[t] for mg in mgs) + max(mg.tariff.retail[t] for mg in mgs)) / 2
        for t in range(scenario.intervals)
    )


def allocate(
    scenario: Scenario, config: DayAheadConfig | None = None, initial_prices: Sequence[float] | None = None
) -> Allocation:
    cfg = config or DayAheadConfig()
    if len(scenario.microgrids) < 2:
        raise DayAheadError("the day-ahead stage needs at least two microgrids")
    lengths = {mg.intervals for mg in scenario.microgrids}
    if len(lengths) != 1:
        raise DayAheadError(f"microgrids have different numbers of intervals: {sorted(lengths)}")
    n, dt = scenario.intervals, scenario.interval_hours
    prices = list(initial_prices) if initial_prices is not None else list(starting_prices(scenario))
    _check_prices(scenario, prices)
    mgs = scenario.microgrids
    count = len(mgs)
    models = [DayModel(mg, dt) for mg in mgs]

    # the owner's floor and cap switch a side on or off as λ_t crosses them; re-judged every iteration they
    # made positions jump back and forth for ever (measured: no convergence in 400 iterations at 20 MGs with
    # rules). So a side is banned for good, interval by interval, once ADMM has converged with that MG on a
    # side its rules forbid at the price found, and ADMM goes on without it: bans only grow, so this ends.
    banned_sell: set[tuple[int, int]] = set()
    banned_buy: set[tuple[int, int]] = set()
    base = [[limits_kw(mg, t, math.nan, dt) for t in range(n)] for mg in mgs]

    def bounds(i: int) -> tuple[list[float], list[float]]:
        lo = [0.0 if (i, t) in banned_buy else base[i][t][0] for t in range(n)]
        hi = [0.0 if (i, t) in banned_sell else base[i][t][1] for t in range(n)]
        return lo, hi

    def ban() -> bool:
        before = len(banned_sell) + len(banned_buy)
        for i, mg in enumerate(mgs):
            for t in range(n):
                lo, hi = limits_kw(mg, t, price_tick(prices[t]), dt)
                if q[i][t] > cfg.resolution_kwh and hi <= 0.0:
                    banned_sell.add((i, t))
                if q[i][t] < -cfg.resolution_kwh and lo >= 0.0:
                    banned_buy.add((i, t))
        return len(banned_sell) + len(banned_buy) > before

    iterations = 0
    # x^0: each MG's own best response at the starting prices (a MILP: it decides genset on/off)
    q: list[tuple[float, ...]] = []
    for i, model in enumerate(models):
        model.trade(prices, *bounds(i))
        q.append(model.solve())
    solves = count
    mean = [sum(qi[t] for qi in q) / count for t in range(n)]
    rho = cfg.rho
    primal = dual = math.inf
    converged = False
    recommits = 0
    while iterations < cfg.max_iterations:
        iterations += 1
        new_q = []
        for i, model in enumerate(models):
            model.trade(prices, *bounds(i))
            model.proximal(prices, rho, [q[i][t] - mean[t] for t in range(n)], cfg.resolution_kwh)
            new_q.append(model.solve())
        solves += count
        new_mean = [sum(qi[t] for qi in new_q) / count for t in range(n)]
        primal = max(abs(m) * count for m in new_mean)
        dual = max(
            abs((a[t] - b[t]) - (new_mean[t] - mean[t]))
            for a, b in zip(new_q, q, strict=True)
            for t in range(n)
        )
        q, mean = new_q, new_mean
        prices = [p - rho * m for p, m in zip(prices, mean, strict=True)]
        converged = primal <= cfg.tolerance_kwh and dual <= cfg.tolerance_kwh
        if converged and ban():
            converged = False
            continue
        due = bool(cfg.recommit_every) and iterations % cfg.recommit_every == 0
        if converged and recommits >= cfg.recommits:
            break
        if (converged or due) and recommits < cfg.recommits:
            # genset on/off was decided at the starting prices: re-decide it at the prices found, each genset
            # MG alone with its proximal term (a MILP: the nearest on/off plan that pays at these prices, not
            # an arbitrary corner of an indifferent one); go on if any commitment changed
            recommits += 1
            changed = False
            for i, mg in enumerate(mgs):
                if not mg.gensets:
                    continue
                fresh = DayModel(mg, dt)
                fresh.trade(prices, *bounds(i))
                anchor = [q[i][t] - mean[t] for t in range(n)]
                fresh.proximal(prices, cfg.rho / 4, anchor, cfg.resolution_kwh, recommit=True)
                fresh.solve()
                solves += 1
                if fresh.commitment() != models[i].commitment():
                    models[i] = fresh
                    changed = True
            if converged and not changed:
                break
            converged = False
            continue
        if cfg.adapt_every and iterations % cfg.adapt_every == 0:
            if primal > 10 * dual:
                rho = min(rho * 2, cfg.rho_max)
            elif dual > 10 * primal:
                rho = max(rho / 2, cfg.rho)
    return Allocation(
        prices=tuple(round(p, 9) for p in prices),
        positions={mg.name: tuple(round(v, 9) for v in qi) for mg, qi in zip(mgs, q, strict=True)},
        iterations=iterations,
        primal_residual=primal,
        dual_residual=dual,
        converged=converged,
        solves=solves,
        recommits=recommits,
    )
