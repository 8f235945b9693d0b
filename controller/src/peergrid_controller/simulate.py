"""A day of P2P trading among a scenario's MGMCs, interval by interval, beside the two baselines.

Promises: `simulate(scenario, config, venue_factory)` runs, for each interval: every MGMC solves its schedule over
the rest of the day (MILP), derives its price–quantity curve for the interval (bounded by its conventional
alternative unless `rationality` is "off", see rationality.py), bargains through the venue (the
market contract, in memory or on the MGMC chain), then re-plans with the agreed trades fixed and moves to the next
interval from the state it dispatched. With `market="dayahead"` the whole day's trades are instead allocated
before the first interval (dayahead.py: exchange ADMM), checked by every MG exactly against its conventional day
and recorded through the market contract (forward.py); each MG dispatches its day with them fixed and they are
settled interval by interval; make-whole (uplift) payments for the MGs that would gain by deviating alone
are decided (uplift.py; the gain valued at an MG's own floor or cap where that is the price, what it keeps
by being rationed there reported apart as `rationed_at_own_rule`), the stability check is re-solved with them, and after the day's delivery they are
posted through the venue (`pay`, once) and counted in the last interval's MG costs (`SimulationResult.dayahead`
carries the stage's iterations, its day-level stability check and the uplift). `delivery_faults` (and
`random_faults`, drawn among the MGs with trades not given a fault explicitly) make MGs deliver less (delivery.py): each trade is settled
once for what was delivered, the MG at fault re-plans its day, its counterparties cover the gap with the DSO,
the credit of a payee that fell short is withheld and its funding not collected (uplift.withhold); the
summary says per MG how far above its conventional day the faults left it. The result carries per-interval and total welfare (minus the sum of MG
physical costs; P2P payments cancel), each MG's cost with P2P payments, rounds, convergence and stability.
Same scenario and config give byte-identical `to_json` output.
Assumes perfect forecasts (the scenario's profiles). Never reads clocks or I/O; timing is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from peergrid_controller import baselines
from peergrid_controller.bargaining import BargainingConfig, Participant, Venue, bargain
from peergrid_controller.builder import MgState
from peergrid_controller.commitment import Options
from peergrid_controller.dayahead import DayAheadConfig, allocate
from peergrid_controller.delivery import DeliveryFault, FaultError, deliver, fractions, seeded_faults
from peergrid_controller.forecast import indicative_prices
from peergrid_controller.forward import commit, deviation_gains, own_rule_fees, post
from peergrid_controller.market import Accepted, Trade, net_positions
from peergrid_controller.model import Microgrid, Scenario, Tariff
from peergrid_controller.rationality import Guarded
from peergrid_controller.schedule import MgSchedule
from peergrid_controller.stability import check
from peergrid_controller.uplift import MICRO, Uplift, earns, make_whole, withhold
from peergrid_controller.venues import PaymentVenue, memory_venue


class SettlementError(RuntimeError):
    """The venue refused to settle an agreed trade: a bug or a tampered chain, never silently ignored."""


@dataclass(frozen=True)
class SimulationConfig:
    bargaining: BargainingConfig = field(default_factory=BargainingConfig)
    with_central: bool = True
    central_time_limit_s: float = 120.0
    forecast_iterations: int = 24  # > 0: day-ahead price discovery first (forecast.py); the plans lean on it
    # a price forecast given from outside instead of the discovery (one per interval; e.g. the central
    # optimum's shadow prices, to measure what the per-interval market makes of perfect price information)
    forecast_prices: tuple[float, ...] | None = None
    # individual rationality (rationality.py): "strict" (default) trades and dispatches only within the MG's
    # day budget (its conventional day cost minus what it has paid), judged against falling back on the DSO
    # alone for the rest of the day, so no MG ends worse off than with the DSO alone; "trades" bounds each
    # trade by what the conventional alternative would trade and leaves dispatch to the plan; "off" trusts
    # the day-ahead forecast (more welfare, no guarantee)
    rationality: Literal["strict", "trades", "off"] = "strict"
    recommit_every: int = (
        4  # genset on/off re-decided (MILP) every this many intervals; dispatch-only LPs between
    )
    # "intraday": interval by interval bargaining against day-ahead indicative prices (the settings above);
    # "dayahead": forward trades for the whole day allocated by exchange ADMM (dayahead.py), each MG's
    # exact IR check, recorded through the market contract (forward.py); each MG then dispatches with its
    # trades fixed. `rationality` and the forecast settings do not apply to it (its check is exact).
    # The default stays "intraday" although day-ahead captured more of the central gain in the bench with the
    # same no-worse-off guarantee (docs/market.md): its day-level stability check fails wherever a genset
    # is, owner rules keep it from converging, and the per-interval bargaining's tests and the DSO console
    # are built on this mode; switching is one field here once those are settled.
    market: Literal["intraday", "dayahead"] = "intraday"
    dayahead: DayAheadConfig = field(default_factory=DayAheadConfig)
    # day-ahead only: MGs that do not deliver part of their forward trades (delivery.py) — these, and
    # `random_faults` of the other MGs with trades, drawn with `fault_seed` once the trades are known
    delivery_faults: tuple[DeliveryFault, ...] = ()
    random_faults: int = 0
    fault_seed: int = 0


@dataclass(frozen=True)
class IntervalResult:
    interval: int
    p2p_welfare: float
    central_welfare: float
    conventional_welfare: float
    rounds: int
    converged: bool
    stable: bool
    max_taker_gain: float
    max_pricing_gain: float
    mg_cost_p2p: dict[str, float]
    mg_cost_conventional: dict[str, float]
    trades: tuple[Trade, ...]  # as agreed
    # day-ahead: the same trades with the quantity delivered, i.e. settled (None: intraday, where dispatch
    # delivers every agreed trade)
    delivered: tuple[Trade, ...] | None = None


@dataclass(frozen=True)
class DayAheadSummary:
    iterations: int  # ADMM iterations (every MG solves once per iteration)
    solves: int
    recommits: int
    converged: bool
    primal_residual: float
    dual_residual: float
    declined: tuple[str, ...]  # MGs whose exact IR check failed
    max_deviation_gain: float  # day: largest gain of one MG deviating alone at the final prices
    prices: tuple[float, ...]
    # make-whole payments (uplift.py), currency units: paid in all, whether the payers' surplus covered
    # what was owed (else nothing is paid and the outcome is not stable) and by how much it fell short
    uplift_total: float = 0.0
    uplift_funded: bool = True
    uplift_shortfall: float = 0.0
    uplift_credit: dict[str, float] = field(default_factory=dict)  # per payee
    uplift_charge: dict[str, float] = field(default_factory=dict)  # per payer
    # re-solved with the credits and charges, each MG's gain valued at its own rules (uplift.py). Within
    # tolerance by construction whenever the uplift is funded: a payee's is 0 (its credit covers its gain),
    # every other MG's was within its tolerance already — so `stable` follows from `uplift_funded`, and this
    # figure shows the re-solve agrees, not that the prices support the outcome (max_deviation_gain does)
    max_deviation_gain_with_uplift: float = 0.0
    # funded, and no MG gains more than its tolerance with the payments (ex ante), valued at its own rules
    stable: bool = False
    # per MG rationed at its own floor or cap whose gain (less any credit) exceeds its tolerance: the gain
    # it keeps, which no uniform price removes; not paid, and not counted against `stable`
    rationed_at_own_rule: dict[str, float] = field(default_factory=dict)
    # delivery (delivery.py): the faults played; per MG its own committed energy not delivered and a
    # counterparty's shortfall it covered with the DSO (kWh); credits withheld from MGs that did not deliver
    # and the charges not collected for them (currency; uplift_credit/uplift_charge are what was paid); per
    # MG how much its day (uplift included) cost above its conventional day (only those above it)
    faults: tuple[DeliveryFault, ...] = ()
    shortfall_kwh: dict[str, float] = field(default_factory=dict)
    covered_kwh: dict[str, float] = field(default_factory=dict)
    uplift_withheld: dict[str, float] = field(default_factory=dict)
    uplift_refund: dict[str, float] = field(default_factory=dict)
    worse_than_conventional: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SimulationResult:
    scenario: str
    intervals: tuple[IntervalResult, ...]
    central_mip_gap: float
    dayahead: DayAheadSummary | None = None

    def totals(self) -> dict[str, object]:
        names = sorted(self.intervals[0].mg_cost_p2p) if self.intervals else []
        return {
            "p2p_welfare": sum(i.p2p_welfare for i in self.intervals),
            "central_welfare": sum(i.central_welfare for i in self.intervals),
            "conventional_welfare": sum(i.conventional_welfare for i in self.intervals),
            "rounds_max": max((i.rounds for i in self.intervals), default=0),
            "converged": all(i.converged for i in self.intervals),
            "stable": all(i.stable for i in self.intervals),
            "mg_cost_p2p": {n: sum(i.mg_cost_p2p[n] for i in self.intervals) for n in names},
            "mg_cost_conventional": {
                n: sum(i.mg_cost_conventional[n] for i in self.intervals) for n in names
            },
        }


def _settle_delivered(
    venue: Venue, t: int, trades: Sequence[Trade], delivered: Sequence[Trade] | None = None
) -> None:
    """Settle every agreed trade of interval `t` once, for what was delivered (`delivered`: the same trades
    with the quantity delivered; None: all of it, dispatch delivered it as agreed)."""
    quantities = [tr.quantity_kwh for tr in (trades if delivered is None else delivered)]
    settlements = [venue.settle(tr, q) for tr, q in zip(trades, quantities, strict=True)]
    refused = [str(v) for v in settlements if not isinstance(v, Accepted)]
    if refused:
        raise SettlementError(f"interval {t}: settlement refused: {refused[0]}")


UPLIFT_REF = "uplift/day-0"  # the simulation runs one day on its own chain


def _pay_uplift(venue: Venue, uplift: Uplift, ref: str) -> None:
    """Post every make-whole payment through the venue (the chain's `pay`), once; refused ones are fatal."""
    if not uplift.payments:
        return
    if not isinstance(venue, PaymentVenue):
        raise SettlementError(f"the venue {type(venue).__name__} cannot record uplift payments")
    refused = [str(v) for p in uplift.payments if not isinstance(v := venue.pay(p, ref), Accepted)]
    if refused:
        raise SettlementError(f"uplift payment refused: {refused[0]}")


def truncate(scenario: Scenario, intervals: int) -> Scenario:
    """The first `intervals` intervals of a scenario (its day ends there: batteries return to their start)."""
    if intervals >= scenario.intervals:
        return scenario

    def cut(mg: Microgrid) -> Microgrid:
        n = intervals
        t = mg.tariff
        return replace(
            mg,
            tariff=Tariff(t.retail[:n], t.feed_in[:n], t.max_import_kw, t.max_export_kw),
            pv=tuple(replace(p, available_kw=p.available_kw[:n]) for p in mg.pv),
            loads=tuple(
                replace(ld, critical_kw=ld.critical_kw[:n], sheddable_kw=ld.sheddable_kw[:n])
                for ld in mg.loads
            ),
        )

    return replace(scenario, microgrids=tuple(cut(mg) for mg in scenario.microgrids))


def simulate(
    scenario: Scenario,
    config: SimulationConfig | None = None,
    venue_factory: Callable[[Scenario], Venue] = memory_venue,
    on_interval: Callable[[int], None] | None = None,
) -> SimulationResult:
    cfg = config or SimulationConfig()
    n, dt = scenario.intervals, scenario.interval_hours
    conv = baselines.conventional(scenario)
    cent = baselines.central(scenario, cfg.central_time_limit_s) if cfg.with_central else None
    if (cfg.delivery_faults or cfg.random_faults) and cfg.market != "dayahead":
        raise FaultError("delivery faults apply to the day-ahead market's forward trades only")
    if cfg.random_faults < 0:
        raise FaultError(f"random_faults must be >= 0, got {cfg.random_faults}")
    fractions(scenario, cfg.delivery_faults)  # a bad spec fails before the day is solved
    venue = venue_factory(scenario)
    if cfg.market == "dayahead":
        return _dayahead(scenario, cfg, venue, conv, cent, on_interval)
    forecast = cfg.forecast_prices
    if forecast is not None and len(forecast) != n:
        raise ValueError(f"forecast_prices has {len(forecast)} prices for {n} intervals")
    if forecast is None and cfg.forecast_iterations > 0:
        forecast = indicative_prices(scenario, cfg.forecast_iterations)
    states = {mg.name: MgState.initial(mg) for mg in scenario.microgrids}
    commitments: dict[str, tuple[int, tuple[tuple[bool, ...], ...]]] = {}
    # what each MG may still spend and end no worse off than its conventional day (its own alternative)
    budget = {name: sum(costs) for name, costs in conv.per_interval.items()}
    results = []
    for t in range(n):
        if on_interval is not None:
            on_interval(t)
        schedules: dict[str, Options] = {}
        guards: dict[str, Guarded] = {}
        participants = []
        for mg in scenario.microgrids:
            last = commitments.get(mg.name)
            fixed = None
            if last is not None and t % max(cfg.recommit_every, 1) != 0:
                fixed = tuple(on[t - last[0] :] for on in last[1])
            sched = MgSchedule(
                mg,
                dt,
                start=t,
                horizon=n - t,
                state=states[mg.name],
                commitment=fixed,
                p2p_prices=forecast[t:] if forecast else None,
            )
            plan = sched.solve()
            if fixed is None and mg.gensets:
                commitments[mg.name] = (t, sched.commitment())
            options = Options.build(mg, dt, t, states[mg.name], sched, forecast[t:] if forecast else None)
            schedules[mg.name] = options
            premium = max(m.rules.clean_premium for m in scenario.microgrids)
            lo, hi, limit = (
                mg.tariff.feed_in[t],
                mg.tariff.retail[t] + premium,
                mg.rules.max_quantity_kwh / dt,
            )
            curve = options.curve(lo, hi, limit_kw=limit)
            if forecast is not None and cfg.rationality != "off":
                # the conventional alternative bounds what it trades and how it dispatches (rationality.py)
                if cfg.rationality == "strict":
                    fallback = Guarded.fallback(
                        mg, dt, t, states[mg.name], sched.commitment(), budget[mg.name]
                    )
                    curve = fallback.curve(curve, lo, hi, limit, budget[mg.name])
                else:
                    fallback = Guarded.build(mg, dt, t, states[mg.name], sched.commitment())
                    curve = fallback.per_trade_curve(curve, lo, hi, limit_kw=limit)
                guards[mg.name] = fallback
            # clean: no genset behind the offer at any price (a genset it may start for the trade counts)
            clean = plan.genset_kw[0] <= 1e-6 and options.alternative is None
            participants.append(Participant(mg.name, curve, mg.rules, clean=clean))
        feed_in = min(mg.tariff.feed_in[t] for mg in scenario.microgrids)
        retail = max(mg.tariff.retail[t] for mg in scenario.microgrids)
        outcome = bargain(participants, t, feed_in, retail, venue, cfg.bargaining)
        positions = net_positions(outcome.trades)
        volume = sum(tr.quantity_kwh for tr in outcome.trades)
        stability = check(
            participants,
            outcome,
            cfg.bargaining.price_tolerance * max(volume, 1.0),
            cfg.bargaining.price_band,
            cap_on_fills=bool(getattr(venue, "cap_on_fills", False)),  # as `bargain` reads the venue
        )
        cost_p2p: dict[str, float] = {}
        physical = 0.0
        for mg in scenario.microgrids:
            net_kwh, money = positions.get(mg.name, (0.0, 0.0))
            options = schedules[mg.name]
            guard = guards.get(mg.name)
            if guard is not None and cfg.rationality == "strict":
                sched, cost, states[mg.name] = guard.dispatch(options, net_kwh / dt, money, budget[mg.name])
            else:
                sched = options.choose(net_kwh / dt)
                cost, states[mg.name] = sched.first_interval_cost_and_state()
            if mg.gensets and sched is not options.plan:
                commitments[mg.name] = (t, sched.commitment())  # the trade started (or stopped) its genset
            budget[mg.name] -= cost - money
            physical += cost
            cost_p2p[mg.name] = cost - money
        # every agreed trade is delivered as scheduled (dispatch fixed it) and settled once
        _settle_delivered(venue, t, outcome.trades)
        results.append(
            IntervalResult(
                interval=t,
                p2p_welfare=-physical,
                central_welfare=-cent.interval_total(t) if cent else float("nan"),
                conventional_welfare=-conv.interval_total(t),
                rounds=len(outcome.rounds),
                converged=outcome.converged,
                stable=stability.stable,
                max_taker_gain=stability.max_taker_gain,
                max_pricing_gain=stability.max_pricing_gain,
                mg_cost_p2p=cost_p2p,
                mg_cost_conventional={name: costs[t] for name, costs in conv.per_interval.items()},
                trades=outcome.trades,
            )
        )
    venue.flush()
    return SimulationResult(scenario.name, tuple(results), cent.mip_gap if cent else float("nan"))


def _dayahead(
    scenario: Scenario,
    cfg: SimulationConfig,
    venue: Venue,
    conv: baselines.BaselineCosts,
    cent: baselines.BaselineCosts | None,
    on_interval: Callable[[int], None] | None,
) -> SimulationResult:
    """Forward trades for the day, committed before the first interval, delivered and settled interval by
    interval; every MG dispatches its day with its trades fixed (the check's own MILP)."""
    if on_interval is not None:
        on_interval(0)
    allocation = allocate(scenario, cfg.dayahead)
    committed = commit(scenario, allocation, conv)
    clean = {mg.name: not mg.gensets for mg in scenario.microgrids}
    agreed = post(venue, committed, clean)
    trading = {name for day in agreed for tr in day for name in (tr.seller, tr.buyer)}
    tolerance = {
        mg.name: cfg.bargaining.price_tolerance
        * max(
            sum(abs(tr.quantity_kwh) for day in agreed for tr in day if mg.name in (tr.seller, tr.buyer)), 1.0
        )
        for mg in scenario.microgrids
    }
    gains = deviation_gains(scenario, committed)
    # what is owed: the gain valued at the MG's own rules (uplift.py), solved again only for the MGs that
    # would be owed and whose own floor or cap is the price somewhere
    at_rule = {
        mg.name
        for mg in scenario.microgrids
        if earns(gains[mg.name], tolerance[mg.name]) and own_rule_fees(mg, committed.prices) != (None, None)
    }
    valued = gains | deviation_gains(scenario, committed, own_rules=True, names=at_rule)
    conventional_day = {name: sum(costs) for name, costs in conv.per_interval.items()}
    uplift = make_whole(valued, tolerance, committed.day_cost, conventional_day, trading)
    # stability with the payments: each payee's best response re-solved under the payments' rules; a
    # payer's charge is due whatever it does, so its model and gain are unchanged
    after = dict(valued)
    if uplift.credits:
        after |= deviation_gains(scenario, committed, uplift, own_rules=True, names=set(uplift.credits))
    stable = uplift.funded and not any(earns(after[name], tolerance[name]) for name in after)
    # the gain an MG keeps because it is rationed at its own rule: not paid, reported apart
    rationed = {
        name: round(gains[name] - uplift.credit(name), 9)
        for name in sorted(at_rule)
        if earns(gains[name] - uplift.credit(name), tolerance[name])
    }
    # delivery: the faults played, what was settled, each MG's dispatch with the shortfalls, and the
    # credits of the MGs that did not deliver withheld (their charges not collected)
    # the random faults among the trading MGs not given one explicitly (an MG's interval given twice would
    # be refused only now, after the day is solved, for a fault the user never wrote: review5 F7)
    explicit = {fault.mg for fault in cfg.delivery_faults}
    faults = cfg.delivery_faults + seeded_faults(
        sorted(trading - explicit), scenario.intervals, cfg.fault_seed, cfg.random_faults
    )
    delivery = deliver(scenario, committed, agreed, fractions(scenario, faults))
    paid = withhold(uplift, delivery.defaulted)
    results = []
    for t in range(scenario.intervals):
        _settle_delivered(venue, t, agreed[t], delivery.delivered[t])
        results.append(
            IntervalResult(
                interval=t,
                p2p_welfare=-sum(costs[t] for costs in delivery.physical_cost.values()),
                central_welfare=-cent.interval_total(t) if cent else float("nan"),
                conventional_welfare=-conv.interval_total(t),
                rounds=1 if agreed[t] else 0,
                converged=allocation.converged,
                stable=stable,
                max_taker_gain=max(after.values()),
                max_pricing_gain=0.0,  # one uniform price per interval, no seller prices alone
                mg_cost_p2p={
                    name: delivery.physical_cost[name][t]
                    - delivery.payments[name][t]
                    - (paid.net(name) if t == scenario.intervals - 1 else 0.0)
                    for name in sorted(delivery.physical_cost)
                },
                mg_cost_conventional={name: costs[t] for name, costs in conv.per_interval.items()},
                trades=agreed[t],
                delivered=delivery.delivered[t],
            )
        )
    # earned by delivering every committed position: paid after the day, to those that did
    _pay_uplift(venue, paid, UPLIFT_REF)
    venue.flush()
    worse = {
        name: round(delivery.day_cost(name) - paid.net(name) - conventional_day[name], 9)
        for name in sorted(delivery.physical_cost)
    }
    summary = DayAheadSummary(
        iterations=allocation.iterations,
        solves=allocation.solves,
        recommits=allocation.recommits,
        converged=allocation.converged,
        primal_residual=allocation.primal_residual,
        dual_residual=allocation.dual_residual,
        declined=committed.declined,
        max_deviation_gain=max(gains.values()),
        prices=committed.prices,
        uplift_total=paid.total / MICRO,
        uplift_funded=uplift.funded,
        uplift_shortfall=uplift.shortfall / MICRO,
        uplift_credit={name: paid.credit(name) for name in sorted(paid.credits)},
        uplift_charge={name: paid.charge(name) for name in sorted(paid.charges)},
        max_deviation_gain_with_uplift=max(after.values()),
        rationed_at_own_rule=rationed,
        stable=stable,
        faults=faults,
        shortfall_kwh=delivery.shortfall_kwh,
        covered_kwh={name: round(kwh, 6) for name, kwh in delivery.covered_kwh.items()},
        uplift_withheld={name: a / MICRO for name, a in sorted(paid.withheld.items())},
        uplift_refund={name: a / MICRO for name, a in sorted(paid.refunds.items())},
        worse_than_conventional={
            name: w for name, w in worse.items() if w > 1e-6 * max(1.0, abs(conventional_day[name]))
        },
    )
    return SimulationResult(scenario.name, tuple(results), cent.mip_gap if cent else float("nan"), summary)
