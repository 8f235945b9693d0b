"""Re-bargaining within a DSO adjustment contract (design step 6): the MG's price–quantity curve with its
equivalent injection held within the DSO's limit.

Promises: `curve_within(schedule, min_kw, max_kw, lo_price, hi_price, planned_kw)` returns a `LimitedCurve`:
the MG's P2P response curve (kWh in the first interval, as `MgSchedule.response_curve`) on [lo_price,
hi_price] where every plan behind each point keeps the injection (P2P plus DSO net export, kW) within [min,
max]. P2P trades are free in those plans, so a limit its agreed trades blocked (a DSO export or import cap
beside a trade it must deliver or take) can be reached by trading differently; the bargaining on the chain
then finds the trades, and `adjustment.meet` plans the dispatch with them fixed. When not even free trades
reach the limit, the curve holds the nearest reachable bound instead (`met` false and a `reason` naming the
limit and that bound) — never a curve that pretends. Assumes `schedule` has been solved. No clocks, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from peergrid_controller.adjustment import bound_one_side, feasible_within, limits, nearest_reachable
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.lp import INF
from peergrid_controller.schedule import MgSchedule, ScheduleError


@dataclass(frozen=True)
class LimitedCurve:
    curve: ResponseCurve
    min_kw: float  # the injection bounds the curve holds: the contract's, or the nearest reachable one
    max_kw: float
    met: bool  # the contract's limit itself is held
    reason: str  # empty when met


def curve_within(
    schedule: MgSchedule,
    min_kw: float | None,
    max_kw: float | None,
    lo_price: float,
    hi_price: float,
    planned_kw: float,
    limit_kw: float = INF,
    precision_kw: float = 0.01,
) -> LimitedCurve:
    """`planned_kw`: the injection the MG planned with its current trades (a bound it can surely hold)."""
    lo, hi = limits(min_kw, max_kw)
    probe = (lo_price + hi_price) / 2

    def trade_freely() -> float:  # feasibility with P2P free does not depend on the price: one probe
        return schedule.price_response(probe, limit_kw)

    schedule.bound_injection(lo, hi)
    try:
        trade_freely()
    except ScheduleError:
        too_high = planned_kw > hi
        limit = hi if too_high else lo
        reachable = nearest_reachable(
            lambda bound: feasible_within(schedule, too_high, bound, trade_freely),
            planned_kw,
            limit,
            precision_kw,
        )
        bound_one_side(schedule, too_high, reachable)
        side, nearest = ("at most", "least") if too_high else ("at least", "most")
        reason = (
            f"cannot inject {side} {limit:.2f} kW even with its P2P trades re-bargained: the {nearest} it can "
            f"inject is {reachable:.2f} kW; it bargains within that"
        )
        lo, hi = (-math.inf, reachable) if too_high else (reachable, math.inf)
        return LimitedCurve(schedule.response_curve(lo_price, hi_price, limit_kw), lo, hi, False, reason)
    return LimitedCurve(schedule.response_curve(lo_price, hi_price, limit_kw), lo, hi, True, "")
