"""An independent check of a reconfiguration's optimality: the MISOCP DistFlow relaxation solved by SCIP.

Promises: `verify_with_scip(feeder, best_open, ...)` returns a `ScipVerdict`: a lower bound on the AC losses
of every radial configuration that keeps all voltages in [vmin, v_root] and every branch within its rating,
proven by SCIP's spatial branch and bound on a different model and solver than our HiGHS path
(`lossbound`), plus the best configuration SCIP found (AC-evaluated by the caller's `evaluate`). It is a
verifier, not part of the fast path: SCIP (PySCIPOpt) is an optional dependency (`peergrid-dso[verify]`);
without it `ScipUnavailable` is raised. Never mutates the feeder; SCIP's output is silenced.
Why the bound is valid: branch flow model (DistFlow) with losses in the balances and voltage drops, exact for
trees; the rotated cone P² + Q² <= l·v_from (l = current², v = voltage²) relaxes the AC equality and SCIP
treats it as a convex constraint, not as cuts we chose; radiality as n-1 closed branches plus a
single-commodity connectivity flow. Every AC-feasible radial configuration is a feasible point with
objective = its AC losses, so SCIP's dual bound bounds the AC optimum from below. With a cutoff (objective
<= (1 - gap)·best) an infeasible verdict means no radial configuration beats `best` by more than the gap.
Assumes one substation and loads only or injections small enough that no voltage exceeds the root's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.lossbound import fundamental_cycles


class ScipUnavailable(RuntimeError):
    """PySCIPOpt is not installed (it is the optional `verify` extra of peergrid-dso)."""


@dataclass(frozen=True)
class ScipVerdict:
    bound_kw: float  # valid lower bound on every radial configuration's AC losses (0 when none proven)
    status: str  # SCIP's status: "infeasible" (nothing below the cutoff), "optimal", "timelimit", ...
    found_open: tuple[int, ...] | None  # SCIP's best radial configuration below the cutoff, if any
    found_relaxed_kw: float | None  # its objective in the relaxation (its AC losses are the caller's)
    seconds: float
    nodes: int


def verify_with_scip(
    feeder: Feeder,
    best_open: Collection[int],
    best_kw: float,
    p: np.ndarray,
    q: np.ndarray,
    vmin: float,
    *,
    time_limit_s: float,
    gap: float = 1e-3,
    log_file: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ScipVerdict:
    """`best_open`/`best_kw`: an AC-feasible radial configuration and its AC losses (the cutoff's reference;
    its fundamental cycles give valid "one branch open per cycle" rows); `p`, `q`: per-unit net injections;
    `log_file`: where SCIP writes its progress (none by default)."""
    try:
        from pyscipopt import SCIP_PARAMSETTING, Model, quicksum  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ScipUnavailable(
            "pip install 'peergrid-dso[verify]' (PySCIPOpt) to run the SCIP verifier"
        ) from exc
    started = clock()
    n, root, br = feeder.n_bus, feeder.root, feeder.branches
    lines = range(len(br))
    v_hi = feeder.root_vm_pu**2
    if not ((p <= 1e-12).all() and (q <= 1e-12).all()):
        v_hi = max(feeder.vmax_pu, feeder.root_vm_pu) ** 2
    v_lo = vmin**2
    pt, qt = 1.5 * float(np.abs(p).sum()) + 1e-6, 1.5 * float(np.abs(q).sum()) + 1e-6
    l_max = {k: min((pt**2 + qt**2) / v_lo, (br[k].rating_mva / feeder.base_mva) ** 2) for k in lines}
    m = Model("reconfiguration-misocp")
    m.hideOutput()
    if log_file is not None:
        m.setLogfile(log_file)
    m.setParam("limits/time", max(1.0, time_limit_s))
    m.setParam("parallel/maxnthreads", 1)
    # The cutoff already carries the best known answer, so primal heuristics only cost time; the root's
    # cone separation loops are capped (on case33bw: 3.7 s CPU instead of 9.8 s to the same proof).
    m.setHeuristics(SCIP_PARAMSETTING.OFF)
    m.setParam("separating/maxroundsroot", 5)
    y = {k: m.addVar(f"y{k}", vtype="B") for k in lines}
    P = {k: m.addVar(f"P{k}", lb=-pt, ub=pt) for k in lines}
    Q = {k: m.addVar(f"Q{k}", lb=-qt, ub=qt) for k in lines}
    ell = {k: m.addVar(f"l{k}", lb=0.0, ub=l_max[k]) for k in lines}
    flow = {k: m.addVar(f"k{k}", lb=-(n - 1), ub=n - 1) for k in lines}
    v = {
        i: m.addVar(f"v{i}", lb=feeder.root_vm_pu**2 if i == root else v_lo,
                    ub=feeder.root_vm_pu**2 if i == root else v_hi)
        for i in range(n)
    }  # fmt: skip
    for i in range(n):
        if i == root:
            continue
        into = [k for k in lines if br[k].to_bus == i]
        out = [k for k in lines if br[k].from_bus == i]
        m.addCons(quicksum(P[k] - br[k].r_pu * ell[k] for k in into) - quicksum(P[k] for k in out) == -p[i])
        m.addCons(quicksum(Q[k] - br[k].x_pu * ell[k] for k in into) - quicksum(Q[k] for k in out) == -q[i])
        m.addCons(quicksum(flow[k] for k in into) - quicksum(flow[k] for k in out) == 1)
    m.addCons(quicksum(y[k] for k in lines) == n - 1)
    big_v = v_hi - v_lo
    for k in lines:
        b = br[k]
        for var, bound in ((P, pt), (Q, qt), (flow, n - 1)):
            m.addCons(var[k] <= bound * y[k])
            m.addCons(var[k] >= -bound * y[k])
        m.addCons(ell[k] <= l_max[k] * y[k])
        drop = (
            v[b.from_bus]
            - v[b.to_bus]
            - 2 * (b.r_pu * P[k] + b.x_pu * Q[k])
            + (b.r_pu**2 + b.x_pu**2) * ell[k]
        )
        m.addCons(drop <= big_v * (1 - y[k]))
        m.addCons(drop >= -big_v * (1 - y[k]))
        m.addCons(P[k] * P[k] + Q[k] * Q[k] <= ell[k] * v[b.from_bus])  # the rotated cone
    for cycle in fundamental_cycles(feeder, best_open):
        m.addCons(quicksum(1 - y[k] for k in cycle) >= 1)
    weight = {k: br[k].r_pu * feeder.base_mva * 1e3 for k in lines}  # kW per pu current²
    losses = quicksum(weight[k] * ell[k] for k in lines)
    cutoff = best_kw * (1 - gap)
    m.addCons(losses <= cutoff)
    m.setObjective(losses, "minimize")
    m.optimize()
    status = m.getStatus()
    if status == "infeasible":
        bound = cutoff
    else:
        dual = m.getDualbound()
        bound = max(0.0, min(cutoff, dual)) if math.isfinite(dual) else 0.0
    found_open, found_kw = None, None
    if m.getNSols() > 0:
        sol = m.getBestSol()
        found_open = tuple(k + 1 for k in lines if m.getSolVal(sol, y[k]) < 0.5)
        found_kw = float(m.getSolObjVal(sol))
    return ScipVerdict(bound, status, found_open, found_kw, clock() - started, int(m.getNNodes()))
