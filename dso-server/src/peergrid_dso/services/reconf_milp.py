"""The reconfiguration MILP (Pyomo + HiGHS): radial switch states under linearised DistFlow and a loss model.

Promises: `build_milp` returns a model whose feasible points are the radial configurations (n-1 closed
branches plus a single-commodity connectivity flow) with LinDistFlow flows and squared voltages (big-M on
open branches), voltage limits and line limits (an octagon inside the MVA circle); its objective estimates
the losses as Σ r_k·(P_k² + Q_k²) with the squares under tangent-plane cuts (a geometric grid, plus exact
tangents added at a solution's flows: `add_tangents_at_solution`). `solve_milp` returns the open branches
(1-based) of the best configuration it finds, or raises `ReconfigurationInfeasible` (the linear model has no radial configuration within the
limits) or `SolverFailure` (no verdict in time). Never prints (HiGHS's banner is silenced).
"""

from __future__ import annotations

import math

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.highs_quiet import silence_highs_banner


class ReconfigurationInfeasible(ValueError):
    """No radial configuration serves every load within the limits; the message says which obstacle."""


class SolverFailure(RuntimeError):
    """The MILP solver stopped without a verdict (time limit, numerical trouble): not an infeasibility proof."""


def tangent_grid(bound: float, ratio: float, floor: float = 1e-2) -> list[float]:
    points, a = [], bound
    while a > bound * floor:
        points.append(a)
        a /= ratio
    return [*points, *(-p for p in points)]


def build_milp(
    feeder: Feeder, p: np.ndarray, q: np.ndarray, vmin: float, tangent_ratio: float
) -> pyo.ConcreteModel:
    """p, q: per-unit net injections (generation positive)."""
    n, root = feeder.n_bus, feeder.root
    lines = range(len(feeder.branches))
    br = feeder.branches
    p_total = float(np.abs(p).sum()) + 1e-6
    q_total = float(np.abs(q).sum()) + 1e-6
    v_lo, v_hi = vmin**2, max(feeder.vmax_pu, feeder.root_vm_pu) ** 2
    m = pyo.ConcreteModel()
    m.L = pyo.Set(initialize=list(lines))
    m.N = pyo.Set(initialize=list(range(n)))
    m.y = pyo.Var(m.L, domain=pyo.Binary)
    s_max = {k: min(br[k].rating_mva / feeder.base_mva, math.hypot(p_total, q_total)) for k in lines}
    pb = {k: min(p_total, s_max[k]) for k in lines}
    qb = {k: min(q_total, s_max[k]) for k in lines}
    m.P = pyo.Var(m.L, bounds=lambda _, k: (-pb[k], pb[k]))
    m.Q = pyo.Var(m.L, bounds=lambda _, k: (-qb[k], qb[k]))
    m.lp = pyo.Var(m.L, domain=pyo.NonNegativeReals)
    m.lq = pyo.Var(m.L, domain=pyo.NonNegativeReals)
    m.k = pyo.Var(m.L, bounds=(-(n - 1), n - 1))
    m.v = pyo.Var(m.N, bounds=(v_lo, v_hi))
    m.v[root].fix(feeder.root_vm_pu**2)
    out_of = {i: [k for k in lines if br[k].from_bus == i] for i in range(n)}
    into = {i: [k for k in lines if br[k].to_bus == i] for i in range(n)}
    non_root = [i for i in range(n) if i != root]
    m.p_balance = pyo.Constraint(
        non_root, rule=lambda m, i: sum(m.P[k] for k in into[i]) - sum(m.P[k] for k in out_of[i]) == -p[i]
    )
    m.q_balance = pyo.Constraint(
        non_root, rule=lambda m, i: sum(m.Q[k] for k in into[i]) - sum(m.Q[k] for k in out_of[i]) == -q[i]
    )
    m.k_balance = pyo.Constraint(
        non_root, rule=lambda m, i: sum(m.k[k] for k in into[i]) - sum(m.k[k] for k in out_of[i]) == 1
    )
    m.tree = pyo.Constraint(expr=sum(m.y[k] for k in lines) == n - 1)
    m.k_on = pyo.ConstraintList()
    m.flow_on = pyo.ConstraintList()
    m.volt = pyo.ConstraintList()
    m.limit = pyo.ConstraintList()
    big_v = v_hi - v_lo
    for k in lines:
        m.k_on.add(m.k[k] <= (n - 1) * m.y[k])
        m.k_on.add(m.k[k] >= -(n - 1) * m.y[k])
        for var, bound in ((m.P, pb[k]), (m.Q, qb[k])):
            m.flow_on.add(var[k] <= bound * m.y[k])
            m.flow_on.add(var[k] >= -bound * m.y[k])
        drop = m.v[br[k].from_bus] - m.v[br[k].to_bus] - 2 * (br[k].r_pu * m.P[k] + br[k].x_pu * m.Q[k])
        m.volt.add(drop <= big_v * (1 - m.y[k]))
        m.volt.add(drop >= -big_v * (1 - m.y[k]))
        if math.isfinite(br[k].rating_mva):
            s = s_max[k]
            for sp in (1, -1):
                for sq in (1, -1):
                    m.limit.add(sp * m.P[k] + sq * m.Q[k] <= math.sqrt(2) * s)
    m.cuts = pyo.ConstraintList()
    for k in lines:
        for a in tangent_grid(pb[k], tangent_ratio):
            m.cuts.add(m.lp[k] >= 2 * a * m.P[k] - a * a * m.y[k])
        for a in tangent_grid(qb[k], tangent_ratio):
            m.cuts.add(m.lq[k] >= 2 * a * m.Q[k] - a * a * m.y[k])
    weight = {k: br[k].r_pu * feeder.base_mva * 1e3 for k in lines}  # kW per pu² of flow
    m.losses = pyo.Objective(expr=sum(weight[k] * (m.lp[k] + m.lq[k]) for k in lines), sense=pyo.minimize)
    return m


def _tangent(m: pyo.ConcreteModel, k: int, a: float, b: float) -> None:
    if abs(a) > 1e-9:
        m.cuts.add(m.lp[k] >= 2 * a * m.P[k] - a * a * m.y[k])
    if abs(b) > 1e-9:
        m.cuts.add(m.lq[k] >= 2 * b * m.Q[k] - b * b * m.y[k])


def add_tangents_at_solution(model: pyo.ConcreteModel) -> None:
    for k in model.L:
        _tangent(model, k, pyo.value(model.P[k]), pyo.value(model.Q[k]))


def solve_milp(
    model: pyo.ConcreteModel,
    time_limit_s: float,
    mip_gap: float,
    max_nodes: int,
    max_improving: int = 2**31 - 1,
) -> tuple[int, ...]:
    silence_highs_banner()
    solver = Highs()
    solver.config.time_limit = max(0.2, time_limit_s)
    solver.config.mip_gap = mip_gap
    solver.config.load_solution = False
    solver.highs_options = {
        "threads": 1,
        "time_limit": max(0.2, time_limit_s),
        "mip_max_nodes": max_nodes,
        "mip_max_improving_sols": max_improving,
        # The AC branch exchange polishes the answer, so the MILP needs a good incumbent fast, not a proof:
        # the large-neighbourhood heuristics doubled the root time here without changing the final topology.
        "mip_heuristic_run_rins": False,
        "mip_heuristic_run_rens": False,
        "mip_heuristic_run_root_reduced_cost": False,
        "mip_heuristic_run_feasibility_jump": False,
    }
    result = solver.solve(model)
    condition = result.termination_condition
    if condition in (TerminationCondition.infeasible, TerminationCondition.infeasibleOrUnbounded):
        raise ReconfigurationInfeasible(
            "no radial configuration keeps all voltages within limits and lines within ratings "
            "(the linearised network model is infeasible)"
        )
    if result.best_feasible_objective is None and condition == TerminationCondition.maxIterations:
        # The node budget ran out before any incumbent: spend the time budget for a verdict instead.
        return solve_milp(model, time_limit_s, mip_gap, 2**31 - 1)
    if result.best_feasible_objective is None:
        raise SolverFailure(f"MILP solver stopped without a solution: {condition.name}")
    result.solution_loader.load_vars()
    return tuple(k + 1 for k in model.L if pyo.value(model.y[k]) < 0.5)
