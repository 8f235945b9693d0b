"""The MG's offer curve when the interval's trade may also change its genset commitment.

Promises: `Options.build` gives the MG's planned schedule and, when it has gensets whose minimum up and down
times are one interval, the alternative that starts them now (or stops them now) and then follows the plan. `curve()` is
the upper envelope of the two payoffs as the P2P price moves (at each price the commitment that costs less),
so a genset start-up the P2P price would pay for shows up in the offer, and a start-up it would not pay for
does not. `choose(net_kw)` is the schedule that meets the agreed trade at less cost; its commitment is what
the MG then follows. The envelope of two convex payoffs is convex, so the curve is still non-decreasing.
Assumes the planned schedule has been solved. Never reads clocks or I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from peergrid_controller.builder import MgState
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.model import Microgrid
from peergrid_controller.schedule import MgSchedule, ScheduleError

GRID = 0.0001  # price resolution of the envelope (a tenth of the chain's tick)


def flipped(
    mg: Microgrid, state: MgState, plan: Sequence[Sequence[bool]]
) -> tuple[tuple[bool, ...], ...] | None:
    """The planned commitment with every genset's state flipped for its minimum up/down time from now,
    or None when the genset's own history forbids it (it must stay on or off a while longer)."""
    out = []
    for g, on, was_on, in_state in zip(
        mg.gensets, plan, state.genset_on, state.genset_intervals_in_state, strict=True
    ):
        now = not on[0]
        if now and not was_on and in_state < g.min_down_intervals:
            return None
        if not now and was_on and in_state < g.min_up_intervals:
            return None
        span = g.min_up_intervals if now else g.min_down_intervals
        out.append(tuple(now if k < span else on[k] for k in range(len(on))))
    return tuple(out)


def envelope(
    a: ResponseCurve, cost_a: float, b: ResponseCurve, cost_b: float, lo: float, hi: float
) -> tuple[ResponseCurve, Callable[[float], bool]]:
    """Curve of the cheaper option at each price, and a predicate `uses_b(price)`.

    cost_x is the option's cost at price `lo`; it falls by the kWh exported per unit of price."""
    steps = max(1, math.ceil((hi - lo) / GRID))
    prices: list[float] = []
    quantities: list[float] = []
    choice: list[tuple[float, bool]] = []
    ca, cb = cost_a, cost_b
    p = lo
    for k in range(steps + 1):
        qa, qb = a.at(p), b.at(p)
        use_b = cb < ca - 1e-9
        q = qb if use_b else qa
        if not quantities or q > quantities[-1] + 1e-6:
            prices.append(round(p, 6))
            quantities.append(max(q, quantities[-1]) if quantities else q)
        if not choice or choice[-1][1] != use_b:
            choice.append((p, use_b))
        nxt = min(lo + (k + 1) * GRID, hi)
        ca -= qa * (nxt - p)
        cb -= qb * (nxt - p)
        p = nxt
        if p >= hi and k >= steps - 1:
            break

    def uses_b(price: float) -> bool:
        current = False
        for start, flag in choice:
            if price + 1e-12 >= start:
                current = flag
        return current

    return ResponseCurve(tuple(prices), tuple(quantities), upper=hi), uses_b


@dataclass
class Options:
    plan: MgSchedule
    alternative: MgSchedule | None

    @classmethod
    def build(
        cls,
        mg: Microgrid,
        interval_hours: float,
        start: int,
        state: MgState,
        planned: MgSchedule,
        p2p_prices: Sequence[float] | None,
    ) -> Options:
        if not mg.gensets or any(max(g.min_up_intervals, g.min_down_intervals) > 1 for g in mg.gensets):
            # a start (stop) that binds later intervals is decided on forecasts by the plan's MILP, not by
            # this interval's price alone (measured: letting one interval's price start a genset for an hour
            # of 15-min intervals lost welfare whenever the next intervals' prices fell short of the forecast)
            return cls(planned, None)
        alt_commitment = flipped(mg, state, planned.commitment())
        if alt_commitment is None:
            return cls(planned, None)
        alt = MgSchedule(
            mg,
            interval_hours,
            start=start,
            horizon=mg.intervals - start,
            state=state,
            commitment=alt_commitment,
            p2p_prices=p2p_prices,
        )
        try:
            alt.solve()
        except ScheduleError:
            return cls(planned, None)  # the flip breaks a ramp or a limit: no alternative this interval
        return cls(planned, alt)

    def curve(self, lo: float, hi: float, limit_kw: float) -> ResponseCurve:
        base = self.plan.response_curve(lo, hi, limit_kw)
        if self.alternative is None:
            return base
        cost_a = self.plan.cost_at(lo, limit_kw)
        alt = self.alternative.response_curve(lo, hi, limit_kw)
        cost_b = self.alternative.cost_at(lo, limit_kw)
        merged, _ = envelope(base, cost_a, alt, cost_b, lo, hi)
        return merged

    def choose(self, net_kw: float) -> MgSchedule:
        """Dispatch the agreed trade on both options; keep (and return) the cheaper one that can meet it."""
        try:
            first = self.plan.dispatch(net_kw)
        except ScheduleError:
            if self.alternative is None:
                raise
            self.alternative.dispatch(net_kw)  # the trade needs the other commitment (raises if neither)
            return self.alternative
        if self.alternative is None:
            return self.plan
        try:
            second = self.alternative.dispatch(net_kw)
        except ScheduleError:
            return self.plan
        return self.alternative if second.cost < first.cost - 1e-9 else self.plan
