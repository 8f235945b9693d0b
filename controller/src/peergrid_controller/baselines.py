"""The two yardsticks every market run is measured against, solved over the same intervals.

Promises: `conventional` gives each MG's cost per interval when it trades only with the DSO (retail to buy,
feed-in to sell), from its own day MILP; `central` gives the social-welfare optimum: one MILP over all MGs whose
P2P exports and imports balance in every interval (energy moves among MGs at no charge), with the same DER models.
Costs exclude P2P payments (they cancel in the sum). Raises ScheduleError naming the cause when no plan exists.
The central optimum ignores the owners' contract rules (floors, caps, clean-only): it is the network's bound.
Never reads clocks or I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy

from peergrid_controller import lp as lpmod
from peergrid_controller.builder import MgColumns, MgState, add_microgrid
from peergrid_controller.model import Scenario, validate_microgrid
from peergrid_controller.schedule import MgSchedule, ScheduleError, check_feasible


@dataclass(frozen=True)
class BaselineCosts:
    per_interval: dict[
        str, tuple[float, ...]
    ]  # MG -> physical cost per interval (terminal charge in the last)
    p2p_net_export_kwh: dict[str, tuple[float, ...]]
    mip_gap: float = 0.0
    # central only: the P2P balance's shadow price per interval (currency/kWh; the LP with the MILP's genset
    # on/off fixed): the price at which every MG's own optimum is consistent with the central plan
    prices: tuple[float, ...] = ()

    def total(self) -> float:
        return sum(sum(v) for v in self.per_interval.values())

    def interval_total(self, t: int) -> float:
        return sum(v[t] for v in self.per_interval.values())


def interval_costs(cols: MgColumns, x: tuple[float, ...], n: int) -> tuple[float, ...]:
    """Physical cost of a day's solution in each of its first `n` intervals (the day's terminal charge in the
    last of them). `n` 0 is an empty day — what `forward_accept.dispatch` is asked with no interval traded
    (a session that cleared nothing: its `net_wh` is empty) — and has no interval to carry a cost: ()."""
    if n < 0:
        raise ValueError(f"interval_costs: {n} intervals")
    if n == 0:
        return ()
    costs = [sum(cols.cost_parts(x, k).values()) for k in range(n)]
    costs[-1] += sum(cols.cost_parts(x, -1).values())
    return tuple(costs)


def conventional(scenario: Scenario) -> BaselineCosts:
    per: dict[str, tuple[float, ...]] = {}
    net: dict[str, tuple[float, ...]] = {}
    for mg in scenario.microgrids:
        sched = MgSchedule(mg, scenario.interval_hours)
        sched.solve()
        per[mg.name] = interval_costs(sched.cols, sched.last_solution().x, mg.intervals)
        net[mg.name] = tuple(0.0 for _ in range(mg.intervals))
    return BaselineCosts(per, net)


def central(scenario: Scenario, time_limit_s: float = 120.0) -> BaselineCosts:
    n = scenario.intervals
    lp = lpmod.LinearProgram(f"central optimum of {scenario.name}")
    cols: dict[str, MgColumns] = {}
    for mg in scenario.microgrids:
        validate_microgrid(mg)
        state = MgState.initial(mg)
        check_feasible(mg, 0, n, state)
        cols[mg.name] = add_microgrid(lp, mg, scenario.interval_hours, 0, n, state, p2p=True)
    balance = []
    for k in range(n):
        row: list[tuple[int, float]] = []
        for c in cols.values():
            row += [(c.p2p_sell[k], 1.0), (c.p2p_buy[k], -1.0)]
        balance.append(lp.eq(row, 0.0))
    h = lp.to_highs()
    h.setOptionValue("time_limit", time_limit_s)
    h.setOptionValue("mip_rel_gap", 1e-5)
    try:
        sol = lpmod.run(h, lp.name, accept_incumbent=True)
    except lpmod.SolveError as exc:
        raise ScheduleError(exc.cause, str(exc)) from None
    dt = scenario.interval_hours
    return BaselineCosts(
        {name: interval_costs(c, sol.x, n) for name, c in cols.items()},
        {
            name: tuple((sol.x[c.p2p_sell[k]] - sol.x[c.p2p_buy[k]]) * dt for k in range(n))
            for name, c in cols.items()
        },
        sol.mip_gap,
        _shadow_prices(h, lp.integer, sol.x, balance, lp.name, dt),
    )


def _shadow_prices(
    h: highspy.Highs, integer: list[int], x: tuple[float, ...], rows: list[int], name: str, dt: float
) -> tuple[float, ...]:
    """Duals of the balance rows with every integer fixed at the MILP's value (the re-solve is an LP)."""
    for i in integer:
        h.changeColIntegrality(i, highspy.HighsVarType.kContinuous)
        h.changeColBounds(i, round(x[i]), round(x[i]))
    try:
        sol = lpmod.run(h, name)
    except lpmod.SolveError:
        return ()
    if not sol.row_duals:
        return ()
    return tuple(round(sol.row_duals[r] / dt, 6) for r in rows)
