"""Improving a radial configuration against the exact AC losses: single branch exchange.

Promises: `branch_exchange` takes an AC-evaluated starting configuration and an `evaluate` function (open
set -> `Evaluation`, memoised by the caller) and returns a configuration that is never worse in AC losses,
feasible whenever the start is; it never mutates the feeder. Method: close an open branch, open one on the
loop it makes, keep the best such move by AC power flow, repeat until no single exchange lowers the losses
(a local optimum for one swap at a time; `reconf_pairs.pair_exchange` goes on with two swaps at once).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.powerflow import closed_mask


@dataclass(frozen=True)
class Evaluation:
    open_branches: tuple[int, ...]
    losses_kw: float
    vmin_pu: float
    max_loading: float
    feasible: bool


Evaluate = Callable[[Collection[int]], Evaluation]


def better(a: Evaluation, b: Evaluation) -> bool:
    """Feasible beats infeasible; then lower AC losses (by more than rounding)."""
    return (a.feasible, -a.losses_kw) > (b.feasible, -b.losses_kw + 1e-9)


def tree_path(feeder: Feeder, closed: np.ndarray, u: int, v: int) -> list[int]:
    """Branch indices (0-based) on the tree path between buses u and v."""
    adj: dict[int, list[tuple[int, int]]] = {i: [] for i in range(feeder.n_bus)}
    for k, b in enumerate(feeder.branches):
        if closed[k]:
            adj[b.from_bus].append((b.to_bus, k))
            adj[b.to_bus].append((b.from_bus, k))
    parent: dict[int, tuple[int, int] | None] = {u: None}
    stack = [u]
    while stack:
        i = stack.pop()
        for j, k in adj[i]:
            if j not in parent:
                parent[j] = (i, k)
                stack.append(j)
    path, node = [], v
    while parent.get(node) is not None:
        i, k = parent[node]  # type: ignore[misc]
        path.append(k)
        node = i
    return path


def branch_exchange(feeder: Feeder, start: Evaluation, evaluate: Evaluate) -> tuple[Evaluation, int]:
    """(local optimum, number of exchanges made)."""
    best, moves = start, 0
    tried: set[tuple[int, ...]] = {start.open_branches}
    while True:
        closed = closed_mask(feeder, best.open_branches)
        improved = best
        for tie in best.open_branches:
            b = feeder.branch(tie)
            for k in tree_path(feeder, closed, b.from_bus, b.to_bus):
                candidate = tuple(sorted((set(best.open_branches) - {tie}) | {k + 1}))
                if candidate in tried:
                    continue
                tried.add(candidate)
                e = evaluate(candidate)
                if better(e, improved):
                    improved = e
        if improved is best:
            return best, moves
        best, moves = improved, moves + 1
