"""MGMC scheduling: the DER plan that maximises one microgrid's payoff over a horizon (a MILP for HiGHS).

Promises: `MgSchedule.solve()` returns a `Plan` (per-interval dispatch, cost, the P2P net export) or raises
`ScheduleError` naming the cause — an interval whose critical load cannot be served, prices that make the payoff
unbounded — never a silent zero schedule. Payoff = -cost; cost = DSO imports at retail - exports at feed-in +
genset fuel and start-ups + shed load at VoLL + battery wear + a terminal-energy shortfall charge + P2P payments.
After one MILP solve, `price_response` re-solves the LP with the genset commitment fixed (warm start) to trace
how much the MG would sell (or buy) peer-to-peer in the first interval at a given price.
Assumes a validated `Microgrid` (model.validate_microgrid). Never touches devices, sockets or clocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from peergrid_controller import lp as lpmod
from peergrid_controller.builder import MgColumns, MgState, add_microgrid, p2p_buy_limit, p2p_sell_limit
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.market import PRICE_TICK
from peergrid_controller.model import Microgrid, validate_microgrid

__all__ = ["PEER_SPREAD", "MgSchedule", "MgState", "Plan", "ScheduleError", "check_feasible"]

PEER_SPREAD = PRICE_TICK / 2
"""A plan values a later sale to a peer at the forecast price less this and a later purchase at it plus this
(a half tick), so that buying and reselling is never free; `forecast.settled_edge` puts those values on ticks."""


class ScheduleError(RuntimeError):
    """No schedule exists or the payoff is unbounded; `cause` is 'infeasible', 'unbounded' or 'solver'."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Plan:
    cost: float  # objective over the horizon, P2P payments included
    p2p_net_export: tuple[float, ...]  # kW per interval (+ sells to peers, - buys from peers)
    dso_net_export: tuple[float, ...]
    genset_kw: tuple[float, ...]
    genset_on: tuple[bool, ...]
    battery_soc_kwh: tuple[float, ...]  # end of each interval, summed over batteries
    battery_kw: tuple[float, ...]  # + discharge, - charge, summed
    shed_kw: tuple[float, ...]
    pv_used_kw: tuple[float, ...]
    cost_parts: dict[str, float]


def check_feasible(mg: Microgrid, start: int, horizon: int, state: MgState) -> None:
    """Name the first interval whose critical load exceeds everything that could ever supply it."""
    dt_import = mg.tariff.max_import_kw
    for t in range(start, start + horizon):
        critical = sum(load.critical_kw[t] for load in mg.loads)
        supply = dt_import + sum(pv.available_kw[t] for pv in mg.pv)
        supply += sum(b.max_discharge_kw for b in mg.batteries) + sum(g.max_kw for g in mg.gensets)
        if critical > supply + 1e-9:
            raise ScheduleError(
                "infeasible",
                f"{mg.name}: critical load {critical:.1f} kW at interval {t} exceeds the most that PV, batteries, "
                f"gensets and the DSO import limit ({dt_import:g} kW) can supply ({supply:.1f} kW)",
            )
    for t in range(start, start + horizon):
        arbitrage = mg.tariff.feed_in[t] > mg.tariff.retail[t]
        if arbitrage and math.isinf(mg.tariff.max_import_kw) and math.isinf(mg.tariff.max_export_kw):
            raise ScheduleError(
                "unbounded",
                f"{mg.name}: feed-in price {mg.tariff.feed_in[t]} exceeds retail {mg.tariff.retail[t]} at "
                f"interval {t} with no import/export limit: buying to resell pays without end",
            )


class MgSchedule:
    """One MG's schedule model over intervals [start, start + horizon), built once and re-solved warm."""

    def __init__(
        self,
        mg: Microgrid,
        interval_hours: float,
        start: int = 0,
        horizon: int | None = None,
        state: MgState | None = None,
        p2p_fixed: Sequence[float] | None = None,
        commitment: Sequence[Sequence[bool]] | None = None,
        p2p_prices: Sequence[float] | None = None,
        day_ahead: bool = False,
    ) -> None:
        """`commitment`: genset on/off per genset and interval, fixed (an LP; re-commit with `None`, a MILP).
        `p2p_prices`: expected P2P prices for the horizon; intervals after the first may then trade with
        peers at that price (a forecast the plan leans on; only the first interval's trade is ever binding).
        `day_ahead`: the first interval trades at its `p2p_prices` too, and genset on/off is relaxed (an LP):
        the cheap response used for day-ahead price discovery (forecast.py)."""
        validate_microgrid(mg)
        horizon = mg.intervals - start if horizon is None else horizon
        if horizon <= 0 or start < 0 or start + horizon > mg.intervals:
            raise ScheduleError(
                "infeasible", f"{mg.name}: horizon [{start}, {start + horizon}) outside the profiles"
            )
        self.mg = mg
        self.dt = interval_hours
        self.start = start
        self.horizon = horizon
        self.state = state or MgState.initial(mg)
        check_feasible(mg, start, horizon, self.state)
        self.lp = lpmod.LinearProgram(f"schedule {mg.name}")
        self.cols: MgColumns = add_microgrid(
            self.lp, mg, interval_hours, start, horizon, self.state, p2p=True
        )
        # P2P is closed unless opened: fixed trades (already agreed), a price for the first interval, or a
        # forecast price for the later ones (a half-tick spread keeps buy-and-resell from being free)
        for k in range(horizon):
            fixed = p2p_fixed[k] if p2p_fixed is not None and k < len(p2p_fixed) else 0.0
            if p2p_prices is not None and (k > 0 or day_ahead) and p2p_fixed is None:
                sell, buy = self.cols.p2p_sell[k], self.cols.p2p_buy[k]
                self.lp.cost[sell] = -(p2p_prices[k] - PEER_SPREAD) * interval_hours
                self.lp.cost[buy] = (p2p_prices[k] + PEER_SPREAD) * interval_hours
            else:
                self._fix_p2p(k, fixed)
        self._highs: highspy.Highs | None = None
        self._injection_row: int | None = None
        self._fixed_commitment = False
        if day_ahead:
            self.lp.integer.clear()
        if commitment is not None:
            for g_index, on in enumerate(self.cols.genset_on):
                for k, col in enumerate(on):
                    value = 1.0 if commitment[g_index][k] else 0.0
                    self.lp.col_lo[col] = self.lp.col_hi[col] = value
            self.lp.integer.clear()  # start/stop follow from the fixed on/off: the LP keeps them at 0 or 1
            self._fixed_commitment = True

    def _fix_p2p(self, k: int, net_export: float) -> None:
        sell, buy = self.cols.p2p_sell[k], self.cols.p2p_buy[k]
        self.lp.col_lo[sell] = self.lp.col_hi[sell] = max(net_export, 0.0)
        self.lp.col_lo[buy] = self.lp.col_hi[buy] = max(-net_export, 0.0)

    def _solve(self) -> lpmod.Solution:
        if self._highs is None:
            self._highs = self.lp.to_highs()
        try:
            return lpmod.run(self._highs, self.lp.name)
        except lpmod.SolveError as exc:
            if exc.cause != "solver":
                raise ScheduleError(exc.cause, str(exc)) from None
        # a warm re-solve after many bound and cost changes once ended in status Unknown (day-ahead ADMM
        # with owner rules): the same model solved from scratch is the answer, or the error stands
        self._highs.clearSolver()
        try:
            return lpmod.run(self._highs, self.lp.name)
        except lpmod.SolveError as exc:
            raise ScheduleError(exc.cause, str(exc)) from None

    def solve(self) -> Plan:
        """The MILP: commitment and dispatch together."""
        sol = self._solve()
        self._last = sol
        return self._plan(sol)

    def last_solution(self) -> lpmod.Solution:
        """The last `solve`'s raw solution (column values by index)."""
        return self._last

    def commitment(self) -> tuple[tuple[bool, ...], ...]:
        """Genset on/off per genset over the horizon, from the last solve."""
        x = self._last.x
        return tuple(tuple(x[col] > 0.5 for col in on) for on in self.cols.genset_on)

    def fix_commitment(self) -> None:
        """Freeze genset on/off at the last MILP solution, so later re-solves are warm LPs."""
        if self._highs is None or self._fixed_commitment:
            return
        x = self._last.x
        h = self._highs
        for i in self.lp.integer:
            value = float(round(x[i]))
            h.changeColIntegrality(i, highspy.HighsVarType.kContinuous)
            h.changeColBounds(i, value, value)
        self._fixed_commitment = True

    def price_response(self, price: float, limit_kw: float = lpmod.INF) -> float:
        """kW the MG would sell (>0) or buy (<0) peer-to-peer in the first interval at `price`."""
        self.fix_commitment()
        assert self._highs is not None
        h = self._highs
        sell, buy = self.cols.p2p_sell[0], self.cols.p2p_buy[0]
        # one free column carries the net trade: a sell column and a buy column at the same price would
        # leave HiGHS a zero-cost ray (buy and resell without end) that it may report as unbounded
        t = self.start
        h.changeColBounds(
            sell, -min(limit_kw, p2p_buy_limit(self.mg, t)), min(limit_kw, p2p_sell_limit(self.mg, t))
        )
        h.changeColBounds(buy, 0.0, 0.0)
        h.changeColCost(sell, -price * self.dt)
        sol = self._solve()
        return sol.x[sell] - sol.x[buy]

    def cost_at(self, price: float, limit_kw: float = lpmod.INF) -> float:
        """The plan's cost over the horizon when the first interval trades P2P freely at `price`."""
        self.price_response(price, limit_kw)
        assert self._highs is not None
        return float(self._highs.getInfo().objective_function_value)

    def response_curve(
        self, lo: float, hi: float, limit_kw: float = lpmod.INF, max_steps: int = 40
    ) -> ResponseCurve:
        """The first interval's net P2P export (kWh) as a step function of price on [lo, hi].

        Walks the breakpoints exactly with HiGHS cost ranging: one warm LP re-solve per step of the curve.
        """
        assert lo <= hi
        prices: list[float] = []
        quantities: list[float] = []
        price = lo
        sell = self.cols.p2p_sell[0]
        while len(prices) < max_steps:
            q = round(self.price_response(price, limit_kw) * self.dt, 6)
            if not quantities or q > quantities[-1] + 1e-6:
                prices.append(round(price, 6))
                quantities.append(max(q, quantities[-1]) if quantities else q)
            assert self._highs is not None
            status, ranging = self._highs.getRanging()
            if status != highspy.HighsStatus.kOk or not ranging.valid:
                step_to = price + 0.001  # no ranging (degenerate basis): sample instead
            else:
                lowest_cost = ranging.col_cost_dn.value_[sell]
                step_to = -lowest_cost / self.dt if math.isfinite(lowest_cost) else math.inf
            price = max(step_to + 1e-6, price + 1e-4)
            if price > hi:
                break
        return ResponseCurve(tuple(prices), tuple(quantities), upper=hi)

    def highs(self) -> highspy.Highs:
        """The solver holding this model, created on first use (the day-ahead stage, daymodel.py, changes its
        bounds, costs and rows between solves)."""
        if self._highs is None:
            self._highs = self.lp.to_highs()
        return self._highs

    def net_export_kwh(self) -> tuple[float, ...]:
        """The last solve's net P2P export per interval, kWh."""
        x = self._last.x
        c = self.cols
        return tuple((x[c.p2p_sell[k]] - x[c.p2p_buy[k]]) * self.dt for k in range(self.horizon))

    def bound_injection(self, min_kw: float = -lpmod.INF, max_kw: float = lpmod.INF) -> None:
        """Hold the first interval's equivalent injection (P2P plus DSO net export, kW) within [min, max]
        in every later solve (a DSO adjustment contract)."""
        self.fix_commitment()
        assert self._highs is not None
        if self._injection_row is None:
            c = self.cols
            cols = [c.p2p_sell[0], c.p2p_buy[0], c.dso_export[0], c.dso_import[0]]
            self._highs.addRow(min_kw, max_kw, 4, np.array(cols, np.int32), np.array([1.0, -1.0, 1.0, -1.0]))
            self._injection_row = self._highs.getNumRow() - 1
        else:
            self._highs.changeRowBounds(self._injection_row, min_kw, max_kw)

    def dispatch(self, p2p_net_export_kw: float) -> Plan:
        """Re-plan with the first interval's agreed P2P trade fixed (payments are settled apart)."""
        self.fix_commitment()
        assert self._highs is not None
        sell, buy = self.cols.p2p_sell[0], self.cols.p2p_buy[0]
        self._highs.changeColBounds(sell, p2p_net_export_kw, p2p_net_export_kw)
        self._highs.changeColBounds(buy, 0.0, 0.0)
        self._highs.changeColCost(sell, 0.0)
        sol = self._solve()
        self._last_dispatch = sol
        return self._plan(sol)

    def last_dispatch_cost(self) -> float:
        """The last `dispatch`'s cost over the horizon (its P2P payments excluded: they are settled apart)."""
        return float(self._last_dispatch.objective)

    def first_interval_cost_and_state(self) -> tuple[float, MgState]:
        """The physical cost of the plan's first interval (with the day's terminal charge if it is the last)
        and the state the next interval starts from."""
        x = self._last_dispatch.x
        parts = self.cols.cost_parts(x, 0)
        cost = sum(parts.values())
        if self.start + self.horizon == self.mg.intervals and self.horizon == 1:
            cost += sum(self.cols.cost_parts(x, -1).values())
        c, s = self.cols, self.state
        on = tuple(x[u[0]] > 0.5 for u in c.genset_on)
        state = MgState(
            soc_kwh=tuple(x[soc[0]] for soc in c.soc),
            genset_on=on,
            genset_kw=tuple(x[g[0]] for g in c.genset_kw),
            genset_intervals_in_state=tuple(
                n + 1 if now == was else 1
                for now, was, n in zip(on, s.genset_on, s.genset_intervals_in_state, strict=True)
            ),
        )
        return cost, state

    def _plan(self, sol: lpmod.Solution) -> Plan:
        x, c = sol.x, self.cols
        n = self.horizon

        def total(groups: Sequence[Sequence[int]], k: int) -> float:
            return sum(x[g[k]] for g in groups)

        return Plan(
            cost=sol.objective,
            p2p_net_export=tuple(x[c.p2p_sell[k]] - x[c.p2p_buy[k]] for k in range(n)),
            dso_net_export=tuple(x[c.dso_export[k]] - x[c.dso_import[k]] for k in range(n)),
            genset_kw=tuple(total(c.genset_kw, k) for k in range(n)),
            genset_on=tuple(any(x[u[k]] > 0.5 for u in c.genset_on) for k in range(n)),
            battery_soc_kwh=tuple(total(c.soc, k) for k in range(n)),
            battery_kw=tuple(total(c.discharge, k) - total(c.charge, k) for k in range(n)),
            shed_kw=tuple(x[c.shed[k]] for k in range(n)),
            pv_used_kw=tuple(x[c.pv_used[k]] for k in range(n)),
            cost_parts=self.cols.cost_parts(x),
        )
