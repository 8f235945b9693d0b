"""Individual rationality over the day: an MGMC never ends worse off than trading with the DSO alone.

Promises: `Guarded` holds an MG's conventional alternative for the interval (the rest of its day with the DSO
only, same commitment) and its cost from here, `value`. Its *budget* is its conventional day cost minus what it
has paid so far (P2P payments included): what it may still spend and end no worse off.
- `curve(planned, ..., budget)` ("strict", the default): trades only what fits the budget, judged on the MG's
  realised day (curve.budgeted): a trade of q at price p is allowed when the interval with q traded plus the
  rest of the day with the DSO alone costs at most the budget. At the start of the day that already allows
  more than the conventional alternative would trade (the surplus of the first kWh pays for the last); as the
  MG saves, it may lean further on its plan.
- `per_trade_curve(planned, ...)` ("trades"): only what the conventional alternative itself would trade at that
  price (curve.guarded): each trade worth at least nothing on its own, the budget never used.
- `dispatch(optimistic, net_kw, money, budget)` follows the forecast-leaning plan when its interval cost plus
  the conventional value of the state it leaves fits the budget; otherwise it dispatches the conventional
  alternative with the agreed trade, which fits by the curve's construction.
By induction the budget never falls below the conventional value of where the MG stands, so its day cost is
at most its conventional day cost (up to solver tolerance), whatever the forecast turns out to be. Assumes the
conventional day cost comes from the same model (baselines.conventional) and that agreed trades stay within
the curve (moves.make_bid asks no more than the curve demands at the level's price; sellers offer no more
than it supplies). The induction is exact for MGs without gensets; with a genset the alternative keeps the
plan's commitment, which need not be the conventional optimum's, so there it is checked (tests, bench: no MG
worse off), not proven. Never reads clocks or I/O.

The budget may start above the conventional day cost by the owner's *risk allowance* X (simulate.py; per MG,
`SimulationConfig.risk_allowance` / `mg_risk_allowance`, the scenario file's `market.risk_allowance` /
`mg_risk_allowance`, `peergrid-market simulate --risk-allowance`): the same induction then bounds the day cost
by the conventional one plus X, whatever the peers do (tests/controller/test_ctl_allowance.py plays peers that
vanish, test_ctl_risk_cli.py the same through the CLI). Why not a finer rule instead: at
the start of the day every MG's budget equals the DSO-only value of where it stands, and that value is the
least any dispatch can leave (the conventional optimum from here), so any step the plan takes away from it
with no trade to pay for it (a battery charged for a peer's later purchase, a morning sale of stored energy
the evening needs, a genset stopped at midday that must restart for the evening) exceeds the budget by what
that step risks, exactly: `value` and `_value_after` are the LP (MILP) optimum, not a bound. The strict loss
is that risk, refused until the MG's own savings cover it (docs/market.md, measured per MG and interval).

A clean premium is charged to the budget as what the owner values it at, not as money lost: a buyer's curve
is consulted at a clean offer's price less its owner's premium (moves.make_bid), so the guard allowed that
purchase at that value, and `premium_paid` gives what each buyer paid above it (premium times the clean kWh
bought), which simulate.py credits back to the budget. Charged at the full price, the premium itself broke
the budget: a buyer that paid 1.07 in premium was then held below standing still and shut out of every
later trade (U5 F5). The guarantee with premiums is therefore: no MG ends worse off than its conventional
day plus the premiums its owner chose to pay (plus its risk allowance). Without a premium nothing changes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from peergrid_controller.builder import MgState
from peergrid_controller.commitment import Options
from peergrid_controller.curve import ResponseCurve, budgeted, guarded
from peergrid_controller.market import PRICE_TICK, Trade
from peergrid_controller.model import Microgrid
from peergrid_controller.schedule import MgSchedule

SLACK = 1e-6  # money: solver tolerance, never a licence to lose


def premium_paid(
    premiums: Mapping[str, float], clean: Collection[str], trades: Sequence[Trade]
) -> dict[str, float]:
    """What each buyer's owner paid in clean premium on `trades`: its premium (`premiums`, by MG) on every kWh
    bought from a seller in `clean`, the part of the price its curve did not judge (an offer's effective price
    is its price minus the premium, moves.make_bid). Only buyers that paid some are named."""
    paid: dict[str, float] = {}
    for t in trades:
        premium = premiums.get(t.buyer, 0.0)
        if premium > 0.0 and t.seller in clean:
            paid[t.buyer] = paid.get(t.buyer, 0.0) + premium * t.quantity_kwh
    return paid


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
        cls,
        mg: Microgrid,
        dt: float,
        start: int,
        state: MgState,
        commitment: Sequence[Sequence[bool]] | None = None,
    ) -> Guarded:
        """`commitment`: the genset on/off the alternative keeps; None (the default) re-commits it (a MILP),
        so `value` is the conventional optimum from `state`, not an upper bound on it."""
        alone = MgSchedule(
            mg, dt, start=start, horizon=mg.intervals - start, state=state, commitment=commitment
        )
        value = alone.solve().cost
        return cls(mg, dt, start, state, Options.build(mg, dt, start, state, alone, None), value)

    @classmethod
    def fallback(
        cls,
        mg: Microgrid,
        dt: float,
        start: int,
        state: MgState,
        commitment: Sequence[Sequence[bool]],
        budget: float,
    ) -> Guarded:
        """The alternative the budget guard falls back on: with a genset, the plan's commitment when the DSO-only
        day with it still fits the budget (selling the genset's output then costs what the genset costs), else
        the conventional optimum from here (a MILP), which fits whenever the guard has held so far."""
        if mg.gensets:
            kept = cls.build(mg, dt, start, state, commitment)
            if kept.value <= budget + SLACK:
                return kept
        return cls.build(mg, dt, start, state)

    def per_trade_curve(self, planned: ResponseCurve, lo: float, hi: float, limit_kw: float) -> ResponseCurve:
        return guarded(planned, self.alone.curve(lo, hi, limit_kw))

    def curve(
        self, planned: ResponseCurve, lo: float, hi: float, limit_kw: float, budget: float
    ) -> ResponseCurve:
        """`planned` within the budget at every price of the market's tick grid on [lo, hi]."""
        # the fallback's F(q) must be known for every q the plan may trade: traced from price 0 (what it
        # would take even for free bounds what it can absorb) to well above any value energy has for it
        # (retail, its loads' VoLL), so that with savings in hand it may sell what the DSO-only day would keep.
        # Its own commitment only: the genset option's envelope would be the convex hull of two costs, which
        # can undercut both.
        dearest = max(max(self.mg.tariff.retail), *(ld.voll for ld in self.mg.loads), hi)
        fallback = self.alone.plan.response_curve(0.0, 2 * dearest, limit_kw)
        ticks = [round(lo + k * PRICE_TICK, 6) for k in range(round((hi - lo) / PRICE_TICK) + 1)]
        return budgeted(planned, fallback, self.value, budget - SLACK, ticks)

    def dispatch(
        self, optimistic: Options, net_kw: float, money: float, budget: float
    ) -> tuple[MgSchedule, float, MgState]:
        """The schedule to follow, its interval cost and the state it leaves (budget: what the MG may still
        spend this day and stay within its conventional cost).

        When the forecast-leaning plan does not fit, an MG without a genset takes the largest share of it
        that does: both dispatches meet the same trade from the same state, so any mix of the two is a
        dispatch too, its interval cost mixes linearly and the DSO-only value of the state it leaves is
        convex in the stored energy (an LP's value in its right-hand side), so at most the mix of the two
        values. A genset's on/off cannot be mixed: it takes the conventional alternative whole."""
        sched = optimistic.choose(net_kw)
        cost, state = sched.first_interval_cost_and_state()
        planned = cost - money + self._value_after(sched, state, budget - cost + money)
        if planned <= budget + SLACK:
            return sched, cost, state
        alone = self.alone.choose(net_kw)
        alone_cost, alone_state = alone.first_interval_cost_and_state()
        if self.mg.gensets:
            return alone, alone_cost, alone_state
        # the alternative's dispatch objective is its interval cost plus the rest of its day from its state
        fallback = alone.last_dispatch_cost() - money
        share = (budget - fallback) / (planned - fallback) if planned > fallback + 1e-12 else 0.0
        share = min(max(share, 0.0), 1.0)
        if share <= 0.0:
            return alone, alone_cost, alone_state
        mixed = MgState(
            soc_kwh=tuple(
                share * a + (1 - share) * b for a, b in zip(state.soc_kwh, alone_state.soc_kwh, strict=True)
            ),
            genset_on=(),
            genset_kw=(),
            genset_intervals_in_state=(),
        )
        return alone, share * cost + (1 - share) * alone_cost, mixed

    def _value_after(self, sched: MgSchedule, state: MgState, budget_left: float) -> float:
        """The conventional value of `state` from the next interval on; with a genset first with the plan's
        commitment kept (an upper bound, an LP), and only when that does not fit, re-committed (a MILP)."""
        nxt = self.start + 1
        if nxt >= self.mg.intervals:
            return 0.0
        rest = tuple(on[1:] for on in sched.commitment())
        after = MgSchedule(self.mg, self.interval_hours, start=nxt, state=state, commitment=rest)
        value = after.solve().cost
        if self.mg.gensets and value > budget_left + SLACK:
            value = MgSchedule(self.mg, self.interval_hours, start=nxt, state=state).solve().cost
        return value
