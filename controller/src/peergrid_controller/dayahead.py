"""Day-ahead allocation: every MG's net P2P export for every interval of the day, by exchange ADMM.

Promises: `allocate(scenario)` runs the exchange problem of Boyd et al., "Distributed optimization and
statistical learning via ADMM" §7.3.2, over the whole day: minimise Σ_i f_i(q_i) subject to Σ_i q_i,t = 0 in
every interval t, where q_i,t is MG i's net P2P export (kWh) and f_i its own day cost (the schedule MILP of
schedule.py). Each MGMC repeatedly solves its own day with q_i free, paying the price λ_t for every kWh it
takes and a proximal term (ρ/2)(q_i,t − q_i,t^k + q̄_t^k)²; the coordinator (any node: the computation is
public) only sees positions and sends back λ_t ← λ_t − ρ·q̄_t. Only positions and prices are exchanged, never
DER data. With unlimited DSO connections it stops once no MG
has more than one tick per kWh of its positions still moving (`value_per_kwh`; by default the stability
check's default tolerance: the issue's "until no MGMC changes beyond a tolerance", in money;
`dayexchange.at_stake` values an MG's move and, conservatively, a share of the imbalance at its own retail
less feed-in). Each MG judges that alone (`dayexchange.settled`: public moves and imbalance, its own
spread); on a recorder each posts its verdict on an iteration with its next position, and after the value
stop that next round is posted and abandoned by the close (one more solve per MG, counted in
`iterations`), so the chain shows every MG's settled verdict and the coordinator used nothing private.
That is a stop rule, not a bound on the distance to ADMM's limit:
what it leaves is measured (96 quarter-hours, share of the central gain: 6 / 20 / 100 MGs 134 / 264 / 547
→ 20 / 34 / 27 iterations, 0.99998 / 0.99936 / 0.99969 → 0.9985 / 0.9982 / 0.9991; 20 MGs seeds 2 and 3
0.9994 and 0.9963 in 17 and 24; at half a tick 0.9990–0.9995 in 41–49) and the outcome is checked exactly
after (forward.py: each MG's IR; simulate_dayahead.py: stability with the uplift). Otherwise, and always
with `value_per_kwh` 0, it stops when the worst interval's imbalance (primal residual) and the largest move
of any MG (dual residual) are both within a tolerance, or at `max_iterations` (`converged` false): `tolerance_kwh`
(0.01) in the end, `relaxed_tolerance_kwh` (0.1) for the relaxed phase below, whose prices only decide
genset on/off and are refined by the phase after (Boyd §3.3.1: ADMM reaches modest accuracy fast and high
accuracy slowly; measured, 96 quarter-hours, share of the central gain: 20 MGs seeds 1–3, 425/301/421 →
264/314/230 iterations, 0.99935/0.99997/0.99968 → 0.99936/0.99999/0.99999; 6 MGs 166 → 134, 1.0000 both;
100 MGs 625 → 547, 0.99982 → 0.99969; the 20-MG rules day unchanged, 897, 0.9916: its rules are judged from
0.1 kWh on and send the relaxed phase off again to its cap). Over-relaxation (Boyd §3.4.3, α 1.2–1.8) and
Nesterov acceleration with restart (Goldstein et al. 2014) took more iterations in trials (6 MGs:
186–315 against 134): every response is an LP, piecewise constant in the price, without the smoothness
either relies on. On the 20-MG rules days with the value stop (seeds 1-8, 117 rounds on average) they and
Anderson acceleration of the prices took 145 (α 1.6), 120 (Goldstein, restarted on 51-66 % of the
iterations) and 178 (m = 5, shares down to 0.84): α inflates the vertex flips' moves the value stop reads
and keeps residual balancing from raising ρ (docs/market.md, M9). `free_tolerance_kwh` may loosen the
final stop too on a day without floors or caps (0.1:
20 MGs 154/154/151 iterations, shares within 0.0001), but it is off by default: the price it leaves can sit a tick off a break-even price (two MGs
clearing at feed-in stopped at 0.0492, rounded to 0.049, and the seller declined its whole trade), and a
rules day stopped at 0.1 fell from 0.992 to 0.974 of the central gain (its rules are judged at the price
found, on the chain's tick), so such a day's kWh stop is always `tolerance_kwh`. A rules day stops by value
too, its rules judged whenever the value stop fires (it ends only where the prices found change no fee
or ban) and its fees dropped only 5 ticks clear of their rules, judged from 3 kWh residuals on: 20-MG
rules days, seeds 1-8, 474-958 -> 80-166 iterations, shares -0.0001 to +0.032 of the central gain
against the kWh stops, all stable; 100 MGs 699 -> 95, 0.790 -> 0.846 (genset commitments make these
days path-dependent; docs/market.md has each seed).

The proximal square is piecewise linear (daymodel.py: HiGHS refuses mixed-integer QPs and its QP solver
cycled on these models), so every iteration is a warm LP. Genset on/off (non-convex) in three steps: ADMM
first runs on the LP relaxation of on/off (convex, so it converges; its prices approximate the convex-hull
prices, those that best support a non-convex optimum); each genset MG then decides its own on/off once, by
its MILP at those prices with its proximal term (at `commit_weight`·ρ: the relaxation's prices leave a
genset indifferent over a range, and the term picks the plan nearest its relaxed position); ADMM then goes on
with every commitment fixed (LPs again). `recommits` > 1 re-decides at the prices found, as many times. Each
MG decides from public prices and its own data only. The allocation is the optimum of the day with those
commitments, not of the MILP; each MG's delivered schedule is re-solved as a MILP with its trades fixed
(forward.py).

Owner rules that bind in a uniform-price setting: never more than the maximum quantity per interval (a bound
throughout); never sell below the floor, never buy above the cap at λ_t: each becomes a fee per kWh
(`rule_fees`: the floor's excess over the MG's feed-in, the retail price's excess over the cap), so the MG's
response moves smoothly as λ_t crosses its rule instead of switching a side on or off (which swung ADMM
without end, and sides banned for good left MGs far from their best response: review4 F5). Where the price
found permits a side its fee is dropped (there it would only distort the MG's response); if the price then
crosses the rule, the fee comes back for good. A side whose rule has no fee there (a floor at or below
feed-in, a cap at or above retail) is banned when held against its rule and let back one MG at a time.
Each MG judges its own rules (its tariff says where a fee stands in for a rule; dayjudge.OwnRules) and
posts its judgement with its next position; who is let back is public, computed from those judgements
and the rules on the chain (dayjudge.Coordination): dayrounds.py says when each part is in force.
An MG with a trading window (`DayAheadConfig.windows`: the window its MGMC states on the chain with its first
forward accept) answers the session as a day that trades only inside it: its day is solved with P2P fixed to
nothing outside (its bounds there [0, 0]: `dayjudge.OwnRules`), not its whole day's answer clipped, which would
be a plan its own dispatch does not follow; positions outside would move the prices with energy that can never
clear, and its make-whole claim's held day and real day are then one day (review30 R30-2).
A clean-only buyer takes no day-ahead position on the buy side (the general book does not know whose energy
is clean) unless `DayAheadConfig.clean_book` opens a clean book beside the general one (cleanbook.py): only on
a day with a clean-only member, and on a recorder only where it keeps a clean book (`keeps_clean`: the
chain's exchange contract does), so every other day is the same to the byte. On a clean session the book runs over 2n prices (general, then
clean) with one ρ; the owners' floors and caps are judged on the general half; a clean-only buyer's cap on a
clean kWh is cap + premium; each clean seller's switch (sells clean in an interval, or may buy general there)
is decided once, by its MILP at the relaxed phase's prices, like genset on/off ("fixed"), or in every solve
("exact"). The allocation then carries `clean_prices` and `clean_positions`; its `positions` are the general
book's.
The ADMM's public arithmetic and each MG's private side are dayexchange.py's, its rounds in the chain's
units with every move on an `ExchangeRecorder` dayrounds.py's (`Exchange`); the owners' rules as bounds and
fees are dayrules.py's, their judgement dayjudge.py's.
Deterministic (HiGHS single-threaded, fixed seed, MGs in scenario order). Never reads clocks or I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from peergrid_controller.cleanbook import CleanDayModel, Side, clean_kind, clean_session, decide_switch
from peergrid_controller.dayexchange import (
    NANO,
    DayAheadConfig,
    DayAheadError,
    ExchangeRecorder,
    Stop,
    keeps_clean,
)
from peergrid_controller.daymodel import DayModel
from peergrid_controller.dayrounds import Exchange
from peergrid_controller.dayrules import rules_in_force
from peergrid_controller.model import Microgrid, Scenario


@dataclass(frozen=True)
class Allocation:
    prices: tuple[float, ...]  # λ_t, currency per kWh
    positions: dict[str, tuple[float, ...]]  # kWh net export per interval (+ sell), as ADMM left them
    # rounds of MG answers after the first responses: the ADMM iterations, plus the final round on a
    # recorder's day stopped by value or where the rules were judged (answers posted with every MG's verdict
    # and judgement on the last iteration, then abandoned by the close, so `prices`, `positions` and the
    # residuals are the last iteration's)
    iterations: int
    primal_residual: float  # kWh: worst interval's |Σ_i q_i,t|
    dual_residual: float  # kWh: largest |Δq_i,t − Δq̄_t| of the last iteration
    converged: bool
    solves: int  # MG solves in all (one per MG per iteration, plus the first responses and re-commitments)
    recommits: int  # times genset on/off was re-decided at the prices found
    relaxed_iterations: int = 0  # of `iterations`, those on the LP relaxation of genset on/off
    # which stop ended it: both residuals within the kWh tolerance, the value stop (`at_stake`; residuals may
    # be kWh), or max_iterations (`converged` false)
    stop: Stop = "kwh"
    # a clean session's clean book (cleanbook.py; empty otherwise): λᶜ_t, and each MG's clean position c_t (kWh,
    # + sale); `positions` are then the general book's g_t, and an MG's physical net P2P export is g + c
    clean_prices: tuple[float, ...] = ()
    clean_positions: dict[str, tuple[float, ...]] = field(default_factory=dict)
    clean_intervals: dict[str, tuple[bool, ...]] = field(default_factory=dict)  # each seller's decided switch


def _check_prices(scenario: Scenario, prices: Sequence[float]) -> None:
    if len(prices) != scenario.intervals:
        raise DayAheadError(f"{len(prices)} starting prices for {scenario.intervals} intervals")
    bad = [t for t, p in enumerate(prices) if not math.isfinite(p)]
    if bad:
        raise DayAheadError(f"starting price of interval {bad[0]} is not finite ({prices[bad[0]]})")


def _check_windows(scenario: Scenario, cfg: DayAheadConfig) -> None:
    names = {mg.name for mg in scenario.microgrids}
    for name, first, last in cfg.windows:
        if name not in names:
            raise DayAheadError(f"windows names {name!r}, which is no microgrid of the scenario")
        if last >= scenario.intervals:
            raise DayAheadError(
                f"{name}'s window [{first}, {last}] ends past the session's last interval ({scenario.intervals - 1})"
            )


def starting_prices(scenario: Scenario) -> tuple[float, ...]:
    """Midway between the lowest feed-in and the highest retail price of each interval."""
    mgs = scenario.microgrids
    return tuple(
        (min(mg.tariff.feed_in[t] for mg in mgs) + max(mg.tariff.retail[t] for mg in mgs)) / 2
        for t in range(scenario.intervals)
    )


def allocate(
    scenario: Scenario,
    config: DayAheadConfig | None = None,
    initial_prices: Sequence[float] | None = None,
    recorder: ExchangeRecorder | None = None,
) -> Allocation:
    """The day's allocation (see the module contract). With `recorder`, every move goes to it as it is made
    and its prices are checked against ours after every step (DayAheadError on a refusal or a difference)."""
    cfg = config or DayAheadConfig()
    if len(scenario.microgrids) < 2:
        raise DayAheadError("the day-ahead stage needs at least two microgrids")
    lengths = {mg.intervals for mg in scenario.microgrids}
    if len(lengths) != 1:
        raise DayAheadError(f"microgrids have different numbers of intervals: {sorted(lengths)}")
    _check_windows(scenario, cfg)
    prices = list(initial_prices) if initial_prices is not None else list(starting_prices(scenario))
    _check_prices(scenario, prices)
    # the clean book only where a member is clean-only, and on a recorder only where it keeps one (the
    # chain's: the exchange contract's clean session); elsewhere the general book alone
    clean = cfg.clean_book and clean_session(scenario) and (recorder is None or keeps_clean(recorder))
    ex = Exchange(scenario, cfg, prices, recorder, clean=clean)
    ex.open()
    try:
        return _allocate(scenario, cfg, ex)
    except Exception as exc:
        # never leave the session open on the chain: close it where it stands, and say so if that fails
        note = ex.abandon()
        if isinstance(exc, DayAheadError):
            raise DayAheadError(f"{exc}{note}") from exc
        if note:
            exc.add_note(note.removeprefix("; "))
        raise


def _allocate(scenario: Scenario, cfg: DayAheadConfig, ex: Exchange) -> Allocation:
    """`allocate`'s three phases on an opened exchange."""
    dt = scenario.interval_hours
    mgs = scenario.microgrids

    # 1. ADMM on the LP relaxation of genset on/off: a convex problem, so it converges, and its prices
    # approximate the convex-hull prices (the prices that best support the non-convex optimum)
    side = cast(Side, cfg.clean_side)
    models = [model_for(mg, dt, ex.clean, side, relaxed=bool(mg.gensets)) for mg in mgs]
    ex.first_responses(models)
    # a clean session's sellers decide their switch once too, like genset on/off ("fixed"): the same phases
    sellers = ex.clean and side == "fixed" and any(clean_kind(mg) == "seller" for mg in mgs)
    gensets = any(mg.gensets for mg in mgs) or sellers
    # the final stop: tight where a floor or cap is judged at the prices found (on the chain's tick: a
    # judgement at loose prices flips fees and bans for good), loose elsewhere (the imbalance left is
    # matched pro rata and every MG checked exactly by forward.py)
    ruled = any(rules_in_force(mg) for mg in mgs)
    tolerance = cfg.tolerance_kwh if ruled else cfg.free_tolerance_kwh
    # a rules day's floors and caps are judged whenever the value stop fires (Exchange.run); where an MG's
    # DSO connection is limited a P2P kWh can be worth more than retail less feed-in (VOLL, curtailment), which
    # `at_stake` would undervalue: kWh stops there too
    limited = any(
        math.isfinite(mg.tariff.max_import_kw) or math.isfinite(mg.tariff.max_export_kw) for mg in mgs
    )
    by_value = not limited
    # the clean sellers' re-decisions that follow the phase after the first decision (by count)
    redecisions = cfg.clean_decisions - 1 if sellers else 0
    if gensets:
        converged = ex.run(models, cfg.relaxed_iterations, cfg.relaxed_tolerance_kwh, by_value)
    else:
        ex.final_phase = True  # no decision follows: the value stop's floor applies (`Book.final_phase`)
        converged = ex.run(models, cfg.max_iterations, tolerance, by_value)
    relaxed_iterations = ex.iterations if gensets else 0
    # 2. each genset MG commits alone: its own MILP at those prices with its proximal term (the plan nearest
    # its relaxed position that pays), then 3. ADMM with every commitment fixed (LPs again)
    recommits = 0
    chosen: dict[int, tuple[tuple[bool, ...], ...]] = {}
    switched: dict[int, tuple[bool, ...]] = {}
    while gensets and recommits < cfg.recommits:
        recommits += 1
        changed = False
        for i, mg in enumerate(mgs):
            if sellers and clean_kind(mg) == "seller":
                changed |= _switch(ex, cfg, models, switched, i, mg)
                continue
            if not mg.gensets:
                continue
            fresh = model_for(mg, dt, ex.clean, side)
            fresh.trade(ex.price_floats, *ex.bounds(i), *ex.fees(i))
            fresh.proximal(
                ex.price_floats,
                cfg.commit_weight * ex.rho_float,
                ex.anchor(i),
                cfg.resolution_kwh,
                recommit=True,
            )
            fresh.solve()
            ex.solves += 1
            if chosen.get(i) != fresh.commitment():
                chosen[i] = fresh.commitment()
                models[i] = model_for(mg, dt, ex.clean, side, commitment=chosen[i])
                changed = True
        if not changed:
            break
        ex.final_phase = recommits == cfg.recommits and not redecisions
        converged = ex.run(models, cfg.max_iterations, tolerance, by_value)
    # each seller decides again at the prices found (a switch decided at the relaxed prices can be wrong at
    # the final ones, and then deviating pays), `clean_decisions` times in all, each followed by a run
    # whether or not a switch changed: who changed is private, so the phases are public only by count (a
    # run where nothing changed stops after an iteration or two)
    for done in range(redecisions):
        for i, mg in enumerate(mgs):
            if clean_kind(mg) == "seller":
                _switch(ex, cfg, models, switched, i, mg)
        ex.final_phase = done == redecisions - 1
        converged = ex.run(models, cfg.max_iterations, tolerance, by_value)
    ex.close(models)
    n = scenario.intervals
    prices = tuple(round(p / NANO, 9) for p in ex.prices)
    positions = {mg.name: tuple(round(v / 1000, 9) for v in qi) for mg, qi in zip(mgs, ex.q_wh, strict=True)}
    return Allocation(
        prices=prices[:n],
        positions={name: q[:n] for name, q in positions.items()},
        iterations=ex.iterations + ex.verdict_round,
        primal_residual=ex.primal,
        dual_residual=ex.dual,
        converged=converged,
        solves=ex.solves,
        recommits=recommits,
        relaxed_iterations=relaxed_iterations,
        stop=ex.stop,
        clean_prices=prices[n:],
        clean_positions={name: q[n:] for name, q in positions.items()} if ex.clean else {},
        clean_intervals={mgs[i].name: on for i, on in sorted(switched.items())},
    )


def model_for(
    mg: Microgrid,
    dt: float,
    clean: bool,
    side: Side,
    relaxed: bool = False,
    commitment: tuple[tuple[bool, ...], ...] | None = None,
    clean_intervals: tuple[bool, ...] | None = None,
) -> DayModel:
    """An MG's day model: its clean column on a clean session (cleanbook.py), DayModel alone otherwise."""
    if not clean:
        return DayModel(mg, dt, relaxed=relaxed, commitment=commitment)
    return CleanDayModel(mg, dt, relaxed, commitment, side, clean_intervals)


def _switch(
    ex: Exchange,
    cfg: DayAheadConfig,
    models: list[DayModel],
    switched: dict[int, tuple[bool, ...]],
    i: int,
    mg: Microgrid,
) -> bool:
    """Clean seller i decides alone, once, where it sells clean (cleanbook.py's switch), as a genset MG its
    on/off: its MILP at the prices found with its proximal term at `commit_weight`·ρ (the plan nearest its
    relaxed position that pays), then LPs with the switch fixed. True if that changed its switch. Its model
    is the decision's, fresh, even where the switch stands, as an edge member's is
    (`dayahead_rounds.switch`): a warm model and a fresh one of the same LP can answer different optimal
    vertices where the proximal term ties, and keeping the warm one here took a five-MG clean day one
    iteration apart from the edge's once the runs between decisions were shorter (docs/market.md, R5)."""
    on, model = decide_switch(
        mg, ex.dt, ex.price_floats, ex.rho_float, ex.bounds(i), ex.fees(i), ex.anchor(i),
        cfg.commit_weight, cfg.resolution_kwh,
    )  # fmt: skip
    ex.solves += 1
    changed = switched.get(i) != on
    switched[i], models[i] = on, model
    return changed
