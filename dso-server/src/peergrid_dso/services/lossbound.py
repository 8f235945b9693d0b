"""A lower bound on the AC losses of every radial configuration: the evidence behind a reconfiguration.

Promises: `certify(feeder, best, ...)` returns a `Certificate`: a lower bound `bound_kw` on the AC losses of
every radial configuration that keeps all voltages in [vmin, v_hi] and every branch within its rating, the
best configuration it knows (the given one, or a better one it found on the way, AC-evaluated), and the gap
`(best - bound) / best`. `proven` means the gap is at most `target_gap`. Stopped by its time limit it still
returns a valid (weaker) bound. Never mutates the feeder; never prints (HiGHS's banner is silenced).
Why the bound is valid: the MILP is a relaxation of AC power flow on a radial network. Branch flow model
(DistFlow) with losses in the balances and voltage drops, exact for trees; the rotated cone
l·v_from >= P² + Q² (l = current², v = voltage²) is relaxed to tangent cuts (outer approximation) and to its
perspective v_hi·l >= (P² + Q²)/y on switch y, both satisfied by every AC solution; radiality as n-1 closed
branches, a single-commodity connectivity flow and one "at least one open" row per cycle (valid for trees).
So every AC-feasible radial configuration is feasible for the MILP with objective = its AC losses, and the
MILP's dual bound bounds the AC optimum from below.
Method (outer approximation with a cutoff): add objective <= (1 - target_gap)·best; solve; infeasible means
proven. Otherwise AC-evaluate the MILP's topology (keep it if better), add cuts at its flows and at the AC
flows, and repeat until proven, no cut is violated (the bound is then final) or time runs out.
Assumes one substation, constant-power loads, v_hi = root voltage² when no bus injects (loads only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.highs_quiet import silence_highs_banner
from peergrid_dso.services.powerflow import PowerFlowResult

Evaluate = Callable[[Collection[int]], tuple[PowerFlowResult, bool]]  # open set -> (AC result, feasible)


@dataclass(frozen=True)
class Certificate:
    bound_kw: float
    best_open: tuple[int, ...]
    best_kw: float
    gap: float
    proven: bool
    milp_solves: int
    seconds: float


def fundamental_cycles(feeder: Feeder, tree_open: Collection[int]) -> list[frozenset[int]]:
    """Branch indices (0-based) of the cycle each open branch closes in the tree, and the symmetric
    differences of overlapping pairs (also cycles): each needs at least one open branch in a tree."""
    closed = [k for k in range(len(feeder.branches)) if k + 1 not in set(tree_open)]
    adj: dict[int, list[tuple[int, int]]] = {i: [] for i in range(feeder.n_bus)}
    for k in closed:
        b = feeder.branches[k]
        adj[b.from_bus].append((b.to_bus, k))
        adj[b.to_bus].append((b.from_bus, k))
    parent: dict[int, tuple[int, int]] = {}
    depth = {feeder.root: 0}
    stack = [feeder.root]
    while stack:
        i = stack.pop()
        for j, k in adj[i]:
            if j not in depth:
                depth[j], parent[j] = depth[i] + 1, (i, k)
                stack.append(j)
    cycles = []
    for number in tree_open:
        b = feeder.branch(number)
        u, v, path = b.from_bus, b.to_bus, {number - 1}
        while u != v:
            if depth[u] < depth[v]:
                u, v = v, u
            u, k = parent[u]
            path.add(k)
        cycles.append(frozenset(path))
    pairs = {a ^ c for a in cycles for c in cycles if a != c and a & c}
    return [*cycles, *sorted(pairs - set(cycles), key=sorted)]


class _Relaxation:
    def __init__(self, feeder: Feeder, p: np.ndarray, q: np.ndarray, vmin: float, tree_open: Collection[int]):
        self.feeder = feeder
        n, root, br = feeder.n_bus, feeder.root, feeder.branches
        lines = range(len(br))
        loads_only = bool((p <= 1e-12).all() and (q <= 1e-12).all())
        self.v_hi = feeder.root_vm_pu**2 if loads_only else max(feeder.vmax_pu, feeder.root_vm_pu) ** 2
        # Flow bounds with room for losses (a tenth of the load would already be an extreme feeder).
        pt, qt = 1.5 * float(np.abs(p).sum()) + 1e-6, 1.5 * float(np.abs(q).sum()) + 1e-6
        v_lo = vmin**2
        l_max = {k: min((pt**2 + qt**2) / v_lo, (br[k].rating_mva / feeder.base_mva) ** 2) for k in lines}
        m = self.m = pyo.ConcreteModel()
        m.L = pyo.Set(initialize=list(lines))
        m.y = pyo.Var(m.L, domain=pyo.Binary)
        m.P = pyo.Var(m.L, bounds=(-pt, pt))
        m.Q = pyo.Var(m.L, bounds=(-qt, qt))
        m.l = pyo.Var(m.L, bounds=lambda _, k: (0.0, l_max[k]))
        m.v = pyo.Var(range(n), bounds=(v_lo, self.v_hi))
        m.v[root].fix(feeder.root_vm_pu**2)
        m.k = pyo.Var(m.L, bounds=(-(n - 1), n - 1))
        out_of = {i: [k for k in lines if br[k].from_bus == i] for i in range(n)}
        into = {i: [k for k in lines if br[k].to_bus == i] for i in range(n)}
        others = [i for i in range(n) if i != root]
        # Power arriving over branch k is the sending-end flow minus its losses (z·l).
        m.p_bal = pyo.Constraint(others, rule=lambda m, i: sum(m.P[k] - br[k].r_pu * m.l[k] for k in into[i])
                                 - sum(m.P[k] for k in out_of[i]) == -p[i])  # fmt: skip
        m.q_bal = pyo.Constraint(others, rule=lambda m, i: sum(m.Q[k] - br[k].x_pu * m.l[k] for k in into[i])
                                 - sum(m.Q[k] for k in out_of[i]) == -q[i])  # fmt: skip
        m.k_bal = pyo.Constraint(
            others, rule=lambda m, i: sum(m.k[k] for k in into[i]) - sum(m.k[k] for k in out_of[i]) == 1
        )
        m.tree = pyo.Constraint(expr=sum(m.y[k] for k in lines) == n - 1)
        m.rows = pyo.ConstraintList()
        big_v = self.v_hi - v_lo
        for k in lines:
            b = br[k]
            for var, bound in ((m.P, pt), (m.Q, qt), (m.k, n - 1)):
                m.rows.add(var[k] <= bound * m.y[k])
                m.rows.add(var[k] >= -bound * m.y[k])
            m.rows.add(m.l[k] <= l_max[k] * m.y[k])
            drop = (m.v[b.from_bus] - m.v[b.to_bus] - 2 * (b.r_pu * m.P[k] + b.x_pu * m.Q[k])
                    + (b.r_pu**2 + b.x_pu**2) * m.l[k])  # fmt: skip
            m.rows.add(drop <= big_v * (1 - m.y[k]))
            m.rows.add(drop >= -big_v * (1 - m.y[k]))
        for cycle in fundamental_cycles(feeder, tree_open):
            m.rows.add(sum(1 - m.y[k] for k in cycle) >= 1)
        weight = {k: br[k].r_pu * feeder.base_mva * 1e3 for k in lines}  # kW per pu current²
        self.losses = sum(weight[k] * m.l[k] for k in lines)
        m.obj = pyo.Objective(expr=self.losses, sense=pyo.minimize)
        m.cutoff = pyo.Param(mutable=True, initialize=1e12)
        m.below = pyo.Constraint(expr=self.losses <= m.cutoff)
        m.cuts = pyo.ConstraintList()
        self.points: dict[int, list[tuple[float, float, float]]] = {k: [] for k in lines}

    def cut(self, k: int, p0: float, q0: float, v0: float, near: float = 0.0) -> bool:
        """Tangents of the cone and of its perspective at the flow (p0, q0) with sending voltage² v0; skipped
        when a cut point lies within relative distance `near` (a tangent 2 % away errs by about 0.04 %)."""
        m, i = self.m, self.feeder.branches[k].from_bus
        s2 = p0 * p0 + q0 * q0
        if s2 < 1e-14:
            return False
        radius2 = near * near * s2
        if any(
            (p0 - a) ** 2 + (q0 - b) ** 2 <= radius2 and abs(v0 - c) <= near for a, b, c in self.points[k]
        ):
            return False
        self.points[k].append((p0, q0, v0))
        l0 = s2 / v0
        m.cuts.add(
            4 * p0 * m.P[k] + 4 * q0 * m.Q[k] + (l0 - v0) * (m.l[k] - m.v[i]) <= (l0 + v0) * (m.l[k] + m.v[i])
        )
        m.cuts.add(self.v_hi * m.l[k] >= 2 * p0 * m.P[k] + 2 * q0 * m.Q[k] - s2 * m.y[k])
        return True

    def cuts_at_ac(self, pf: PowerFlowResult, near: float = 0.0) -> None:
        base = self.feeder.base_mva
        for k, b in enumerate(self.feeder.branches):
            if pf.branch_i_pu[k] > 0:
                p0, q0 = pf.branch_p_mw[k] / base, pf.branch_q_mvar[k] / base
                self.cut(k, p0, q0, pf.vm_pu[b.from_bus] ** 2, near)

    def separate(self, tol: float = 1e-4) -> int:
        """Cuts where the MILP's point violates the cone; how many."""
        m, added = self.m, 0
        for k, b in enumerate(self.feeder.branches):
            if pyo.value(m.y[k]) < 0.5:
                continue
            p0, q0, l0 = pyo.value(m.P[k]), pyo.value(m.Q[k]), pyo.value(m.l[k])
            v0 = pyo.value(m.v[b.from_bus])
            if p0 * p0 + q0 * q0 > l0 * v0 * (1 + tol) + 1e-12:
                self.cut(k, p0, q0, v0)
                added += 1
        return added

    def open_set(self) -> tuple[int, ...]:
        return tuple(k + 1 for k in self.m.L if pyo.value(self.m.y[k]) < 0.5)


def certify(
    feeder: Feeder,
    best_open: tuple[int, ...],
    evaluate: Evaluate,
    p: np.ndarray,
    q: np.ndarray,
    vmin: float,
    *,
    time_limit_s: float,
    target_gap: float = 1e-3,
    seed_flows: Iterable[PowerFlowResult] = (),
    clock: Callable[[], float] = time.perf_counter,
) -> Certificate:
    """`best_open`: an AC-feasible radial configuration; `p`, `q`: per-unit net injections; `seed_flows`:
    other AC solutions (all branches closed, the configurations the exchange visited) whose flows make
    good first cuts: the MILP is then nearly exact where the competition is."""
    started = clock()
    relax = _Relaxation(feeder, p, q, vmin, best_open)
    pf, feasible = evaluate(best_open)
    if not feasible:
        raise ValueError("certify needs an AC-feasible starting configuration")
    best_kw = pf.losses_mw * 1e3
    relax.cuts_at_ac(pf)
    for flows in seed_flows:
        relax.cuts_at_ac(flows, near=0.02)
    silence_highs_banner()
    solver = Highs()
    solver.config.load_solution = False
    bound, solves = 0.0, 0
    while True:
        remaining = time_limit_s - (clock() - started)
        if remaining <= 0.05:
            break
        cutoff = best_kw * (1 - target_gap)
        relax.m.cutoff.set_value(cutoff)
        solver.config.time_limit = remaining
        solver.highs_options = {"threads": 1, "time_limit": remaining, "mip_rel_gap": target_gap / 2}
        result = solver.solve(relax.m)
        solves += 1
        condition = result.termination_condition
        if condition in (TerminationCondition.infeasible, TerminationCondition.infeasibleOrUnbounded):
            bound = max(bound, cutoff)  # nothing radial below the cutoff: proven
            break
        if result.best_objective_bound is not None and math.isfinite(result.best_objective_bound):
            bound = max(bound, min(cutoff, result.best_objective_bound))
        if result.best_feasible_objective is None:
            break  # time ran out before the MILP found anything or proved anything more
        result.solution_loader.load_vars()
        candidate = relax.open_set()
        added = relax.separate()
        pf, feasible = evaluate(candidate)
        improved = feasible and pf.losses_mw * 1e3 < best_kw - 1e-9
        if feasible:
            relax.cuts_at_ac(pf)
        if improved:
            best_open, best_kw = candidate, pf.losses_mw * 1e3
        elif added == 0:
            break  # the MILP's point satisfies the cone: no cut tightens it, its bound is final
    gap = max(0.0, (best_kw - bound) / best_kw)
    return Certificate(
        bound, tuple(sorted(best_open)), best_kw, gap, gap <= target_gap + 1e-9, solves, clock() - started
    )
