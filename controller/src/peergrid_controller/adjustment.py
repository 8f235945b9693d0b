"""Meeting a DSO adjustment contract: can the MG hold its equivalent injection within the DSO's limits?

Promises: `meet(schedule, p2p_net_kw, min_kw, max_kw)` re-plans the interval with its agreed P2P trades fixed
and the injection (P2P plus DSO net export, kW) bounded. When the limit can be met it returns that plan
(`met` true: PV curtailed, load shed, batteries and genset moved as the MG's costs say). When it cannot, it
returns the plan closest to the limit (bisection on the bound, to `precision_kw`) with `met` false and a
`reason` that names the limit, the nearest injection it can reach and why — never a plan that pretends.
Its answer depends only on the schedule's model, the trades and the limit, never on what was solved on the
schedule before: meeting the same limit again (the trader does at each iteration of the DSO's loop) gives the
same plan to the last digit, and an MG's schedule without trades meets a limit as the conventional
counterfactual's of the same MG and state does. Assumes `schedule` has been solved. Never reads clocks or I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from peergrid_controller.schedule import MgSchedule, Plan, ScheduleError


@dataclass(frozen=True)
class Adjustment:
    plan: Plan
    injection_kw: float
    met: bool
    reason: str  # empty when met


def injection(plan: Plan) -> float:
    return plan.p2p_net_export[0] + plan.dso_net_export[0]


def nearest_reachable(
    feasible: Callable[[float], bool], reachable: float, limit: float, precision_kw: float
) -> float:
    """Bisection between an injection bound known to have a plan (`reachable`) and one without (`limit`):
    the bound nearest the limit that still has one, to `precision_kw`."""
    unreachable = limit
    while abs(reachable - unreachable) > precision_kw:
        mid = (reachable + unreachable) / 2
        if feasible(mid):
            reachable = mid
        else:
            unreachable = mid
    return reachable


def bound_one_side(schedule: MgSchedule, too_high: bool, bound: float) -> None:
    if too_high:
        schedule.bound_injection(-math.inf, bound)
    else:
        schedule.bound_injection(bound, math.inf)


def feasible_within(schedule: MgSchedule, too_high: bool, bound: float, solve: Callable[[], object]) -> bool:
    bound_one_side(schedule, too_high, bound)
    try:
        solve()
        return True
    except ScheduleError:
        return False


def limits(min_kw: float | None, max_kw: float | None) -> tuple[float, float]:
    """A contract's injection limits as a closed range (a missing side is unbounded); crossed limits are an error."""
    lo = -math.inf if min_kw is None else min_kw
    hi = math.inf if max_kw is None else max_kw
    if lo > hi:
        raise ValueError(f"adjustment limits are crossed: min {lo} kW > max {hi} kW")
    return lo, hi


def meet(
    schedule: MgSchedule,
    p2p_net_kw: float,
    min_kw: float | None,
    max_kw: float | None,
    precision_kw: float = 0.01,
) -> Adjustment:
    lo, hi = limits(min_kw, max_kw)
    schedule.bound_injection(-math.inf, math.inf)
    # solved from scratch, not warm from the schedule's last solve: the unbounded plan may be one of several
    # equally cheap ones (a battery indifferent between importing now or later at the same retail price), a
    # warm re-solve picks one by what was solved before (the guard's dispatch, the re-bargaining curve, an
    # earlier meet), and the search below starts from its injection, so it ended elsewhere within
    # `precision_kw`, where a few more watts cost shed load (D3: mg5 met 83.5436 kW at 13.657461 on a fresh
    # schedule, 83.5487 kW at 13.658669 on the trader's, in a lab without trades). A cold solve of an ieee33
    # MG's day takes 1-10 ms
    schedule.highs().clearSolver()
    free = schedule.dispatch(p2p_net_kw)
    planned = injection(free)
    schedule.bound_injection(lo, hi)
    try:
        plan = schedule.dispatch(p2p_net_kw)
        return Adjustment(plan, injection(plan), True, "")
    except ScheduleError:
        pass
    # the limit is out of reach: find the nearest bound that still has a plan, between the limit and the plan
    too_high = planned > hi
    reachable = nearest_reachable(
        lambda bound: feasible_within(schedule, too_high, bound, lambda: schedule.dispatch(p2p_net_kw)),
        planned,
        hi if too_high else lo,
        precision_kw,
    )
    bound_one_side(schedule, too_high, reachable)
    plan = schedule.dispatch(p2p_net_kw)
    limit = hi if too_high else lo
    side = "at most" if too_high else "at least"
    nearest = "least" if too_high else "most"
    how = (
        "every kW of PV curtailed and storage charging as far as it can"
        if too_high
        else "sheddable load shed, storage and gensets at their limits"
    )
    reason = (
        f"cannot inject {side} {limit:.2f} kW with its agreed P2P trades ({p2p_net_kw:+.2f} kW): the {nearest} "
        f"it can inject is {injection(plan):.2f} kW ({how}); it offers that instead"
    )
    return Adjustment(plan, injection(plan), False, reason)
