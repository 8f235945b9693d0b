"""The MGMC schedule as a Pyomo model solved by HiGHS (`appsi_highs`): the reference formulation.

Promises: `solve_pyomo(mg, interval_hours)` builds the same MILP as `builder.add_microgrid` (PV with curtailment,
batteries with efficiencies and SoC limits and the day's terminal energy, gensets with on/off, start/stop,
min up/down, ramps and a convex piecewise-linear fuel curve, critical and sheddable load at VoLL, DSO exchange at
retail and feed-in) over the whole day with no P2P, and returns its optimal cost. The objective stays linear
(HiGHS refuses MIQPs and `appsi_highs` quadratic objectives). Tests check that both formulations agree; the
benchmark compares their build-and-solve times, which is why the MGMC itself uses the direct highspy model.
Raises ScheduleError naming the cause when no schedule exists. Never reads clocks or I/O.
"""

from __future__ import annotations

import math
from typing import Any

import pyomo.environ as pyo

from peergrid_controller.model import Microgrid, validate_microgrid
from peergrid_controller.schedule import ScheduleError


def build_pyomo(mg: Microgrid, dt: float) -> Any:
    validate_microgrid(mg)
    n = mg.intervals
    m = pyo.ConcreteModel(name=f"schedule {mg.name}")
    K = range(n)
    B = range(len(mg.batteries))
    G = range(len(mg.gensets))
    t = mg.tariff
    pv_avail = [sum(p.available_kw[k] for p in mg.pv) for k in K]
    shed_max = [sum(ld.sheddable_kw[k] for ld in mg.loads) for k in K]
    demand = [sum(ld.critical_kw[k] + ld.sheddable_kw[k] for ld in mg.loads) for k in K]
    voll = max((ld.voll for ld in mg.loads), default=0.0)
    m.pv = pyo.Var(K, bounds=lambda _m, k: (0, pv_avail[k]))
    m.shed = pyo.Var(K, bounds=lambda _m, k: (0, shed_max[k]))
    m.imp = pyo.Var(K, bounds=(0, None if math.isinf(t.max_import_kw) else t.max_import_kw))
    m.exp = pyo.Var(K, bounds=(0, None if math.isinf(t.max_export_kw) else t.max_export_kw))
    m.ch = pyo.Var(B, K, bounds=lambda _m, b, k: (0, mg.batteries[b].max_charge_kw))
    m.dis = pyo.Var(B, K, bounds=lambda _m, b, k: (0, mg.batteries[b].max_discharge_kw))
    m.soc = pyo.Var(
        B,
        K,
        bounds=lambda _m, b, k: (
            mg.batteries[b].soc_min * mg.batteries[b].capacity_kwh,
            mg.batteries[b].soc_max * mg.batteries[b].capacity_kwh,
        ),
    )
    m.short = pyo.Var(B, bounds=(0, None))
    m.u = pyo.Var(G, K, within=pyo.Binary)
    m.v = pyo.Var(G, K, within=pyo.Binary)
    m.w = pyo.Var(G, K, within=pyo.Binary)
    m.gen = pyo.Var(G, K, bounds=lambda _m, g, k: (0, mg.gensets[g].max_kw))
    S = {g: range(len(mg.gensets[g].segments)) for g in G}
    m.seg = pyo.Var([(g, s, k) for g in G for s in S[g] for k in K], bounds=(0, None))
    m.c = pyo.ConstraintList()
    for b in B:
        bat = mg.batteries[b]
        for k in K:
            prev = bat.soc_initial * bat.capacity_kwh if k == 0 else m.soc[b, k - 1]
            m.c.add(
                m.soc[b, k]
                == prev
                + bat.efficiency_charge * dt * m.ch[b, k]
                - dt / bat.efficiency_discharge * m.dis[b, k]
            )
        m.c.add(m.soc[b, n - 1] + m.short[b] >= bat.soc_initial * bat.capacity_kwh)
    for g in G:
        gs = mg.gensets[g]
        for k in K:
            m.c.add(m.gen[g, k] == gs.min_kw * m.u[g, k] + sum(m.seg[g, s, k] for s in S[g]))
            for s in S[g]:
                m.c.add(m.seg[g, s, k] <= gs.segments[s].width_kw * m.u[g, k])
            prev_u = (1 if gs.initially_on else 0) if k == 0 else m.u[g, k - 1]
            m.c.add(m.u[g, k] - prev_u == m.v[g, k] - m.w[g, k])
            m.c.add(sum(m.v[g, j] for j in range(max(0, k - gs.min_up_intervals + 1), k + 1)) <= m.u[g, k])
            m.c.add(
                sum(m.w[g, j] for j in range(max(0, k - gs.min_down_intervals + 1), k + 1)) <= 1 - m.u[g, k]
            )
            if not math.isinf(gs.ramp_kw_per_interval):
                jump = max(gs.min_kw - gs.ramp_kw_per_interval, 0.0)
                prev_g = (gs.initial_kw if gs.initially_on else 0.0) if k == 0 else m.gen[g, k - 1]
                m.c.add(m.gen[g, k] - prev_g <= gs.ramp_kw_per_interval + jump * m.v[g, k])
                m.c.add(prev_g - m.gen[g, k] <= gs.ramp_kw_per_interval + jump * m.w[g, k])
        in_state = gs.intervals_in_state
        owed_on = max(0, gs.min_up_intervals - in_state) if gs.initially_on else 0
        owed_off = 0 if gs.initially_on else max(0, gs.min_down_intervals - in_state)
        for k in range(min(owed_on, n)):
            m.u[g, k].fix(1)
        for k in range(min(owed_off, n)):
            m.u[g, k].fix(0)
    for k in K:
        supply = m.pv[k] + m.shed[k] + m.imp[k] - m.exp[k]
        supply += sum(m.dis[b, k] - m.ch[b, k] for b in B) + sum(m.gen[g, k] for g in G)
        m.c.add(supply == demand[k])
    mean_retail = sum(t.retail) / n
    cost = sum(dt * (t.retail[k] * m.imp[k] - t.feed_in[k] * m.exp[k] + voll * m.shed[k]) for k in K)
    cost += sum(dt * mg.batteries[b].wear_cost * m.dis[b, k] for b in B for k in K)
    cost += sum(mean_retail / mg.batteries[b].efficiency_discharge * m.short[b] for b in B)
    for g in G:
        gs = mg.gensets[g]
        cost += sum(gs.min_kw_cost_per_h * dt * m.u[g, k] + gs.startup_cost * m.v[g, k] for k in K)
        cost += sum(gs.segments[s].cost_per_kwh * dt * m.seg[g, s, k] for s in S[g] for k in K)
    m.cost = pyo.Objective(expr=cost, sense=pyo.minimize)
    return m


def solve_pyomo(mg: Microgrid, dt: float) -> float:
    model = build_pyomo(mg, dt)
    solver = pyo.SolverFactory("appsi_highs")
    solver.options["mip_rel_gap"] = 1e-6
    solver.options["threads"] = 1
    results = solver.solve(model, load_solutions=False)
    condition = results.solver.termination_condition
    if condition == pyo.TerminationCondition.optimal:
        model.solutions.load_from(results)
        return float(pyo.value(model.cost))
    if condition == pyo.TerminationCondition.infeasible:
        raise ScheduleError("infeasible", f"{mg.name}: no schedule satisfies every constraint (infeasible)")
    if condition == pyo.TerminationCondition.unbounded:
        raise ScheduleError("unbounded", f"{mg.name}: payoff is unbounded")
    raise ScheduleError("solver", f"{mg.name}: HiGHS via Pyomo stopped with {condition}")
