"""The deployed edge's make-whole claim: this MGMC's deviation gain and surplus on a cleared day-ahead session.

Promises:
- `claim_for(mg, dt, state, session, me, window=None)`: this MG's claim from public chain state (the session's
  closing prices, the forward trades its clear recorded and this MG's own final stepped positions) and its own
  model only, by the simulation's rule (simulate_dayahead.py), its deviation trading only in the chain
  intervals of its trading window (and where it holds a trade): the window its first accept stated on the
  chain (`exchange_state.trading_window`, which the chain bounds its gain over: `uplift.gain_bound`), else
  `window` (None: the whole session): an MGMC that takes part in a run of the day inside the session could
  never have traded at the closing prices outside it (L8: a lab MG trading 2 of 96 intervals claimed 318.45
  for the other 94). Its gain is the lesser of two (L13, review30): its real day's (nothing traded outside its
  window, the day the chain gives it) and its held day's, where both the day it deviates from and its
  deviation keep the positions it answered the session with outside its window (its stepped post,
  `exchange_state.stepped`; `deviation_gains(held=)`). It answered the whole session, so its positions inside
  the window are its plan's for a day that trades outside too (a battery filled at the window's price for a
  later sale); valued against a day that trades nothing outside, that plan showed as a gain it was denied
  (L12: mg5 claimed 8.02 on the lab's day with a fee, where its whole day gains 0.0000034; its 0.114 without a
  fee was the same): the held day removes that. But the held positions bind nothing (the chain refuses trades
  outside a stated window), so alone they would let a post it never makes raise its claim (R30-1: the hand
  day's 0 became 1.0): the real day's gain bounds it. A held day with no schedule (its held positions out of
  its reach, R30-3) holds the largest share of them that has one (bisection, at most REACH_STEPS dispatches;
  share 0 is the real day), logged with the share: a post past its reach is valued at what it reaches, not at
  the real day's gain one Wh past it (review31 R31-1). The held day is solved only where the real day's gain
  earns (else the lesser earns nothing either), and only for an MG whose intervals couple (`couples`: a
  battery, a genset): for the others holding changes nothing; nor where every position outside is 0 (an MGMC
  that states its window answers nothing there since M1: its held day is its real day). On a clean session
  (two books) nothing is held: its gain is its real day's (R30-8). Its committed day
  (`forward_accept.dispatch` with its trades fixed, payments at the trades' prices), its conventional day (its
  own baseline), its deviation gain at the closing prices (`deviation.deviation_gains` on a one-MG scenario;
  valued at its own floor or cap where that is the price), its tolerance (one price tick per kWh it trades, at
  least one kWh's); gain rounded up to a micro-unit when it exceeds the tolerance (else 0), surplus
  (conventional less committed, the day it really has: nothing outside its window) rounded down (0 when not
  positive). Nothing of its model leaves it but these two figures. On a session opened with an exchange fee
  (its record's `fee`, `market_fee.session_fee`) the fee is in every figure as the simulation has it
  (`Commitment.fee`): its committed day pays the fee the chain collects on its cleared Wh
  (`exchange_fee.by_interval`), its deviation trades at p ∓ fee (a held position too, on both days alike), its
  own floor and cap are net of it (`own_rule_fees(..., fee)`), and its surplus is claimed as 0 (the fund pays,
  the chain reads no surplus there: `uplift_fund`). A gain the chain would refuse because this MG's rules set
  no `max_quantity` (and the DSO posted no capacity) for an interval of the session inside its window
  (review17 U-C) is claimed as 0, logged; one above the chain's bound (`uplift.gain_bound` over the window the
  chain holds: `max_quantity` cut to the DSO's `market.capacity` where posted, genesis `uplift_max_spread`
  where the DSO did not price it) is claimed at the bound, logged with both (review18 C-2: refused whole it
  was paid nothing). `chain_figures` reads what it needs off the chain, `claim_from` computes it from those
  alone (no chain read: it runs in a thread, review18 C-3).
Never reads another MG's private data; solves only this MG's MILPs. `dayahead_uplift` posts the claim.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from peergrid_controller.baselines import conventional as conventional_costs
from peergrid_controller.deviation import deviation_gains, own_rule_fees
from peergrid_controller.exchange_fee import by_interval, per_kwh, traded_wh
from peergrid_controller.forward import Commitment
from peergrid_controller.forward_accept import dispatch
from peergrid_controller.market import Trade
from peergrid_controller.matching import net_by_interval
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.moves import BargainingConfig
from peergrid_controller.schedule import ScheduleError
from peergrid_controller.uplift import MICRO, earns
from peergrid_ledger.contracts import exchange_state, uplift
from peergrid_ledger.contracts.market_fee import session_fee

log = logging.getLogger("peergrid.edge.uplift")
_T = TypeVar("_T")


@dataclass(frozen=True)
class UpliftClaim:
    session: str
    posted: bool  # this run posted it (False: an earlier run did, or it failed: `reason`)
    reason: str  # why there is no claim of this MG on the chain ("" when there is one)
    gain: int  # micro-units claimed (0: none owed)
    surplus: int  # micro-units claimed
    deviation_gain: float  # currency: its gain from deviating alone (at its own rules where they bind)
    day_cost: float  # its committed day cost, payments included
    conventional: float  # its conventional day cost
    tolerance: float  # currency: the gain owed nothing
    # micro-units: the chain's bound on its gain (None: no claim computed, or no max_quantity rule: no bound)
    bound: int | None = None


def committed_trades(
    state: Any, record: dict[str, Any], session: str, me: bytes, name: str
) -> tuple[tuple[Trade, ...], ...]:
    """This MG's forward trades per session interval (the clear's, still standing), named `name` for itself."""
    n, first = record["intervals"], record["first_interval"]
    per: list[list[Trade]] = [[] for _ in range(n)]
    for agreed in uplift.session_trades(state, record, session):
        if me not in (agreed["seller"], agreed["buyer"]):
            continue
        seller = name if agreed["seller"] == me else agreed["seller"].hex()
        buyer = name if agreed["buyer"] == me else agreed["buyer"].hex()
        t = agreed["interval"] - first
        per[t].append(Trade(t, seller, buyer, agreed["quantity"] / 1000, agreed["price"] / 1000))
    return tuple(tuple(day) for day in per)


@dataclass(frozen=True)
class ClaimFigures:
    """What a claim reads off the chain (`chain_figures`, on the event loop), so that its MILPs (`claim_from`)
    run on plain data in a thread."""

    session: str
    first: int  # the session's first chain interval
    prices: tuple[float, ...]  # closing prices, currency per kWh
    clean: tuple[float, ...]
    trades: tuple[tuple[Trade, ...], ...]  # this MG's forward trades per session interval
    window: range | None  # the chain intervals its deviation trades in (None: the whole session)
    unbounded: int | None  # the chain window's first interval with no max_quantity rule nor capacity
    bound: int  # micro-units: the most the chain takes (`uplift.gain_bound` over the window it holds)
    fee: int = 0  # the session's exchange fee, nano per kWh per side (0: none)
    # Wh per session interval: its final stepped positions (one book), held outside its window; () none
    positions: tuple[int, ...] = ()


def final_positions(state: Any, record: dict[str, Any], session: str, me: bytes) -> tuple[int, ...]:
    """This MG's positions (Wh per session interval) in its last post a step priced (what its forward accept
    starts from: `forward_first.first_accept`); () on a clean session (two books: nothing is held) or where
    it has no stepped post."""
    final = exchange_state.stepped(state, session, me)
    if record.get("clean") or final is None or len(final["positions"]) != record["intervals"]:
        return ()
    return tuple(int(q) for q in final["positions"])


def couples(mg: Microgrid) -> bool:
    """Whether the MG's intervals couple in its model (a battery's charge, a genset's up/down times and ramps):
    only then can a position it holds outside its window move its best response inside (the others deviate in
    each interval alone, so its claim reads no positions for them)."""
    return bool(mg.batteries or mg.gensets)


def chain_figures(
    state: Any,
    session: str,
    me: bytes,
    name: str,
    window: range | None = None,
    max_spread: int = 0,
    hold: bool = True,
) -> ClaimFigures:
    """The claim's chain figures (`ClaimFigures`); `window` where this MG's accept stated none on the chain,
    `max_spread` the genesis `uplift_max_spread`; `hold` False: its positions are not read (`couples`: they
    change nothing). ValueError when the session is not on the chain."""
    record = exchange_state.session(state, session)
    if record is None:
        raise ValueError(f"no exchange session {session!r} on this replica")
    # the window this MG stated with its first accept is the one the chain bounds its gain over: its claim
    # deviates over that one, so the two agree (`window` only where it stated none)
    stated = exchange_state.trading_window(state, session, me)
    within = stated or window
    covers = within is None or all(record["first_interval"] + t in within for t in range(record["intervals"]))
    return ClaimFigures(
        session,
        int(record["first_interval"]),
        tuple(exchange_state.micro_per_wh(p) / 1000 for p in record["prices"]),
        tuple(exchange_state.micro_per_wh(p) / 1000 for p in record.get("clean_prices", ())),
        committed_trades(state, record, session, me, name),
        within,
        uplift.unbounded_interval(state, record, me, stated),
        uplift.gain_bound(state, record, me, stated, max_spread),
        session_fee(record),
        () if covers or not hold else final_positions(state, record, session, me),  # nothing outside held
    )


# where its held day has no schedule, the most bisection steps (one dispatch each) to find the share of its
# positions outside its window that has one: 2^16 shares resolve 1 Wh on any position up to 65.5 MWh
REACH_STEPS = 16


def _held_day(
    mg: Microgrid,
    dt: float,
    chain: ClaimFigures,
    part: set[int],
    kwh: Sequence[float],
    money: Sequence[float],
    positions: Sequence[int],
) -> tuple[tuple[float, ...], float]:
    """`positions` (Wh) held outside `part` (kWh per interval, its cleared trades inside) and its day with them:
    its committed trades' money as the chain moves it, each held position at its closing price ∓ the exact
    fee, as its deviation trades it (`deviation._deviator`), so on both days a held interval is the same.
    ScheduleError where that day has no schedule."""
    held = tuple(q if t in part else positions[t] / 1000 for t, q in enumerate(kwh))
    phi = per_kwh(chain.fee)
    outside = sum(q * (chain.prices[t] - phi if q > 0 else chain.prices[t] + phi)
                  for t, q in enumerate(held) if t not in part)  # fmt: skip
    return held, sum(dispatch(mg, dt, held).physical) - sum(money) - outside


def _share(positions: Sequence[int], k: int, n: int) -> tuple[int, ...]:
    """Each position scaled by k/n, to the Wh (0: none held, n: all)."""
    return tuple(round(q * k / n) for q in positions)


def _bisect(hi: int, solve: Callable[[int], _T]) -> tuple[int, _T | None]:
    """The share k in [0, hi) that `solve` answers while k + 1 has no schedule (`solve` raises ScheduleError;
    `hi` is taken to have none, 0 to have one), by bisection: ⌈log2 hi⌉ calls of `solve`, deterministic.
    Returns (k, solve(k)), (0, None) where no share it tried had one."""
    lo, found = 0, None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            answer = solve(mid)
        except ScheduleError:
            hi = mid
        else:
            lo, found = mid, answer
    return lo, found


def _gain(
    alone: Scenario,
    commitment: Commitment,
    tolerance: float,
    part: set[int] | None,
    held: Sequence[float] | None = None,
) -> float:
    """Its deviation gain from `commitment` (`alone`: its one-MG day) trading in `part` alone, `held` outside
    it; where that earns, valued at its own rules wherever they are the price (`own_rule_fees`)."""
    (mg,) = alone.microgrids
    gain = deviation_gains(alone, commitment, window=part, held=held)[mg.name]
    if earns(gain, tolerance) and own_rule_fees(mg, commitment.prices, commitment.fee) != (None, None):
        gain = deviation_gains(alone, commitment, own_rules=True, window=part, held=held)[mg.name]
    return gain


def _held_gain(
    alone: Scenario,
    chain: ClaimFigures,
    commitment: Commitment,
    tolerance: float,
    part: set[int],
    real: float,
) -> float:
    """Its gain on its held day (`_held_day`: its positions held outside `part` on both days). Where that day
    has no schedule (its held positions beyond its reach: review30 R30-3) it holds the largest share k/n of
    them that has one, found by bisection (`_bisect`, one dispatch a step), so that its claim moves with its
    post by the Wh instead of jumping to its real day's gain one Wh past its reach (review31 R31-1: 200,000
    at 7,000 Wh, 750,000 at 7,001; now 200,000 both); share 0 is its real day, `real`. n is the largest
    position outside in Wh, at most 2^REACH_STEPS (beyond, a share is more than a Wh). Where its reach is
    convex (a battery, import and export caps) that is the largest share, to 1/n; a genset's on/off can make
    it a share it reaches next to one it does not. Where the held day has a schedule but its deviation on it
    has none (its own rules forbid at the closing prices inside its window what its held positions need:
    a cap below the price where it bought) the share is found the same way, each step the whole held gain
    (its dispatch and deviation). Each fallback logged with the share it holds."""
    (mg,) = alone.microgrids
    dt, money = alone.interval_hours, commitment.payments[mg.name]
    kwh, _ = net_by_interval(commitment.trades, mg.name)
    n = min(max([1, *(abs(q) for t, q in enumerate(chain.positions) if t not in part)]), 2**REACH_STEPS)

    def day(k: int) -> tuple[tuple[float, ...], float]:  # ScheduleError where the held day has no schedule
        return _held_day(mg, dt, chain, part, kwh, money, _share(chain.positions, k, n))

    def gain_on(held_day: tuple[tuple[float, ...], float]) -> float:
        held, deviated_from = held_day
        return _gain(alone, replace(commitment, day_cost={mg.name: deviated_from}), tolerance, part, held)

    k, why = n, ""
    try:
        held_day = day(n)
    except ScheduleError as exc:
        k, found = _bisect(n, day)
        why = f"its positions outside its window have no schedule ({exc})"
        if found is None:
            return _logged(chain.session, None, 0, n, why, real)
        held_day = found
    try:
        gain = gain_on(held_day)
    except ScheduleError as exc:
        k, share_gain = _bisect(k, lambda share: gain_on(day(share)))
        why = f"its deviation on its held day has no schedule ({exc})"
        return _logged(chain.session, share_gain, k, n, why, real)
    return _logged(chain.session, gain, k, n, why, real)


def _logged(session: str, gain: float | None, k: int, n: int, why: str, real: float) -> float:
    """`gain` at share k/n of its held positions, logged with `why` where that is less than all of them (its
    real day's, `real`, where it is none)."""
    if why and gain is None:
        log.warning("uplift of %s: %s, nor does any share of them: its gain is its real day's, %.6f",
                    session, why, real)  # fmt: skip
    elif why:
        log.warning("uplift of %s: %s: its held day holds %.6f of them (%d/%d), the most that has one; its "
                    "gain there %.6f", session, why, k / n, k, n, gain)  # fmt: skip
    return real if gain is None else gain


def claim_from(
    mg: Microgrid, dt: float, chain: ClaimFigures, price_tolerance: float | None = None
) -> UpliftClaim:
    """This MG's claim (module contract) from its chain figures and its own model: its MILPs, no chain read."""
    tick = BargainingConfig().price_tolerance if price_tolerance is None else price_tolerance
    trades, prices, session = chain.trades, chain.prices, chain.session
    alone = Scenario(mg.name, dt, (mg,))
    conventional = conventional_costs(alone).per_interval[mg.name]
    kwh, gross = net_by_interval(trades, mg.name)
    # the fee on its cleared Wh as the chain collects it: its committed day is the simulation's (Commitment.fee)
    fee = chain.fee
    money = [m - f / MICRO for m, f in zip(gross, by_interval(fee, traded_wh(trades, mg.name)), strict=True)]
    physical = dispatch(mg, dt, kwh).physical if any(kwh) else conventional
    day_cost = sum(physical) - sum(money)
    tolerance = tick * max(sum(abs(tr.quantity_kwh) for day in trades for tr in day), 1.0)
    window = chain.window
    part = (
        None if window is None else {t for t in range(len(prices)) if chain.first + t in window or trades[t]}
    )
    commitment = Commitment(prices, trades, (), {mg.name: physical}, {mg.name: tuple(money)},
                            {mg.name: day_cost}, 0, clean_prices=chain.clean, fee=fee)  # fmt: skip
    gain = _gain(alone, commitment, tolerance, part)  # its real day's: nothing traded outside its window
    # held positions all 0 outside (an MGMC that states its window answers nothing there, M1): its held day is
    # its real day, not solved again
    holds = part is not None and any(q for t, q in enumerate(chain.positions) if t not in part)
    if earns(gain, tolerance) and part is not None and holds and not chain.clean:
        gain = min(gain, _held_gain(alone, chain, commitment, tolerance, part, gain))
    owed = math.ceil(round(gain * MICRO, 3)) if earns(gain, tolerance) else 0
    if owed and chain.unbounded is not None:  # the chain refuses it (review17 U-C): its surplus still counts
        log.warning("uplift of %s: a gain of %d micro-units not claimed: this MG's rules set no max_quantity (nor "
                    "did the DSO post a capacity) for interval %d, and the chain takes no gain without it",
                    session, owed, chain.unbounded)  # fmt: skip
        owed = 0
    elif owed > chain.bound:  # review18 C-2: the chain refuses more whole; at its bound it is paid that much
        log.warning("uplift of %s: a gain of %d micro-units claimed at %d, the chain's bound (max_quantity, or the "
                    "DSO's capacity where lower, x the spread to the cover prices over its window)",
                    session, owed, chain.bound)  # fmt: skip
        owed = chain.bound
    # with a fee the fund pays the make-whole and the chain reads no surplus: none is claimed
    surplus = 0 if fee else max(0, math.floor(round((sum(conventional) - day_cost) * MICRO, 3)))
    bound = None if chain.unbounded is not None else chain.bound  # without the rule the figure bounds nothing
    return UpliftClaim(session, False, "", owed, surplus, gain, day_cost, sum(conventional), tolerance, bound)


def claim_for(
    mg: Microgrid,
    dt: float,
    state: Any,
    session: str,
    me: bytes,
    price_tolerance: float | None = None,
    window: range | None = None,
    max_spread: int = 0,
) -> UpliftClaim:
    """This MG's claim (module contract) read off `state` and computed at once (`chain_figures`, then
    `claim_from`); `window`: the chain intervals this MGMC trades, where its accept stated none on the chain;
    `max_spread`: the chain's genesis `uplift_max_spread`. ValueError when the session is not on the chain."""
    figures = chain_figures(state, session, me, mg.name, window, max_spread, couples(mg))
    return claim_from(mg, dt, figures, price_tolerance)
