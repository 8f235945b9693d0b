"""Columns and rows of one microgrid in a (MI)LP: shared by the MG's own schedule and the central optimum.

Promises: `add_microgrid` adds the MG's variables and constraints for intervals [start, start + horizon) to a
`LinearProgram` and returns the column indices; every cost term is linear (genset fuel is a convex piecewise-
linear curve, on/off, start/stop and min up/down are binaries). P2P columns carry no cost here: the caller prices
them (own schedule) or balances them across MGs (central optimum).
Assumes a validated Microgrid. Never solves anything itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from peergrid_controller.lp import INF, LinearProgram
from peergrid_controller.model import Microgrid


@dataclass(frozen=True)
class MgState:
    """What the horizon starts from: stored energy and the genset's commitment history."""

    soc_kwh: tuple[float, ...]  # per battery
    genset_on: tuple[bool, ...]
    genset_kw: tuple[float, ...]
    genset_intervals_in_state: tuple[int, ...]

    @classmethod
    def initial(cls, mg: Microgrid) -> MgState:
        return cls(
            soc_kwh=tuple(b.soc_initial * b.capacity_kwh for b in mg.batteries),
            genset_on=tuple(g.initially_on for g in mg.gensets),
            genset_kw=tuple(g.initial_kw if g.initially_on else 0.0 for g in mg.gensets),
            genset_intervals_in_state=tuple(g.intervals_in_state for g in mg.gensets),
        )


@dataclass
class MgColumns:
    pv_used: list[int] = field(default_factory=list)
    shed: list[int] = field(default_factory=list)
    dso_import: list[int] = field(default_factory=list)
    dso_export: list[int] = field(default_factory=list)
    p2p_sell: list[int] = field(default_factory=list)
    p2p_buy: list[int] = field(default_factory=list)
    charge: list[list[int]] = field(default_factory=list)  # [battery][k]
    discharge: list[list[int]] = field(default_factory=list)
    soc: list[list[int]] = field(default_factory=list)
    genset_kw: list[list[int]] = field(default_factory=list)
    genset_on: list[list[int]] = field(default_factory=list)
    balance_rows: list[int] = field(default_factory=list)
    costs: dict[str, list[tuple[int, float, int]]] = field(default_factory=dict)  # part: (col, coef, k)

    def priced(self, lp: LinearProgram, part: str, col: int, coef: float, k: int) -> None:
        """A cost term of interval k of the horizon (k = -1: the horizon's end, e.g. terminal energy)."""
        lp.cost[col] += coef
        self.costs.setdefault(part, []).append((col, coef, k))

    def cost_parts(self, x: tuple[float, ...] | list[float], k: int | None = None) -> dict[str, float]:
        """Cost by part over the horizon, or of interval k only (k = -1: the end-of-horizon terms)."""
        return {
            part: sum(coef * x[col] for col, coef, kk in terms if k is None or kk == k)
            for part, terms in sorted(self.costs.items())
        }


def p2p_sell_limit(mg: Microgrid, t: int) -> float:
    """The most the MG could physically export in interval t (kW): no P2P column is ever unbounded."""
    supply = sum(pv.available_kw[t] for pv in mg.pv) + sum(b.max_discharge_kw for b in mg.batteries)
    return supply + sum(g.max_kw for g in mg.gensets)


def p2p_buy_limit(mg: Microgrid, t: int) -> float:
    demand = sum(load.critical_kw[t] + load.sheddable_kw[t] for load in mg.loads)
    return demand + sum(b.max_charge_kw for b in mg.batteries)


def add_microgrid(
    lp: LinearProgram,
    mg: Microgrid,
    dt: float,
    start: int,
    horizon: int,
    state: MgState,
    p2p: bool,
) -> MgColumns:
    cols = MgColumns()
    ks = range(horizon)
    ts = [start + k for k in ks]
    tariff = mg.tariff
    for t in ts:
        cols.pv_used.append(lp.var(0.0, sum(pv.available_kw[t] for pv in mg.pv)))
        shed = lp.var(0.0, sum(load.sheddable_kw[t] for load in mg.loads))
        cols.shed.append(shed)
        voll = max((load.voll for load in mg.loads), default=0.0)
        cols.priced(lp, "shed", shed, voll * dt, t - start)
        imp = lp.var(0.0, tariff.max_import_kw)
        exp = lp.var(0.0, tariff.max_export_kw)
        cols.dso_import.append(imp)
        cols.dso_export.append(exp)
        cols.priced(lp, "dso_import", imp, tariff.retail[t] * dt, t - start)
        cols.priced(lp, "dso_export", exp, -tariff.feed_in[t] * dt, t - start)
        cols.p2p_sell.append(lp.var(0.0, p2p_sell_limit(mg, t) if p2p else 0.0))
        cols.p2p_buy.append(lp.var(0.0, p2p_buy_limit(mg, t) if p2p else 0.0))

    mean_retail = sum(tariff.retail) / len(tariff.retail)  # the day's, so every horizon values it alike
    for b_index, b in enumerate(mg.batteries):
        lo, hi = b.soc_min * b.capacity_kwh, b.soc_max * b.capacity_kwh
        ch = [lp.var(0.0, b.max_charge_kw) for _ in ks]
        dis = [lp.var(0.0, b.max_discharge_kw) for _ in ks]
        soc = [lp.var(lo, hi) for _ in ks]
        for k in ks:
            cols.priced(lp, "battery_wear", dis[k], b.wear_cost * dt, k)
            prev = state.soc_kwh[b_index] if k == 0 else None
            row = [(soc[k], 1.0), (ch[k], -b.efficiency_charge * dt), (dis[k], dt / b.efficiency_discharge)]
            if prev is None:
                row.append((soc[k - 1], -1.0))
                lp.eq(row, 0.0)
            else:
                lp.eq(row, prev)
        # energy left at the end should be what the day started with; a shortfall is bought at mean retail
        short = lp.var(0.0, INF)
        cols.priced(lp, "terminal_energy", short, mean_retail / b.efficiency_discharge, -1)
        lp.row([(soc[-1], 1.0), (short, 1.0)], b.soc_initial * b.capacity_kwh, INF)
        cols.charge.append(ch)
        cols.discharge.append(dis)
        cols.soc.append(soc)

    for g_index in range(len(mg.gensets)):
        _add_genset(lp, cols, g_index, mg, dt, horizon, state)

    for k, t in enumerate(ts):
        demand = sum(load.critical_kw[t] + load.sheddable_kw[t] for load in mg.loads)
        row = [
            (cols.pv_used[k], 1.0),
            (cols.shed[k], 1.0),
            (cols.dso_import[k], 1.0),
            (cols.dso_export[k], -1.0),
            (cols.p2p_buy[k], 1.0),
            (cols.p2p_sell[k], -1.0),
        ]
        for b_index in range(len(mg.batteries)):
            row += [(cols.discharge[b_index][k], 1.0), (cols.charge[b_index][k], -1.0)]
        for g_kw in cols.genset_kw:
            row.append((g_kw[k], 1.0))
        cols.balance_rows.append(lp.eq(row, demand))
    return cols


def _add_genset(
    lp: LinearProgram, cols: MgColumns, g_index: int, mg: Microgrid, dt: float, horizon: int, state: MgState
) -> None:
    g = mg.gensets[g_index]
    ks = range(horizon)
    was_on = state.genset_on[g_index]
    in_state = state.genset_intervals_in_state[g_index]
    # min up/down still owed from before the horizon
    must_on = max(0, g.min_up_intervals - in_state) if was_on else 0
    must_off = 0 if was_on else max(0, g.min_down_intervals - in_state)
    u, v, w, out = [], [], [], []
    for k in ks:
        lo = 1.0 if k < must_on else 0.0
        hi = 0.0 if k < must_off else 1.0
        u.append(lp.var(lo, hi, integer=True))
        v.append(lp.var(0.0, 1.0, integer=True))
        w.append(lp.var(0.0, 1.0, integer=True))
        out.append(lp.var(0.0, g.max_kw))
    for k in ks:
        cols.priced(lp, "genset_fuel", u[k], g.min_kw_cost_per_h * dt, k)
        cols.priced(lp, "genset_startup", v[k], g.startup_cost, k)
        segment_row = [(out[k], 1.0), (u[k], -g.min_kw)]
        for seg in g.segments:
            s = lp.var(0.0, seg.width_kw)
            cols.priced(lp, "genset_fuel", s, seg.cost_per_kwh * dt, k)
            lp.le([(s, 1.0), (u[k], -seg.width_kw)], 0.0)
            segment_row.append((s, -1.0))
        lp.eq(segment_row, 0.0)  # out = min_kw * u + sum(segments)
        # u[k] - u[k-1] = v[k] - w[k]
        if k == 0:
            lp.eq([(u[0], 1.0), (v[0], -1.0), (w[0], 1.0)], 1.0 if was_on else 0.0)
        else:
            lp.eq([(u[k], 1.0), (u[k - 1], -1.0), (v[k], -1.0), (w[k], 1.0)], 0.0)
        up = [(v[j], 1.0) for j in range(max(0, k - g.min_up_intervals + 1), k + 1)]
        lp.le([*up, (u[k], -1.0)], 0.0)
        down = [(w[j], 1.0) for j in range(max(0, k - g.min_down_intervals + 1), k + 1)]
        lp.le([*down, (u[k], 1.0)], 1.0)
        if not math.isinf(g.ramp_kw_per_interval):
            ramp, jump = g.ramp_kw_per_interval, max(g.min_kw - g.ramp_kw_per_interval, 0.0)
            if k == 0:
                prev_kw = state.genset_kw[g_index]
                lp.le([(out[0], 1.0), (v[0], -jump)], ramp + prev_kw)
                lp.le([(out[0], -1.0), (w[0], -jump)], ramp - prev_kw)
            else:
                lp.le([(out[k], 1.0), (out[k - 1], -1.0), (v[k], -jump)], ramp)
                lp.le([(out[k - 1], 1.0), (out[k], -1.0), (w[k], -jump)], ramp)
    cols.genset_kw.append(out)
    cols.genset_on.append(u)
