"""A day of P2P trading among a scenario's MGMCs, interval by interval, beside the two baselines.

Promises: `simulate(scenario, config, venue_factory)` runs, for each interval: every MGMC solves its schedule over
the rest of the day (MILP), derives its price–quantity curve for the interval (bounded by its conventional
alternative unless `rationality` is "off", see rationality.py), bargains through the venue (the
market contract, in memory or on the MGMC chain), then re-plans with the agreed trades fixed, settles them once
(settling.py) and moves to the next interval from the state it dispatched. With `market="dayahead"` the whole
day's trades are instead allocated before the first interval (dayahead.py: exchange ADMM, every move recorded on
the venue's exchange where it has one, venues.exchange_recorder) and the day is played
from that allocation by simulate_dayahead.py (the exact IR check, the chain, make-whole payments, delivery
faults; `SimulationResult.dayahead`). Faults outside the day-ahead market, or a fault spec that does not fit
the scenario (delivery.fractions), raise `FaultError` before the day is traded. The result (simrecords.py)
carries per-interval and total welfare (minus the sum of MG physical costs; P2P payments cancel), each MG's
cost with P2P payments, rounds, convergence and stability. Same scenario and config give byte-identical `to_json` output.
`truncate(scenario, intervals)` cuts a scenario's day short. The records and the settlement helpers stay
importable from here as they were before the day-ahead path moved out.
Assumes perfect forecasts (the scenario's profiles). Never reads clocks or I/O; timing is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from peergrid_controller import baselines
from peergrid_controller.bargaining import Participant, Venue, bargain
from peergrid_controller.builder import MgState
from peergrid_controller.commitment import Options
from peergrid_controller.dayahead import allocate
from peergrid_controller.delivery import FaultError, fractions
from peergrid_controller.forecast import indicative_prices
from peergrid_controller.market import net_positions
from peergrid_controller.model import Microgrid, Scenario, Tariff
from peergrid_controller.rationality import Guarded, premium_paid
from peergrid_controller.schedule import MgSchedule
from peergrid_controller.settling import UPLIFT_REF, SettlementError, pay_uplift, settle_interval
from peergrid_controller.simrecords import (
    ConfigError,
    DayAheadSummary,
    IntervalResult,
    SimulationConfig,
    SimulationResult,
)
from peergrid_controller.simulate_dayahead import play_day
from peergrid_controller.stability import check
from peergrid_controller.venues import MemoryMarket, exchange_recorder, memory_venue

__all__ = [
    "UPLIFT_REF",
    "ConfigError",
    "DayAheadSummary",
    "IntervalResult",
    "SettlementError",
    "SimulationConfig",
    "SimulationResult",
    "simulate",
    "truncate",
    "window",
]

_pay_uplift = pay_uplift  # its name here before settling.py (tests post payments through it)


def truncate(scenario: Scenario, intervals: int) -> Scenario:
    """The first `intervals` intervals of a scenario (its day ends there: batteries return to their start)."""
    if intervals >= scenario.intervals:
        return scenario
    return window(scenario, 0, intervals)


def window(scenario: Scenario, start: int, stop: int) -> Scenario:
    """Intervals [start, stop) of the day as a day of their own (batteries from their start, as a cut day)."""

    def cut(mg: Microgrid) -> Microgrid:
        t = mg.tariff
        return replace(
            mg,
            tariff=Tariff(t.retail[start:stop], t.feed_in[start:stop], t.max_import_kw, t.max_export_kw),
            pv=tuple(replace(p, available_kw=p.available_kw[start:stop]) for p in mg.pv),
            loads=tuple(
                replace(ld, critical_kw=ld.critical_kw[start:stop], sheddable_kw=ld.sheddable_kw[start:stop])
                for ld in mg.loads
            ),
        )

    return replace(scenario, microgrids=tuple(cut(mg) for mg in scenario.microgrids))


def simulate(
    scenario: Scenario,
    config: SimulationConfig | None = None,
    venue_factory: Callable[[Scenario], Venue] = memory_venue,
    on_interval: Callable[[int], None] | None = None,
    risk_allowance: float | None = None,
) -> SimulationResult:
    """The owner's risk allowance is the config's (`SimulationConfig.risk_allowance`, per MG
    `mg_risk_allowance`; intraday strict mode only): how far above its conventional day cost each MG's day
    may end in the worst case (rationality.py). 0, the default, is the exact guarantee; a positive allowance
    lets an MG take, before it has saved anything, positions that pay only if its peers keep trading (a
    battery's morning sale, a genset stopped at midday): the day-start slack the strict guard lacks. The
    keyword `risk_allowance`, its way in before the config had it, sets the config's every-MG value (a config
    that already has another raises ConfigError). A bad allowance or one naming an MG the scenario lacks
    raises ConfigError (a ValueError) before the day is solved."""
    cfg = config or SimulationConfig()
    if risk_allowance is not None and risk_allowance != cfg.risk_allowance:
        if cfg.risk_allowance != 0.0:
            raise ConfigError(
                f"risk_allowance {risk_allowance} given beside the config's {cfg.risk_allowance}: give it once"
            )
        cfg = replace(cfg, risk_allowance=risk_allowance)  # validated as the config is made
    unknown = sorted(set(cfg.mg_risk_allowance) - {mg.name for mg in scenario.microgrids})
    if unknown:
        raise ConfigError(f"mg_risk_allowance names unknown microgrid {unknown[0]!r}")
    n, dt = scenario.intervals, scenario.interval_hours
    conv = baselines.conventional(scenario)
    cent = baselines.central(scenario, cfg.central_time_limit_s) if cfg.with_central else None
    if (cfg.delivery_faults or cfg.random_faults) and cfg.market != "dayahead":
        raise FaultError("delivery faults apply to the day-ahead market's forward trades only")
    if cfg.random_faults < 0:
        raise FaultError(f"random_faults must be >= 0, got {cfg.random_faults}")
    fractions(scenario, cfg.delivery_faults)  # a bad spec fails before the day is solved
    venue = venue_factory(scenario)
    if cfg.dayahead.exchange_fee and (cfg.market != "dayahead" or not isinstance(venue, MemoryMarket)):
        raise ConfigError(
            "an exchange fee applies to the day-ahead market on the memory venue only (the chain venue's "
            f"genesis carries no fee yet), not to market {cfg.market} on {type(venue).__name__}"
        )
    if cfg.market == "dayahead":
        if on_interval is not None:
            on_interval(0)
        # the day is played from whatever allocation this returns (simulate_dayahead.py); its moves go to
        # the venue's exchange (the chain's) as they are made, where it has one
        allocation = allocate(scenario, cfg.dayahead, recorder=exchange_recorder(venue))
        return play_day(scenario, cfg, venue, conv, cent, allocation)
    forecast = cfg.forecast_prices
    if forecast is not None and len(forecast) != n:
        raise ValueError(f"forecast_prices has {len(forecast)} prices for {n} intervals")
    if forecast is None and cfg.forecast_iterations > 0:
        forecast = indicative_prices(scenario, cfg.forecast_iterations)
    states = {mg.name: MgState.initial(mg) for mg in scenario.microgrids}
    commitments: dict[str, tuple[int, tuple[tuple[bool, ...], ...]]] = {}
    # what each MG may still spend and end no worse off than its conventional day (its own alternative),
    # plus the risk it accepts
    budget = {name: sum(costs) + cfg.allowance(name) for name, costs in conv.per_interval.items()}
    paid_day: dict[str, float] = {}  # the clean premium each owner paid so far (rationality.premium_paid)
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
        # the guard judged a clean purchase at its price less the owner's premium (moves.make_bid), so the
        # budget is charged the same: the premium is what the owner chose to pay, not a loss to recoup
        # (rationality.premium_paid; charged in full it held a premium buyer below standing still, U5 F5)
        premiums = premium_paid(
            {p.name: p.rules.clean_premium for p in participants},
            {p.name for p in participants if p.clean},
            outcome.trades,
        )
        for name, x in premiums.items():
            paid_day[name] = paid_day.get(name, 0.0) + x
        for mg in scenario.microgrids:
            net_kwh, money = positions.get(mg.name, (0.0, 0.0))
            valued = money + premiums.get(mg.name, 0.0)  # what the trades are worth to the owner
            options = schedules[mg.name]
            guard = guards.get(mg.name)
            if guard is not None and cfg.rationality == "strict":
                sched, cost, states[mg.name] = guard.dispatch(options, net_kwh / dt, valued, budget[mg.name])
            else:
                sched = options.choose(net_kwh / dt)
                cost, states[mg.name] = sched.first_interval_cost_and_state()
            if mg.gensets and sched is not options.plan:
                commitments[mg.name] = (t, sched.commitment())  # the trade started (or stopped) its genset
            budget[mg.name] -= cost - valued
            physical += cost
            cost_p2p[mg.name] = cost - money
        # every agreed trade is delivered as scheduled (dispatch fixed it) and settled once
        settle_interval(venue, t, outcome.trades)
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
    allowances = {mg.name: cfg.allowance(mg.name) for mg in scenario.microgrids}
    return SimulationResult(
        scenario.name,
        tuple(results),
        cent.mip_gap if cent else float("nan"),
        risk_allowance=allowances if any(allowances.values()) else {},
        premium_paid=paid_day,
    )
