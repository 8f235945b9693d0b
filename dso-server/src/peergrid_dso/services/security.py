"""Network security with MG equivalent injections: AC check, smallest corrective adjustment, and the loop.

Promises:
- `check_security` runs AC power flow for a topology and MG injections and lists every violated limit
  (bus voltage outside [vmin, vmax], branch current above rating), worst first.
- `minimal_adjustment` finds the smallest total change of MG active injections (an OPF: an LP on AC
  sensitivities, re-linearised and validated by AC power flow until the AC result is secure) within each
  MG's own range. When no adjustment within those ranges can restore the limits it raises
  `SecurityInfeasible` naming the limits that stay violated (found by an elastic LP, so the answer is a
  property of the network, not of the solver); a solver or power-flow breakdown is `OpfNumericalFailure`.
- `learn_reach` narrows an MG's range to what its answers showed it can reach (`flexible_ranges` applies it),
  so a later iteration asks the other MGs instead of the one that could not move further.
- `SecurityLoop.run` repeats check -> adjust -> per-MG limits -> encrypted adjustment contracts on the DSO
  chain -> re-bargained injections, until secure or `max_iterations`; then it names the constraint that
  could not be met. The imbalance left (MGs' net injection) is bought or sold by the DSO at wholesale.
Pure apart from the injected recorder and re-bargaining callback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.highs_quiet import silence_highs_banner
from peergrid_dso.services.powerflow import PowerFlowResult, ac_power_flow, closed_mask, net_injection_mw

Injections = Mapping[str, tuple[float, float]]  # MG id -> (p MW, q Mvar), generation positive


class SecurityInfeasible(ValueError):
    def __init__(self, constraints: list[str]) -> None:
        self.constraints = constraints
        super().__init__("no adjustment within the MGs' ranges restores: " + "; ".join(constraints))


class OpfNumericalFailure(RuntimeError):
    """The solver or the power flow broke down: says nothing about whether a secure point exists."""


@dataclass(frozen=True)
class Violation:
    kind: str  # "voltage_low" | "voltage_high" | "thermal"
    element: str  # "bus 18" | "branch 7"
    value: float
    limit: float

    def __str__(self) -> str:
        unit = "" if self.kind == "thermal" else " pu"
        what = "loading" if self.kind == "thermal" else "voltage"
        return f"{self.element} {what} {self.value:.4f}{unit} vs limit {self.limit:.4f}{unit}"


@dataclass(frozen=True)
class SecurityCheck:
    violations: tuple[Violation, ...]
    vmin_pu: float
    vmax_pu: float
    max_loading: float
    losses_kw: float

    @property
    def secure(self) -> bool:
        return not self.violations


def _flow(feeder: Feeder, open_set: tuple[int, ...], injections: Injections) -> PowerFlowResult:
    p, q = net_injection_mw(feeder, injections)
    pf = ac_power_flow(feeder, closed_mask(feeder, open_set), p, q)
    if not pf.converged:
        raise OpfNumericalFailure("AC power flow did not converge for these injections")
    return pf


def check_security(feeder: Feeder, open_set: tuple[int, ...], injections: Injections) -> SecurityCheck:
    pf = _flow(feeder, open_set, injections)
    found = []
    for i in np.flatnonzero(pf.energised):
        v = float(pf.vm_pu[i])
        if v < feeder.vmin_pu - 1e-6:
            found.append(Violation("voltage_low", f"bus {feeder.bus_ids[i]}", v, feeder.vmin_pu))
        elif v > feeder.vmax_pu + 1e-6:
            found.append(Violation("voltage_high", f"bus {feeder.bus_ids[i]}", v, feeder.vmax_pu))
    for k in np.flatnonzero(pf.loading > 1.0 + 1e-6):
        found.append(Violation("thermal", f"branch {k + 1}", float(pf.loading[k]), 1.0))
    found.sort(key=lambda v: -abs(v.value - v.limit))
    return SecurityCheck(tuple(found), pf.vmin_pu, pf.vmax_pu, float(pf.loading.max()), pf.losses_mw * 1e3)


@dataclass(frozen=True)
class MgRange:
    p_min_mw: float
    p_max_mw: float


def minimal_adjustment(
    feeder: Feeder,
    open_set: tuple[int, ...],
    injections: Injections,
    ranges: Mapping[str, MgRange],
    *,
    margin_pu: float = 0.002,
    max_rounds: int = 6,
) -> dict[str, tuple[float, float]]:
    """New injections (same q) with the least total |Δp| that AC power flow finds secure."""
    current = {mg: (float(p), float(q)) for mg, (p, q) in injections.items()}
    for _ in range(max_rounds):
        if check_security(feeder, open_set, current).secure:
            return current
        delta = _adjustment_lp(feeder, open_set, current, ranges, margin_pu)
        current = {mg: (current[mg][0] + delta.get(mg, 0.0), current[mg][1]) for mg in current}
        margin_pu *= 1.5  # linearisation error: aim a little further inside each round
    if check_security(feeder, open_set, current).secure:
        return current
    raise OpfNumericalFailure(
        f"successive linearisation did not reach an AC-secure point in {max_rounds} rounds"
    )


def _adjustment_lp(
    feeder: Feeder,
    open_set: tuple[int, ...],
    current: dict[str, tuple[float, float]],
    ranges: Mapping[str, MgRange],
    margin: float,
) -> dict[str, float]:
    mgs = sorted(current)
    base = _flow(feeder, open_set, current)
    step = 0.01  # MW
    sens_v, sens_i = [], []
    for mg in mgs:
        bumped = dict(current)
        bumped[mg] = (current[mg][0] + step, current[mg][1])
        pf = _flow(feeder, open_set, bumped)
        sens_v.append((pf.vm_pu - base.vm_pu) / step)
        sens_i.append((pf.loading - base.loading) / step)
    sv, si = np.array(sens_v).T, np.array(sens_i).T  # (bus, mg), (branch, mg)
    buses = [int(i) for i in np.flatnonzero(base.energised)]
    branches = [
        k
        for k in range(len(feeder.branches))
        if base.loading[k] > 0.5 and math.isfinite(feeder.branches[k].rating_mva)
    ]
    rows: list[
        tuple[str, np.ndarray, float, str]
    ] = []  # (name, coeffs, rhs, sense) meaning coeffs·Δ sense rhs
    for i in buses:
        name = f"bus {feeder.bus_ids[i]}"
        rows.append(
            (f"{name} voltage >= {feeder.vmin_pu}", sv[i], feeder.vmin_pu + margin - base.vm_pu[i], ">=")
        )
        rows.append(
            (f"{name} voltage <= {feeder.vmax_pu}", sv[i], feeder.vmax_pu - margin - base.vm_pu[i], "<=")
        )
    for k in branches:
        rows.append((f"branch {k + 1} loading <= 100%", si[k], 1.0 - margin - base.loading[k], "<="))
    m = pyo.ConcreteModel()
    m.M = pyo.Set(initialize=mgs)
    lo = {mg: ranges[mg].p_min_mw - current[mg][0] if mg in ranges else 0.0 for mg in mgs}
    hi = {mg: ranges[mg].p_max_mw - current[mg][0] if mg in ranges else 0.0 for mg in mgs}
    m.up = pyo.Var(m.M, bounds=lambda _, mg: (0, max(0.0, hi[mg])))
    m.down = pyo.Var(m.M, bounds=lambda _, mg: (0, max(0.0, -lo[mg])))
    m.slack = pyo.Var(range(len(rows)), domain=pyo.NonNegativeReals)
    m.c = pyo.ConstraintList()
    for r, (_, coeff, rhs, sense) in enumerate(rows):
        expr = sum(float(coeff[j]) * (m.up[mg] - m.down[mg]) for j, mg in enumerate(mgs))
        m.c.add(expr + m.slack[r] >= rhs if sense == ">=" else expr - m.slack[r] <= rhs)
    # Elastic LP: slacks cost far more than any adjustment, so they are zero whenever a secure point exists.
    m.obj = pyo.Objective(expr=sum(m.up[mg] + m.down[mg] for mg in mgs) + 1e4 * sum(m.slack.values()))
    silence_highs_banner()
    solver = Highs()
    solver.config.load_solution = False
    # HiGHS builds one task scheduler per thread on its first run and then refuses a run asking for another
    # thread count: the reconfiguration MILP in this same process runs with threads=1, so this LP does too
    # (with the default count, every later reconfiguration failed with "stopped without a solution")
    solver.highs_options = {"threads": 1}
    result = solver.solve(m)
    if result.termination_condition != TerminationCondition.optimal:
        raise OpfNumericalFailure(f"adjustment LP ended {result.termination_condition.name}")
    result.solution_loader.load_vars()
    unmet = [rows[r][0] for r in range(len(rows)) if pyo.value(m.slack[r]) > 1e-7]
    if unmet:
        raise SecurityInfeasible(unmet)
    return {mg: pyo.value(m.up[mg]) - pyo.value(m.down[mg]) for mg in mgs}


@dataclass(frozen=True)
class AdjustmentContract:
    mg: str
    interval: int
    min_injection_mw: float | None
    max_injection_mw: float | None
    reason: str

    def body(self) -> dict[str, Any]:
        return {
            "mg": self.mg,
            "interval": self.interval,
            "min_injection_w": None if self.min_injection_mw is None else round(self.min_injection_mw * 1e6),
            "max_injection_w": None if self.max_injection_mw is None else round(self.max_injection_mw * 1e6),
            "reason": self.reason,
        }


def contracts_for(
    interval: int, before: Injections, after: Injections, reason: str, tolerance_mw: float = 1e-4
) -> list[AdjustmentContract]:
    out = []
    for mg in sorted(after):
        d = after[mg][0] - before[mg][0]
        if d < -tolerance_mw:
            out.append(AdjustmentContract(mg, interval, None, after[mg][0], reason))
        elif d > tolerance_mw:
            out.append(AdjustmentContract(mg, interval, after[mg][0], None, reason))
    return out


def learn_reach(
    reach: Mapping[str, MgRange],
    contracts: Sequence[AdjustmentContract],
    revised: Injections,
    tolerance_mw: float = 1e-3,
) -> dict[str, MgRange]:
    """What each MG has shown it can reach: one that answered its contract with less than it was asked (its
    re-bargained, re-planned injection short of the limit, or no answer) can go no further that way, so its
    range ends at its answer on that side and the next iteration asks the others."""
    out = dict(reach)
    for contract in contracts:
        p = revised[contract.mg][0]
        known = out.get(contract.mg, MgRange(-math.inf, math.inf))
        if contract.min_injection_mw is not None and p < contract.min_injection_mw - tolerance_mw:
            known = MgRange(known.p_min_mw, min(known.p_max_mw, p))
        if contract.max_injection_mw is not None and p > contract.max_injection_mw + tolerance_mw:
            known = MgRange(max(known.p_min_mw, p), known.p_max_mw)
        out[contract.mg] = known
    return out


def flexible_ranges(
    injections: Injections, flexibility_mw: float, reach: Mapping[str, MgRange]
) -> dict[str, MgRange]:
    """Each MG's range for the adjustment: its injection ± `flexibility_mw`, cut to its known reach (never
    excluding the injection itself)."""
    out = {}
    for mg, (p, _) in injections.items():
        known = reach.get(mg, MgRange(-math.inf, math.inf))
        lo = min(p, max(p - flexibility_mw, known.p_min_mw))
        hi = max(p, min(p + flexibility_mw, known.p_max_mw))
        out[mg] = MgRange(lo, hi)
    return out


@dataclass(frozen=True)
class LoopResult:
    secure: bool
    iterations: int
    injections: dict[str, tuple[float, float]]
    contracts: tuple[AdjustmentContract, ...]
    unmet: str | None
    imbalance_mw: float  # MGs' net injection: positive = the DSO buys it
    imbalance_cost: float  # money to the MGs (negative: paid by them), at the wholesale price


@dataclass
class SecurityLoop:
    feeder: Feeder
    open_set: tuple[int, ...]
    ranges: Mapping[str, MgRange]
    mg_keys: Mapping[str, bytes]
    recorder: Any  # ChainRecorder: .adjustment(to_key, interval, body)
    rebargain: Callable[
        [list[AdjustmentContract], dict[str, tuple[float, float]]], dict[str, tuple[float, float]]
    ]
    wholesale_price: float = 50.0  # per MWh
    interval_hours: float = 0.25
    max_iterations: int = 5
    sent: list[AdjustmentContract] = field(default_factory=list)

    def run(self, interval: int, injections: Injections) -> LoopResult:
        current = dict(injections)
        for iteration in range(1, self.max_iterations + 1):
            check = check_security(self.feeder, self.open_set, current)
            if check.secure:
                return self._done(True, iteration, current, None)
            try:
                target = minimal_adjustment(self.feeder, self.open_set, current, self.ranges)
            except SecurityInfeasible as exc:
                return self._done(False, iteration, current, str(exc))
            contracts = contracts_for(interval, current, target, reason=str(check.violations[0]))
            for c in contracts:
                self.recorder.adjustment(self.mg_keys[c.mg], interval, c.body())
            self.sent += contracts
            current = dict(self.rebargain(contracts, current))
        check = check_security(self.feeder, self.open_set, current)
        unmet = (
            None
            if check.secure
            else f"after {self.max_iterations} iterations still violated: {check.violations[0]}"
        )
        return self._done(check.secure, self.max_iterations, current, unmet)

    def _done(self, secure: bool, iterations: int, current: Injections, unmet: str | None) -> LoopResult:
        imbalance = sum(p for p, _ in current.values())
        return LoopResult(
            secure, iterations, dict(current), tuple(self.sent), unmet, imbalance,
            imbalance * self.interval_hours * self.wholesale_price,
        )  # fmt: skip
