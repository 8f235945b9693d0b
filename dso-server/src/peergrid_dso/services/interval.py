"""The DSO's part of one trading interval, given the MGs' equivalent injections: check, reconfigure, adjust.

Promises: `IntervalPlanner.analyse(t, injections)` runs the AC check on the current topology, a loss-minimising
reconfiguration when it is due or the network is insecure (adopted only when it is secure and saves more
than `min_gain_kw`), and — if the chosen topology is still insecure — the least adjustment of MG injections
(`security.minimal_adjustment`) as per-MG adjustment contracts; `adjust` repeats that last step for the
re-bargained injections of a later iteration, within what each MG has shown it can reach. `switching_plan` turns the adopted topology
into a make-before-break plan checked state by state. Voltage profiles before and after are kept for the
report. Synchronous and CPU-bound (power flows, a MILP): the caller runs it off its event loop. No I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.interval_resume import plan_id
from peergrid_dso.services.powerflow import ac_power_flow, closed_mask, net_injection_mw
from peergrid_dso.services.reconfiguration import reconfigure
from peergrid_dso.services.security import (
    AdjustmentContract,
    MgRange,
    OpfNumericalFailure,
    SecurityInfeasible,
    check_security,
    contracts_for,
    flexible_ranges,
    minimal_adjustment,
)
from peergrid_dso.services.switching import SwitchingPlan, plan_switching

Injections = Mapping[str, tuple[float, float]]


def profile(feeder: Feeder, open_set: tuple[int, ...], injections: Injections) -> dict[str, Any]:
    """Voltages (pu, bus order), loadings and losses of one topology by AC power flow."""
    p, q = net_injection_mw(feeder, injections)
    pf = ac_power_flow(feeder, closed_mask(feeder, open_set), p, q)
    check = check_security(feeder, open_set, injections)
    return {
        "open": list(open_set),
        "voltages": [round(float(v), 5) for v in pf.vm_pu],
        "vmin_pu": round(check.vmin_pu, 5),
        "vmax_pu": round(check.vmax_pu, 5),
        "max_loading": round(check.max_loading, 4),
        "losses_kw": round(check.losses_kw, 3),
        "violations": [str(v) for v in check.violations],
    }


@dataclass
class Analysis:
    interval: int
    before: dict[str, Any]
    target_open: tuple[int, ...]
    reconfiguration: dict[str, Any] | None
    contracts: list[AdjustmentContract]
    adjusted: dict[str, tuple[float, float]]
    unmet: str | None
    seconds: float


@dataclass
class IntervalPlanner:
    feeder: Feeder
    open_set: tuple[int, ...]
    reconfigure_every: int = 4
    min_gain_kw: float = 1.0
    flexibility_mw: float = 0.3  # how far the DSO assumes an MG can move its injection within one interval
    reconfigure_when_insecure: bool = (
        True  # False: only adjustments answer a violation (tests, operator choice)
    )
    history: list[Analysis] = field(default_factory=list)

    def analyse(self, t: int, injections: Injections) -> Analysis:
        started = time.perf_counter()
        before = profile(self.feeder, self.open_set, injections)
        target = self.open_set
        reconf: dict[str, Any] | None = None
        due = self.reconfigure_every > 0 and t % self.reconfigure_every == 0
        if due or (before["violations"] and self.reconfigure_when_insecure):
            p, q = net_injection_mw(self.feeder, injections)
            try:
                result = reconfigure(self.feeder, p_inj_mw=p, q_inj_mvar=q, time_limit_s=20.0)
                reconf = {
                    "open": list(result.open_branches),
                    "losses_kw": round(result.losses_kw, 3),
                    "vmin_pu": round(result.vmin_pu, 5),
                    "seconds": round(result.seconds, 3),
                }
                candidate = tuple(sorted(result.open_branches))
                secure = check_security(self.feeder, candidate, injections).secure
                gain = before["losses_kw"] - result.losses_kw
                if (
                    candidate != tuple(sorted(self.open_set))
                    and secure
                    and (gain > self.min_gain_kw or before["violations"])
                ):
                    target = candidate
            except Exception as exc:  # an infeasible or failed MILP keeps the topology; say why
                reconf = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        contracts, adjusted, unmet = self.adjust(t, target, injections)
        analysis = Analysis(
            t, before, target, reconf, contracts, dict(adjusted), unmet, time.perf_counter() - started
        )
        self.history.append(analysis)
        del self.history[:-8]
        return analysis

    def adjust(
        self,
        t: int,
        target: tuple[int, ...],
        injections: Injections,
        reach: Mapping[str, MgRange] | None = None,
    ) -> tuple[list[AdjustmentContract], dict[str, tuple[float, float]], str | None]:
        """The least adjustment on topology `target`: (contracts, adjusted injections, unmet constraint or None).
        No contracts and no unmet constraint: secure as it is. Each MG may move `flexibility_mw` either way,
        within what it has shown it can reach (`reach`, from its answers to earlier contracts: `learn_reach`)."""
        if check_security(self.feeder, target, injections).secure:
            return [], dict(injections), None
        ranges = flexible_ranges(injections, self.flexibility_mw, reach or {})
        try:
            adjusted = minimal_adjustment(self.feeder, target, injections, ranges)
        except (SecurityInfeasible, OpfNumericalFailure) as exc:
            return [], dict(injections), str(exc)[:300]
        reason = profile(self.feeder, target, injections)["violations"][0]
        return contracts_for(t, injections, adjusted, reason), adjusted, None

    def switching_plan(self, t: int, target: tuple[int, ...], injections: Injections) -> SwitchingPlan | None:
        if tuple(sorted(target)) == tuple(sorted(self.open_set)):
            return None
        p, q = net_injection_mw(self.feeder, injections)
        return plan_switching(
            self.feeder, self.open_set, target, plan_id=plan_id(t), interval=t, p_inj_mw=p, q_inj_mvar=q
        )
