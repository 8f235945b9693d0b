"""Loss-minimising feeder reconfiguration: a MILP (Pyomo + HiGHS), polished and validated by AC power flow.

Promises: `reconfigure` returns the radial switch state (open branches, 1-based) with the lowest AC losses it
finds that keeps every energised bus at or above `vmin_pu` and every branch within its rating, together with
its AC losses and minimum voltage; or raises `ReconfigurationInfeasible` saying why (load that no branch
reaches, or no radial configuration that meets the limits).
Method:
  1. MILP (`reconf_milp`): branch status binaries; radiality by n-1 closed branches plus a single-commodity
     connectivity flow; linearised DistFlow for flows and squared voltages with big-M on open branches;
     losses r·(P²+Q²) under tangent-plane cuts on a geometric grid; line limits as an octagon inside the MVA
     circle. Solved with a small node budget: a good start, not an optimum.
  2. AC polish (`reconf_search.branch_exchange`): close an open branch, open one in the loop it makes, by the
     exact AC power flow, until no single exchange lowers the losses.
  3. Double exchange (`reconf_pairs.pair_exchange`): two swaps at once on loops that share a branch, ranked
     by a loss model with the load currents frozen at the incumbent's AC solution (exact there), the best
     `pair_top` AC-evaluated, the best improvement polished as in 2, repeated until none improves. One-swap
     exchange stalls where two loops must change together (case118zh: 875.16 kW; this step: 869.73 kW).
  4. Evidence (when `prove_s` > 0): `lossbound.certify` proves a lower bound on the AC losses of every radial
     configuration (a relaxation MILP, outer approximation with a cutoff) and finds better configurations
     on the way; the result carries the bound, the gap to the answer and whether the gap is within
     `target_gap`. Steps 1-3 give an answer fast and carry no optimality claim on their own
     (`loss_verify` is an independent check with SCIP, outside the fast path).
Assumes one substation and constant-power loads. Never mutates the feeder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.lossbound import certify
from peergrid_dso.services.powerflow import (
    PowerFlowResult,
    ac_power_flow,
    closed_mask,
    energised_buses,
    net_injection_mw,
)
from peergrid_dso.services.reconf_milp import (
    ReconfigurationInfeasible,
    SolverFailure,
    add_tangents_at_solution,
    build_milp,
    solve_milp,
)
from peergrid_dso.services.reconf_pairs import pair_exchange
from peergrid_dso.services.reconf_search import Evaluation, branch_exchange

__all__ = [
    "Evaluation",
    "ReconfigurationInfeasible",
    "ReconfigurationResult",
    "SolverFailure",
    "reconfigure",
]


@dataclass(frozen=True)
class ReconfigurationResult:
    open_branches: tuple[int, ...]
    losses_kw: float
    vmin_pu: float
    max_loading: float
    initial_losses_kw: float | None
    milp_solves: int
    exchanges: int
    seconds: float
    bound_kw: float | None = None  # proven lower bound on every radial configuration's AC losses
    gap: float | None = None  # (losses_kw - bound_kw) / losses_kw
    proven: bool = False  # gap <= target_gap
    proof_seconds: float = 0.0


def reconfigure(
    feeder: Feeder,
    *,
    vmin_pu: float | None = None,
    p_inj_mw: np.ndarray | None = None,
    q_inj_mvar: np.ndarray | None = None,
    time_limit_s: float = 120.0,
    max_milp_solves: int = 1,
    mip_gap: float = 0.02,
    mip_max_nodes: int = 20,
    mip_max_improving_sols: int = 2**31 - 1,
    tangent_ratio: float = 2.0,
    pair_top: int = 10,
    prove_s: float = 0.0,
    target_gap: float = 1e-3,
    clock: Callable[[], float] = time.perf_counter,
) -> ReconfigurationResult:
    """`pair_top`: double exchanges AC-evaluated per round of step 3 (0: skip it); `prove_s`: time for step 4
    (0: none); `time_limit_s` bounds steps 1-3."""
    started = clock()
    vmin = feeder.vmin_pu if vmin_pu is None else vmin_pu
    if p_inj_mw is None or q_inj_mvar is None:
        p_inj_mw, q_inj_mvar = net_injection_mw(feeder)
    all_closed = np.ones(len(feeder.branches), dtype=bool)
    reachable = energised_buses(feeder, all_closed)
    if not reachable.all():
        cut_off = [feeder.bus_ids[i] for i in np.flatnonzero(~reachable)]
        raise ReconfigurationInfeasible(f"islanded load: buses {cut_off} have no branch to the substation")

    evaluated: dict[tuple[int, ...], Evaluation] = {}  # the exchanges revisit neighbours
    flows: list[PowerFlowResult] = []  # of the feasible ones, kept for the proof's first cuts

    def evaluate(open_set: Collection[int]) -> Evaluation:
        key = tuple(sorted(open_set))
        if key not in evaluated:
            pf = ac_power_flow(feeder, closed_mask(feeder, key), p_inj_mw, q_inj_mvar)
            evaluated[key] = _evaluation(key, pf, vmin)
            if prove_s > 0 and evaluated[key].feasible:
                flows.append(pf)
        return evaluated[key]

    def polish(start: Evaluation, until: float) -> tuple[Evaluation, int]:
        """Steps 2-3 until the clock reads `until`: (best, exchanges made)."""
        local, moves = branch_exchange(feeder, start, evaluate)
        if pair_top <= 0 or not local.feasible:
            return local, moves
        best, pairs, more = pair_exchange(
            feeder, local, evaluate,
            lambda key: ac_power_flow(feeder, closed_mask(feeder, key), p_inj_mw, q_inj_mvar),
            p_inj_mw, q_inj_mvar, top=pair_top, deadline_s=lambda: until - clock(),
        )  # fmt: skip
        return best, moves + 2 * pairs + more

    initial = None
    if _is_tree(feeder, feeder.initially_open()):
        initial = evaluate(feeder.initially_open())

    p_pu, q_pu = p_inj_mw / feeder.base_mva, q_inj_mvar / feeder.base_mva
    model = build_milp(feeder, p_pu, q_pu, vmin, tangent_ratio)
    seen: list[tuple[int, ...]] = []
    solves = 0
    while solves < max_milp_solves:
        remaining = time_limit_s - (clock() - started)
        if remaining <= 0:
            break
        topology = solve_milp(model, remaining, mip_gap, mip_max_nodes, mip_max_improving_sols)
        solves += 1
        if topology in seen:
            break
        seen.append(topology)
        add_tangents_at_solution(model)
    if not seen:
        raise SolverFailure(f"no MILP solution within {time_limit_s:.0f} s")
    candidates = [evaluate(t) for t in seen]
    best = min(candidates, key=lambda e: (not e.feasible, e.losses_kw))
    best, exchanges = polish(best, started + time_limit_s)
    if not best.feasible:
        raise ReconfigurationInfeasible(
            f"no radial configuration found keeps all voltages >= {vmin:.3f} pu and lines within ratings "
            f"(best: vmin {best.vmin_pu:.4f} pu, max loading {best.max_loading:.0%})"
        )
    certificate = None
    if prove_s > 0:

        def ac(open_set: Collection[int]) -> tuple[PowerFlowResult, bool]:
            pf = ac_power_flow(feeder, closed_mask(feeder, open_set), p_inj_mw, q_inj_mvar)
            return pf, _evaluation(tuple(sorted(open_set)), pf, vmin).feasible

        meshed = ac_power_flow(feeder, all_closed, p_inj_mw, q_inj_mvar)
        certificate = certify(
            feeder, best.open_branches, ac, p_inj_mw / feeder.base_mva, q_inj_mvar / feeder.base_mva, vmin,
            time_limit_s=prove_s, target_gap=target_gap, seed_flows=[meshed, *_best_flows(flows, SEED_FLOWS)] if meshed.converged else flows,
            clock=clock,
        )  # fmt: skip
        if certificate.best_kw < best.losses_kw - 1e-9:
            best, more = polish(evaluate(certificate.best_open), clock() + time_limit_s)
            exchanges += more
    gap = None if certificate is None else max(0.0, 1 - certificate.bound_kw / best.losses_kw)
    return ReconfigurationResult(
        open_branches=best.open_branches,
        losses_kw=best.losses_kw,
        vmin_pu=best.vmin_pu,
        max_loading=best.max_loading,
        initial_losses_kw=initial.losses_kw if initial else None,
        milp_solves=solves,
        exchanges=exchanges,
        seconds=clock() - started,
        bound_kw=None if certificate is None else certificate.bound_kw,
        gap=gap,
        proven=gap is not None and gap <= target_gap + 1e-9,
        proof_seconds=0.0 if certificate is None else certificate.seconds,
    )


SEED_FLOWS = 200  # the proof's first cuts: at the AC flows of this many of the best configurations seen


def _best_flows(flows: list[PowerFlowResult], count: int) -> list[PowerFlowResult]:
    return sorted(flows, key=lambda pf: pf.losses_mw)[:count]


def _evaluation(open_set: tuple[int, ...], pf: PowerFlowResult, vmin: float) -> Evaluation:
    max_loading = float(pf.loading.max())
    feasible = pf.converged and pf.vmin_pu >= vmin - 1e-6 and max_loading <= 1.0 + 1e-6
    return Evaluation(open_set, pf.losses_mw * 1e3, pf.vmin_pu, max_loading, feasible)


def _is_tree(feeder: Feeder, open_set: Collection[int]) -> bool:
    closed = closed_mask(feeder, open_set)
    return int(closed.sum()) == feeder.n_bus - 1 and bool(energised_buses(feeder, closed).all())
