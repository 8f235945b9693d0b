"""The day-ahead market's day in the simulation (simulate.py with `market="dayahead"`), from an allocation on.

Promises: `play_day(scenario, cfg, venue, conventional, central, allocation)` takes the day's allocation (dayahead.py:
exchange ADMM) and returns the day's `SimulationResult`: the trades checked by every MG exactly against its
conventional day (forward.commit) and then, on a venue whose exchange clears them (the MGMC chain), accepted
by each MG and computed by the exchange contract from the closed session (forward.clear), elsewhere recorded
through the market contract (forward.post), so that each MG
dispatches its day with them fixed; make-whole (uplift) payments for the MGs that would gain by deviating alone
(uplift.py; the gain valued at an MG's own floor or cap where that is the price, what it keeps by being rationed
there reported apart as `rationed_at_own_rule`) and the stability check re-solved with them; the delivery faults
(`cfg.delivery_faults`, and `cfg.random_faults` drawn among the trading MGs not given one) played (delivery.py):
each trade settled once, interval by interval, for what was delivered, the MG at fault re-planning its day, its
counterparties covering the gap with the DSO and paid its price by the MG at fault (imbalance compensation), a
payee that fell short losing its credit (uplift.withhold); then, after the day, the payments posted through the
venue (`pay`, once: the uplift counted in the last interval's MG costs, the compensation in the fault's). A
venue that meters (venues.metering_venue) is told each trade's own shortfalls before the settlements: on a
compensating chain the settlements move the compensation and its `pay` is the check of the day's figure.
`SimulationResult.dayahead` carries the stage's iterations, its day-level stability check, the uplift and per MG
how far above its conventional day the faults left it. With an exchange fee (`cfg.dayahead.exchange_fee`) every
MG's check and deviation price it, each member pays it on its cleared Wh, and the make-whole is paid from the fund
it fills (uplift_fund.py: `cfg.uplift_fund` carried over, `cfg.uplift_reserve` of it reserved, `cfg.uplift_fund_cap`), posted through the venue's fund
account (`pay_fund`) instead of the payers' charges; the summary then carries the fees and the fund. Deterministic: same inputs, same result.
Assumes the scenario's profiles are the forecasts. Never reads clocks or I/O beyond the venue it is given.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from peergrid_controller import baselines, exchange_fee
from peergrid_controller.bargaining import Venue
from peergrid_controller.dayahead import Allocation
from peergrid_controller.delivery import deliver, fractions, seeded_faults
from peergrid_controller.deviation import at_own_commitment
from peergrid_controller.forward import Commitment, clear, commit, deviation_gains, own_rule_fees, post
from peergrid_controller.model import Scenario
from peergrid_controller.settling import UPLIFT_REF, pay_compensation, pay_fund, pay_uplift, settle_interval
from peergrid_controller.simrecords import DayAheadSummary, IntervalResult, SimulationConfig, SimulationResult
from peergrid_controller.uplift import MICRO, Uplift, earns, make_whole, withhold
from peergrid_controller.uplift_fund import FundOutcome, fund_make_whole, settle_fund
from peergrid_controller.venues import exchange_recorder, forward_clearing, metering_venue


def windowed_gains(
    scenario: Scenario,
    committed: Commitment,
    cfg: SimulationConfig,
    uplift: Uplift | None = None,
    own_rules: bool = False,
    names: Collection[str] | None = None,
) -> dict[str, float]:
    """`forward.deviation_gains` with each MG deviating only inside its own window (`cfg.dayahead.windows`;
    none: the whole day), in the scenario's order: an MG that answered the session as a day trading only its
    window could never have traded outside it, so a gain there is none its commitment cost it (M1)."""
    groups: dict[range | None, set[str]] = {}
    for mg in scenario.microgrids:
        if names is None or mg.name in names:
            groups.setdefault(cfg.dayahead.window_of(mg.name), set()).add(mg.name)
    found: dict[str, float] = {}
    for window, group in groups.items():
        found |= deviation_gains(scenario, committed, uplift, own_rules, group, window)
    return {mg.name: found[mg.name] for mg in scenario.microgrids if mg.name in found}


def play_day(
    scenario: Scenario,
    cfg: SimulationConfig,
    venue: Venue,
    conv: baselines.BaselineCosts,
    cent: baselines.BaselineCosts | None,
    allocation: Allocation,
) -> SimulationResult:
    """Forward trades for the day, committed before the first interval, delivered and settled interval by
    interval; every MG dispatches its day with its trades fixed (the check's own MILP)."""
    fee = cfg.dayahead.exchange_fee
    committed = commit(scenario, allocation, conv, fee=fee)
    clean = {mg.name: not mg.gensets for mg in scenario.microgrids}
    clearing = forward_clearing(venue)
    agreed = (
        clear(clearing, scenario, committed, clean) if clearing is not None else post(venue, committed, clean)
    )
    trading = {name for day in agreed for tr in day for name in (tr.seller, tr.buyer)}
    tolerance = {
        mg.name: cfg.bargaining.price_tolerance
        * max(
            sum(abs(tr.quantity_kwh) for day in agreed for tr in day if mg.name in (tr.seller, tr.buyer)), 1.0
        )
        for mg in scenario.microgrids
    }
    gains = windowed_gains(scenario, committed, cfg)
    # what is owed: the gain valued at the MG's own rules (uplift.py), solved again only for the MGs that
    # would be owed and whose own floor or cap is the price somewhere
    at_rule = {
        mg.name
        for mg in scenario.microgrids
        if earns(gains[mg.name], tolerance[mg.name])
        and own_rule_fees(mg, committed.prices, fee) != (None, None)
    }
    valued = gains | windowed_gains(scenario, committed, cfg, own_rules=True, names=at_rule)
    conventional_day = {name: sum(costs) for name, costs in conv.per_interval.items()}
    # with an exchange fee the make-whole is paid from the fund it fills (uplift_fund.py), else by the payers
    fees = {
        name: exchange_fee.due(fee, sum(exchange_fee.traded_wh(agreed, name))) for name in sorted(trading)
    }
    if fee:
        uplift = fund_make_whole(valued, tolerance, fees, cfg.uplift_fund)
    else:
        uplift = make_whole(valued, tolerance, committed.day_cost, conventional_day, trading)
    # stability with the payments: each payee's best response re-solved under the payments' rules; a
    # payer's charge is due whatever it does, so its model and gain are unchanged
    after = dict(valued)
    if uplift.credits:
        after |= windowed_gains(scenario, committed, cfg, uplift, own_rules=True, names=set(uplift.credits))
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
    metering = metering_venue(venue)
    if metering is not None:  # a compensating chain computes it from each side's own shortfall
        metering.metered(delivery.shortfalls)
    fund: FundOutcome | None = None
    if fee:
        paid, fund = settle_fund(
            uplift,
            delivery.defaulted,
            fees,
            cfg.uplift_fund,
            cfg.uplift_fund_cap,
            reserve_before=cfg.uplift_reserve,
        )
    else:
        paid = withhold(uplift, delivery.defaulted)
    refund = {name: r / MICRO for name, r in fund.refunds.items()} if fund is not None else {}
    results = []
    for t in range(scenario.intervals):
        settle_interval(venue, t, agreed[t], delivery.delivered[t])
        results.append(
            IntervalResult(
                interval=t,
                p2p_welfare=-sum(costs[t] for costs in delivery.physical_cost.values()),
                central_welfare=-cent.interval_total(t) if cent else float("nan"),
                conventional_welfare=-conv.interval_total(t),
                # every MGMC moved once per ADMM iteration, for every interval of the day at once, and once
                # before them (its first response at the opening prices): its posts on the exchange
                rounds=allocation.iterations + 1,
                converged=allocation.converged,
                stable=stable,
                max_taker_gain=max(after.values()),
                max_pricing_gain=0.0,  # one uniform price per interval, no seller prices alone
                mg_cost_p2p={
                    name: delivery.physical_cost[name][t]
                    - delivery.payments[name][t]
                    - (paid.net(name) + refund.get(name, 0.0) if t == scenario.intervals - 1 else 0.0)
                    for name in sorted(delivery.physical_cost)
                },
                mg_cost_conventional={name: costs[t] for name, costs in conv.per_interval.items()},
                trades=agreed[t],
                delivered=delivery.delivered[t],
            )
        )
    # earned by delivering every committed position: paid after the day, to those that did (with a fee: the
    # fees into the fund, the credits and the refunds out of it)
    if fund is not None:
        pay_fund(venue, fund)
    else:
        pay_uplift(venue, paid, UPLIFT_REF)
    # what the MGs at fault owe their counterparties for the cover (already in the interval costs above)
    pay_compensation(venue, delivery.compensation)
    venue.flush()
    compensation: dict[str, int] = {}
    for p in delivery.compensation:
        compensation[p.payer] = compensation.get(p.payer, 0) - p.amount
        compensation[p.payee] = compensation.get(p.payee, 0) + p.amount
    worse = {
        name: round(
            delivery.day_cost(name) - paid.net(name) - refund.get(name, 0.0) - conventional_day[name], 9
        )
        for name in sorted(delivery.physical_cost)
    }
    # who earns before the make-whole, and for the genset MGs among them what is left with their gensets held
    # at their committed on/off (review28 R28-3: the value stop's part; the rest is re-committing them)
    earning = tuple(name for name in sorted(valued) if earns(valued[name], tolerance[name]))
    held = at_own_commitment(scenario, committed, earning)
    summary = DayAheadSummary(
        iterations=allocation.iterations,
        solves=allocation.solves,
        recommits=allocation.recommits,
        converged=allocation.converged,
        stop=allocation.stop,
        moves_on_chain=exchange_recorder(venue) is not None,
        primal_residual=allocation.primal_residual,
        dual_residual=allocation.dual_residual,
        declined=committed.declined,
        max_deviation_gain=max(gains.values()),
        max_gain_ratio=max(_ratio(valued[name], tolerance[name]) for name in valued),
        earning=earning,
        max_gain_ratio_held=max(
            (_ratio(min(valued[n], held.get(n, valued[n])), tolerance[n]) for n in earning), default=0.0
        ),
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
        compensation={name: a / MICRO for name, a in sorted(compensation.items())},
        worse_than_conventional={
            name: w for name, w in worse.items() if w > 1e-6 * max(1.0, abs(conventional_day[name]))
        },
        exchange_fee=fee,
        fee_paid={name: f / MICRO for name, f in fund.fees.items()} if fund is not None else {},
        fee_collected=fund.collected / MICRO if fund is not None else 0.0,
        fund_before=fund.fund_before / MICRO if fund is not None else 0.0,
        fund_after=fund.fund_after / MICRO if fund is not None else 0.0,
        fund_refund=refund,
        fund_reserve_before=fund.reserve_before / MICRO if fund is not None else 0.0,
        fund_reserve_after=fund.reserve_after / MICRO if fund is not None else 0.0,
    )
    return SimulationResult(scenario.name, tuple(results), cent.mip_gap if cent else float("nan"), summary)


def _ratio(gain: float, tolerance: float) -> float:
    """An MG's deviation gain over its tolerance (a tolerance of 0, a price_tolerance set to 0: inf where it
    earns, else 0)."""
    if tolerance > 0:
        return gain / tolerance
    return math.inf if earns(gain, tolerance) else 0.0
