"""Double branch exchange screened by a fixed-current loss model: escaping one-swap local optima.

Promises: `pair_exchange(feeder, start, ...)` returns a radial configuration whose AC losses are never
higher than `start`'s (feasible whenever `start` is), and the number of improving moves. It never mutates
the feeder.
Why: branch exchange (one tie closed, one branch of its loop opened) stalls where two loops must change
together; on case118zh each of two swaps alone raises the losses (877.3 and 887.9 kW from 875.2) and both
together lower them (870.4). Trying every pair of swaps by AC power flow costs about 13,000 power flows
on that feeder, so the pairs are ranked first by a model that is exact at the incumbent and nearly exact
around it, and only the best few are AC-evaluated.
The model (`FixedCurrentLosses`): the load currents are frozen at the incumbent's AC solution
(I = conj(S / V) per bus); in any radial configuration a branch then carries the sum of the load currents
below it, and the losses are Σ r·|I|². At the incumbent this equals the AC losses exactly (a radial
network without shunts has no other currents); elsewhere it errs only through the voltage changes at the
buses whose supply path moved.
Method: for each pair of open branches whose loops share a branch (independent loops are already
handled one swap at a time), every pair of branches of the two loops is a candidate; candidates that
leave a spanning tree are ranked by the model; the `top` best that the model puts below the incumbent
are AC-evaluated; the best AC improvement is polished by single branch exchange and the search repeats
from it, until a round finds no AC improvement or the deadline passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.lossbound import fundamental_cycles
from peergrid_dso.services.powerflow import PowerFlowResult
from peergrid_dso.services.reconf_search import Evaluate, Evaluation, better, branch_exchange


class FixedCurrentLosses:
    """Losses of radial configurations with the bus currents frozen at one AC solution."""

    def __init__(self, feeder: Feeder, pf: PowerFlowResult, p_inj_mw: np.ndarray, q_inj_mvar: np.ndarray):
        self.n, self.root = feeder.n_bus, feeder.root
        s = (p_inj_mw + 1j * q_inj_mvar) / feeder.base_mva
        v = pf.v_pu
        safe = np.where(np.abs(v) > 0, v, 1.0)
        draw = np.where(np.abs(v) > 0, -np.conj(s / safe), 0.0)  # current each bus draws (loads positive)
        draw[self.root] = 0.0
        self.draw = [complex(x) for x in draw]
        self.r = [b.r_pu for b in feeder.branches]
        self.kw_per_pu = feeder.base_mva * 1e3
        self.adj: list[list[tuple[int, int]]] = [[] for _ in range(self.n)]
        for k, b in enumerate(feeder.branches):
            self.adj[b.from_bus].append((b.to_bus, k))
            self.adj[b.to_bus].append((b.from_bus, k))

    def losses_kw(self, open_idx: frozenset[int]) -> float | None:
        """Losses with the branches `open_idx` (0-based) open, or None when that is not a spanning tree
        (the caller keeps n-1 branches closed, so reaching every bus means a tree)."""
        parent_edge = [-1] * self.n
        parent = [-1] * self.n
        seen = [False] * self.n
        seen[self.root] = True
        order = [self.root]
        for i in order:  # breadth-first: `order` grows while it is walked
            for j, k in self.adj[i]:
                if k in open_idx:
                    continue
                if seen[j]:
                    if k != parent_edge[i]:
                        return None  # a loop
                    continue
                seen[j] = True
                parent[j], parent_edge[j] = i, k
                order.append(j)
        if len(order) < self.n:
            return None
        current = self.draw.copy()
        total = 0.0
        for j in reversed(order[1:]):
            c = current[j]
            current[parent[j]] += c
            total += self.r[parent_edge[j]] * (c.real * c.real + c.imag * c.imag)
        return total * self.kw_per_pu


def pair_exchange(
    feeder: Feeder,
    start: Evaluation,
    evaluate: Evaluate,
    ac_solution: Callable[[tuple[int, ...]], PowerFlowResult],
    p_inj_mw: np.ndarray,
    q_inj_mvar: np.ndarray,
    *,
    top: int,
    deadline_s: Callable[[], float],
) -> tuple[Evaluation, int, int]:
    """(best, improving pair moves, single exchanges made while polishing); `start` should be a one-swap
    local optimum (the polish after each move keeps it so)."""
    best, moves, exchanges = start, 0, 0
    while deadline_s() > 0:
        model = FixedCurrentLosses(feeder, ac_solution(best.open_branches), p_inj_mw, q_inj_mvar)
        ranked = sorted(_pair_candidates(feeder, best.open_branches, model, deadline_s))
        improved = best
        for estimate, candidate in ranked[:top]:
            if estimate >= best.losses_kw:
                break
            e = evaluate(candidate)
            if better(e, improved):
                improved = e
        if improved is best:
            break
        best, more = branch_exchange(feeder, improved, evaluate)
        moves, exchanges = moves + 1, exchanges + more
    return best, moves, exchanges


def _pair_candidates(
    feeder: Feeder,
    open_branches: tuple[int, ...],
    model: FixedCurrentLosses,
    deadline_s: Callable[[], float],
) -> list[tuple[float, tuple[int, ...]]]:
    opens = [number - 1 for number in open_branches]
    loops = fundamental_cycles(feeder, open_branches)[: len(opens)]
    scored: dict[frozenset[int], float] = {}
    for i, j in itertools.combinations(range(len(opens)), 2):
        if not loops[i] & loops[j] or deadline_s() <= 0:
            continue
        rest = frozenset(opens) - {opens[i], opens[j]}
        # Closing both ties makes three cycles (the two loops and their sum); opening two branches leaves a
        # spanning tree exactly when each of the three loses one of them.
        cycles = (loops[i], loops[j], loops[i] ^ loops[j])
        for a, b in itertools.combinations(sorted(loops[i] | loops[j]), 2):
            candidate = rest | {a, b}
            if candidate in scored or not all(a in c or b in c for c in cycles):
                continue
            estimate = model.losses_kw(candidate)
            if estimate is not None:
                scored[candidate] = estimate
    return [(kw, tuple(sorted(k + 1 for k in c))) for c, kw in scored.items()]
