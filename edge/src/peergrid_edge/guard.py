"""The intraday agent's individual-rationality guard: the simulation's strict (and trades) mode per interval,
with the owner's risk allowance, on the deployed edge (controller rationality.py does the judging).

Promises:
- `forecast_for` (`peer_forecast.py`): the peer prices the day is planned on with `market.forecast` "market",
  each interval's price held within the MG's own [feed-in, retail + premium]; None without a forecast.
- `DayBudget`: what the MG may still spend this day and end no worse off than its conventional (DSO-only)
  day plus the allowance: it starts at the conventional cost of the day from the agent's first interval and
  state plus the allowance, and each interval is charged with its `cost_p2p` as it was actually dispatched
  and paid, less the clean premium its owner paid in it (`premium_paid`: as the buyer's curve judged the
  purchase, the controller's rationality.premium_paid; the record keeps `cost_p2p` in real money and names
  the premium, `resume_spend.PREMIUM_PAID`); a restarted agent goes on from its records
  (`resume_spend.recorded_spend`, read once), never a fresh allowance, and with none left where they cannot say what the day cost so far (`RecordedSpend.unknown`: fail
  closed), as the running agent has none left once an interval failed (`fail_closed_after`); a shortfall a DSO
  change had left is kept by both (`DayBudget.short`, in the failed interval's record: `failed_record`).
- `guard_curve`: strict — the plan's curve within the budget (`Guarded.fallback`, `Guarded.curve`); trades —
  within what the conventional alternative trades (`per_trade_curve`); off — the plan's curve as it is.
- `choose`: strict — the dispatch the guard picks for the agreed trade (`Guarded.dispatch`: the plan when it
  fits, else the largest share of it that fits, else the conventional alternative), with the plan that goes
  to the DERs; otherwise the plan's own dispatch (`interval_plan.deliver`).
What the guard does not steer, and records as such: an interval while forward trades are held (this one or a
later one: the day-ahead stage accepted them on its own rationality check, and the DSO-only fallback would
not keep them), and a change the DSO makes after the guard chose (an adjustment, a re-bargain, a changed
closing: the DSO's; the budget is charged with what was dispatched and paid, and the record names the part
that was the DSO's). An owed interval needs nothing of its own: the debtor's bid asks nothing, so its trade
is a sale within the guarded curve. Pure apart from the chain state it is given; never reads clocks or I/O.
Interval numbers: the agent's functions (`start_budget`, `fail_closed_after`, `interval_curve`,
`choose`) take the chain's interval t (the chain's prices, records and logs) and read the MG's model at t's
profile index (`interval_plan.profile_index`), to t's day's end; the pure ones on the model (`day_budget`,
`guard_curve`) take that profile index.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from peergrid_controller.builder import MgState
from peergrid_controller.commitment import Options
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.model import ContractRules, Microgrid
from peergrid_controller.rationality import Guarded
from peergrid_controller.schedule import MgSchedule, Plan, ScheduleError
from peergrid_edge import interval_plan, resume, resume_spend

# `x as x`: the names moved there stay importable here, where other modules and tests import them
from peergrid_edge.peer_forecast import forecast_for as forecast_for
from peergrid_edge.peer_forecast import lookback_intervals as lookback_intervals
from peergrid_edge.peer_forecast import market_forecast as market_forecast
from peergrid_edge.peer_forecast import within_bounds as within_bounds

log = logging.getLogger("peergrid.edge.trader")


@dataclass
class DayBudget:
    """The guard's budget for one MG's day (currency): `day` at its start (conventional cost + allowance),
    `spent` what was charged since: each interval's `cost_p2p` (physical cost less P2P money) less the clean
    premium paid in it (`premium_paid`)."""

    mode: str  # "strict", "trades" or "off": the config's `market.rationality`
    allowance: float
    day: float
    spent: float = 0.0
    # how far below the conventional value of the MG's state what was left stood at the last interval's start
    # (`note_value`): a change the guard does not steer (the DSO's) took it there; 0 while the guard holds
    short: float = 0.0

    @property
    def left(self) -> float:
        return self.day - self.spent

    def charge(self, cost_p2p: float) -> None:
        self.spent += cost_p2p

    def note_value(self, value: float) -> None:
        """The conventional value of the MG's state at an interval's start (`Guarded.value`): `short` is what is
        left below it (`fail_closed_after` keeps it)."""
        self.short = max(0.0, value - self.left)

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "risk_allowance": self.allowance, "budget_day": self.day,
                "budget_left": self.left}  # fmt: skip


def day_budget(
    mode: str,
    allowance: float,
    mg: Microgrid,
    dt: float,
    t: int,
    state: MgState,
    resumed: tuple[float, float] | None,
    spend_unknown: bool = False,
    short: float = 0.0,
) -> DayBudget:
    """The day's budget from profile index t: where the records left it (`resumed`: the day's budget and what the
    intervals before t cost), else afresh — the conventional cost of the rest of the day from `state` (the
    conventional optimum, `interval_plan.cost_to_go`) plus the allowance. `spend_unknown` (the records
    cannot say what the day cost before t: `RecordedSpend.unknown`): fail closed, no allowance left — what
    is left is the conventional rest of the day from `state`, which the strict guard keeps the day's true
    left at or above (the records' known costs are no bound: the lost one may have been an income), and
    the day's budget the records' where they hold one (every record of the day carries the same
    `budget_day`; the spend is what that leaves), less the shortfall an earlier DSO change had left where an
    interval failed (`short`: its record's `resume_spend.BUDGET_SHORT`, `RecordedSpend.short`), as the running agent
    keeps it (`fail_closed_after`): a restart never gives it back (before, it was not in the records)."""
    if spend_unknown:
        to_go = interval_plan.cost_to_go(mg, dt, mg.intervals, t, state)
        day = to_go if resumed is None else resumed[0]
        return DayBudget(mode, allowance, day, day - (to_go - short), short)
    if resumed is not None:
        day, spent = resumed
        return DayBudget(mode, allowance, day, spent)
    return DayBudget(mode, allowance, interval_plan.cost_to_go(mg, dt, mg.intervals, t, state) + allowance)


def premium_paid(trades: Sequence[tuple[bytes, dict[str, Any]]], me: bytes, premium: float) -> float:
    """What this MG's owner paid in clean premium on its agreed `trades` (`chain_bargaining.position`'s): its
    `premium` (currency per kWh, its own rules', as its bids used it) on every kWh it bought from a clean
    seller (the trade's `clean`, the seller's offer as the contract agreed it). Its curve judged such a
    purchase at the price less the premium (`moves.make_bid`), so the budget is charged the same: the
    premium is what the owner chose to pay, not a loss the rest of the day must win back. Charged at the full
    price it held a premium buyer below standing still and out of every later clean purchase (M15, U5 F5)."""
    if premium <= 0.0:
        return 0.0
    bought: int = sum(tr["quantity"] for _, tr in trades if tr["buyer"] == me and tr.get("clean", False))
    return premium * bought / 1000  # the chain's quantities are Wh


def start_budget(agent: Any, t: int, recorded: resume_spend.RecordedSpend | None = None) -> DayBudget:
    """`day_budget` for the trading agent from interval t, at its config's `rationality` and `risk_allowance`
    (a test's stand-in settings that name neither: off, none), from what its records say of the day before t
    (`recorded`, read at its start, `MarketAgent.run`; read here where it is not that of t, as after an
    interval that failed before its budget started), with no allowance left where they cannot say what the day
    cost before t (`RecordedSpend.unknown` over its replica's MGMC chain: logged once, naming the interval; a
    warning where the budget steers, strict: `_level`).
    Going on from them would give back what the lost interval cost, or a fresh allowance mid-day where it was
    the only record (review17 K-A)."""
    assert agent.state is not None
    mode, allowance = _setting(agent, "rationality", "off"), _setting(agent, "risk_allowance", 0.0)
    if recorded is None or recorded.t != t:
        recorded = resume_spend.recorded_spend(_setting(agent, "record_file", None), t, _day(agent))
    unknown = _unknown_spend(agent, recorded)
    budget = day_budget(
        mode,
        allowance,
        agent.mg,
        agent.dt,
        interval_plan.profile_index(t, agent.mg.intervals),
        agent.state,
        recorded.resumed,
        unknown is not None,
        recorded.short,
    )
    if unknown is not None:
        log.log(_level(mode), "interval %d: what the day cost before it is unknown: %s; the guard (%s) resumes "
                "with no allowance left (budget_left %.4f, the conventional rest of the day)", t, unknown, mode,
                budget.left)  # fmt: skip
    return budget


def fail_closed_after(agent: Any, t: int) -> None:
    """The running agent's budget once its interval t failed (`MarketAgent.run`'s except branch): what t cost is
    unknown (the failure may come after `choose`, once it traded, dispatched and was paid), so, as a restart over
    its records does (`start_budget`: the failed interval's record holds no cost), no allowance is left - what is
    left is the conventional rest of the day from t + 1 and the agent's state, the day's budget unchanged
    (review17 K-A), less the shortfall a DSO change had already left (`DayBudget.short`, noted at the start of
    the last interval the guard judged; failing closed never gives it back: review18's K-A nit. What was spent
    before t is no bound: t may have been an income). Where the failure came before `run_interval` moved the
    state on, that state is the one before t (a restart reads its batteries afresh). A budget not started yet
    is `start_budget`'s to start, which fails closed on the failed record. Logged (`_level`), never raised: one
    bad interval must not end trading."""
    budget, state = agent.budget, agent.state
    if budget is None or state is None:
        return
    try:
        n = agent.mg.intervals
        to_go = interval_plan.cost_to_go(agent.mg, agent.dt, n, interval_plan.profile_index(t, n) + 1, state)
    except Exception:  # the next interval's solve will say so too; this one's budget stays as it was
        log.exception("interval %d failed and the conventional rest of the day could not be solved", t)
        return
    budget.spent = budget.day - (to_go - budget.short)
    log.log(_level(budget.mode), "interval %d failed: what it cost is unknown; the guard (%s) goes on with no "
            "allowance left (budget_left %.4f, at most the conventional rest of the day)", t, budget.mode,
            budget.left)  # fmt: skip


def _level(mode: str) -> int:
    """How loud a word on the budget is: a warning where it steers the dispatch (strict), else information: with
    the guard off or per trade (`guard_curve`, `choose`) the budget is only recorded, and a WARNING about a guard
    that is not running misled a lab's reader (U6 drill 3)."""
    return logging.WARNING if mode == "strict" else logging.INFO


def failed_record(agent: Any) -> dict[str, float]:
    """What a failed interval's record adds for the guard (`agent_day.intervals`): the shortfall a DSO change had
    left (`DayBudget.short`, `resume_spend.BUDGET_SHORT`) where there is one, so a restart keeps it as the running
    agent does (`fail_closed_after`); nothing where none (the record's bytes as before the key)."""
    budget = agent.budget
    return {} if budget is None or budget.short <= 0 else {resume_spend.BUDGET_SHORT: budget.short}


def _unknown_spend(agent: Any, recorded: resume_spend.RecordedSpend) -> str | None:
    """`RecordedSpend.unknown` for the trading agent's records and its anonym's part on its MGMC chain."""
    first = _setting(agent, "first_interval", 0)
    chain, me = agent.ledger.state("mgmc"), agent.anonym.public
    return recorded.unknown(first, lambda k: resume_spend.took_part(chain, k, me))


def _day(agent: Any) -> str | None:
    """The trading agent's day (`MarketAgent.day`); None where a test's stand-in agent names no t0 (every line
    of its record file read, as before the stamp)."""
    t0 = _setting(agent, "t0", None)
    return None if t0 is None else resume.record_day(t0, _setting(agent, "first_interval", 0))


def _setting(agent: Any, name: str, default: Any) -> Any:
    """The agent's `market.<name>`; `default` (the edge before the guard) where a test's stand-in agent has
    no settings or its stand-in settings do not name it (MarketSettings always does)."""
    return getattr(getattr(agent, "s", None), name, default)


def interval_curve(
    agent: Any,
    t: int,
    budget: DayBudget,
    sched: MgSchedule,
    forward_held: bool,
    premium: float,
    rules: ContractRules | None = None,
    counted: Microgrid | None = None,
) -> tuple[ResponseCurve, Guarded | None]:
    """The trading agent's curve for interval t from its day plan `sched` (on its own price bounds: feed-in
    to retail plus the feeder's clean premium, within its owner's quantity limit: `rules`', the owner's
    within the DSO's connection capacity, else its own), held by `guard_curve` unless forward trades are
    held (`forward_held`: the plan's curve as it is, no alternative). `counted`: the MG the plan was made on
    (`interval_plan.counted`: a PV that does not answer left out; None: the agent's), and so its alternative."""
    mg = agent.mg if counted is None else counted
    i = interval_plan.profile_index(t, mg.intervals)
    lo, hi = mg.tariff.feed_in[i], mg.tariff.retail[i] + premium
    limit_kw = (mg.rules if rules is None else rules).max_quantity_kwh / agent.dt
    curve = sched.response_curve(lo, hi, limit_kw=limit_kw)
    if forward_held:
        return curve, None
    return guard_curve(budget, mg, agent.dt, i, agent.state, sched, curve, lo, hi, limit_kw)


def guard_curve(
    budget: DayBudget,
    mg: Microgrid,
    dt: float,
    t: int,
    state: MgState,
    sched: MgSchedule,
    curve: ResponseCurve,
    lo: float,
    hi: float,
    limit_kw: float,
) -> tuple[ResponseCurve, Guarded | None]:
    """The curve this MG bargains with at profile index t and the conventional alternative that bounds it (None:
    mode off). Prices [lo, hi]: the MG's own bounds, as the simulation's."""
    if budget.mode == "strict":
        fallback = Guarded.fallback(mg, dt, t, state, sched.commitment(), budget.left)
        return fallback.curve(curve, lo, hi, limit_kw, budget.left), fallback
    if budget.mode == "trades":
        fallback = Guarded.build(mg, dt, t, state, sched.commitment())
        return fallback.per_trade_curve(curve, lo, hi, limit_kw), fallback
    return curve, None


@dataclass
class Chosen:
    """The interval's dispatch as chosen: the schedule that carries it (the DSO's answers re-plan on it), the
    plan for the DERs, the P2P net it delivers (kW), how it was chosen, and the cost and state the guard
    booked for it (None: the schedule's own last dispatch says)."""

    sched: MgSchedule
    plan: Plan
    delivered_kw: float
    how: str  # "plan", "fallback", "mixed" (strict), "unguarded" (trades, off), "forward", "undeliverable"
    cost: float | None = None
    state: MgState | None = None
    booked: dict[str, float] = field(default_factory=dict)  # cost and money the guard chose with


def choose(
    budget: DayBudget,
    fallback: Guarded | None,
    t: int,
    sched: MgSchedule,
    agreed_kw: float,
    money: float,
    forward_held: bool = False,
    premium: float = 0.0,
) -> Chosen:
    """Interval t's dispatch for the agreed trade (kW, + export) and the money it brings: in strict mode the
    guard's (`Guarded.dispatch`, judged with the money plus the clean `premium` the owner paid in it,
    `premium_paid`: what its curve judged the purchase at), else the plan's own (`interval_plan.deliver`;
    "forward" where the guard is on but forward trades are held)."""
    if fallback is None or budget.mode != "strict":
        plan, delivered = interval_plan.deliver(t, sched, agreed_kw)
        return Chosen(
            sched, plan, delivered, "forward" if forward_held and budget.mode != "off" else "unguarded"
        )
    try:
        picked, cost, state = fallback.dispatch(Options(sched, None), agreed_kw, money + premium, budget.left)
    except ScheduleError as exc:  # a trade within the guarded curve is deliverable: this is not expected
        log.warning("interval %d: the guard cannot dispatch the agreed trade (%s): the plan delivers what it "
                    "can", t, exc)  # fmt: skip
        plan, delivered = interval_plan.deliver(t, sched, agreed_kw)
        return Chosen(sched, plan, delivered, "undeliverable")
    booked = {"cost": cost, "money": money}  # real money: the record's figures (the premium is its own key)
    plan = picked.dispatch(agreed_kw)  # the same LP again (warm): the plan the guard's pick dispatched
    own_cost, own_state = picked.first_interval_cost_and_state()
    if picked is sched:
        return Chosen(sched, plan, agreed_kw, "plan", own_cost, own_state, booked)
    if abs(own_cost - cost) <= 1e-9 and _same(own_state, state):
        return Chosen(picked, plan, agreed_kw, "fallback", own_cost, own_state, booked)
    # a share of the plan mixed with the alternative (no genset): the DERs get the same mix of both plans
    optimistic = sched.dispatch(agreed_kw)
    plan_cost, _ = sched.first_interval_cost_and_state()
    share = (cost - own_cost) / (plan_cost - own_cost) if abs(plan_cost - own_cost) > 1e-12 else 0.0
    mixed = mix(optimistic, plan, min(max(share, 0.0), 1.0))
    return Chosen(picked, mixed, agreed_kw, "mixed", cost, state, booked)


def _same(a: MgState, b: MgState) -> bool:
    return all(abs(x - y) <= 1e-9 for x, y in zip(a.soc_kwh, b.soc_kwh, strict=True)) and (
        a.genset_on == b.genset_on
    )


def mix(a: Plan, b: Plan, share: float) -> Plan:
    """`share` of plan a and the rest of plan b, interval by interval (both meet the same trade from the same
    state without a genset, so the mix is a dispatch too; its cost mixes linearly)."""

    def of(x: Sequence[float], y: Sequence[float]) -> tuple[float, ...]:
        return tuple(share * p + (1 - share) * q for p, q in zip(x, y, strict=True))

    parts = {k: share * a.cost_parts.get(k, 0.0) + (1 - share) * b.cost_parts.get(k, 0.0)
             for k in sorted(set(a.cost_parts) | set(b.cost_parts))}  # fmt: skip
    return Plan(
        cost=share * a.cost + (1 - share) * b.cost,
        p2p_net_export=of(a.p2p_net_export, b.p2p_net_export),
        dso_net_export=of(a.dso_net_export, b.dso_net_export),
        genset_kw=of(a.genset_kw, b.genset_kw),
        genset_on=b.genset_on,
        battery_soc_kwh=of(a.battery_soc_kwh, b.battery_soc_kwh),
        battery_kw=of(a.battery_kw, b.battery_kw),
        shed_kw=of(a.shed_kw, b.shed_kw),
        pv_used_kw=of(a.pv_used_kw, b.pv_used_kw),
        cost_parts=parts,
    )


def record(budget: DayBudget, chosen: Chosen, cost_p2p: float) -> dict[str, Any]:
    """The interval record's guard fields: the budget after it, the allowance, and how it was dispatched with
    what the guard booked and the part of the actual `cost_p2p` that was not the guard's (the DSO's change,
    or a changed closing: `dso_cost`)."""
    doc: dict[str, Any] = {"budget_left": budget.left, "risk_allowance": budget.allowance,
                           "budget_day": budget.day}  # fmt: skip
    entry: dict[str, Any] = {"mode": budget.mode, "dispatch": chosen.how}
    if chosen.booked:
        guarded = chosen.booked["cost"] - chosen.booked["money"]
        entry.update(cost_p2p=guarded, dso_cost=cost_p2p - guarded)
    doc["guard"] = entry
    return doc
