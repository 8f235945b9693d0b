"""Individual rationality over the day: an MGMC never ends worse off than trading with the DSO alone.

Promises: `Guarded` holds an MG's conventional alternative for the interval (the rest of its day with the DSO
only, same commitment) and its budget (its conventional day cost minus what it has paid so far, P2P payments
included). `curve(planned)` trades only within what that alternative would trade at each price (curve.guarded),
so every agreed trade is worth at least nothing against it. `dispatch(optimistic, net_kw, money)` follows the
forecast-leaning plan only when that plan's interval cost plus the conventional value of the state it leaves
fits the budget; otherwise it dispatches the conventional alternative with the agreed trade. By induction the
budget never goes negative, so the MG's day cost is at most its conventional day cost (up to solver
tolerance), whatever the forecast turns out to be. Assumes the conventional day cost comes from the same model
(baselines.conventional). The induction is exact for MGs without gensets; with a genset the alternative keeps
the plan's commitment, which need not be the conventional optimum's, so there it is checked (tests, bench:
no MG worse off), not proven. Never reads clocks or I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from peergrid_controller.builder import MgState
from peergrid_controller.commitment import Options
from peergrid_controller.curve import ResponseCurve, guarded
from peergrid_controller.model import Microgrid
from peergrid_controller.schedule import MgSchedule

SLACK = 1e-6  # money: solver tolerance, never a licence to lose


@dataclass
class Guarded:
    mg: Microgrid
    interval_hours: float
    start: int
    state: MgState
    alone: Options
    value: float  # the conventional alternative's cost over the rest of the day from `state`

    @classmethod
    def build(
        cls, mg: Microgrid, dt: float, start: int, state: MgState, commitment: Sequence[Sequence[bool]]
    ) -> Guarded:
        alone = MgSchedule(
            mg, dt, start=start, horizon=mg.intervals - start, state=state, commitment=commitment
        )
        value = alone.solve().cost
        return cls(mg, dt, start, state, Options.build(mg, dt, start, state, alone, None), value)

    def curve(self, planned: ResponseCurve, lo: float, hi: float, limit_kw: float) -> ResponseCurve:
        return guarded(planned, self.alone.curve(lo, hi, limit_kw))

    def dispatch(
        self, optimistic: Options, net_kw: float, money: float, budget: float
    ) -> tuple[MgSchedule, float, MgState]:
        """The schedule to follow, its interval cost and the state it leaves (budget: what the MG may still
        spend this day and stay within its conventional cost)."""
        sched = optimistic.choose(net_kw)
        cost, state = sched.first_interval_cost_and_state()
        if cost - money + self._value_after(sched, state) <= budget + SLACK:
            return sched, cost, state
        sched = self.alone.choose(net_kw)
        cost, state = sched.first_interval_cost_and_state()
        return sched, cost, state

    def _value_after(self, sched: MgSchedule, state: MgState) -> float:
        nxt = self.start + 1
        if nxt >= self.mg.intervals:
            return 0.0
        rest = tuple(on[1:] for on in sched.commitment())
        after = MgSchedule(self.mg, self.interval_hours, start=nxt, state=state, commitment=rest)
        return after.solve().cost
