"""The day-ahead outcome's stability check: what each MG would gain by deviating alone from its forward trades.

Promises:
- `deviation_gains(scenario, commitment, uplift=None, own_rules=False, names=None)`: each MG's gain from
  deviating alone at the final prices (its own day MILP, best response within its owner's rules); ≤ 0 up to
  solver tolerance means none. With an uplift (uplift.py) the MILP holds the payments' rules (charge due
  anyway, credit only for delivering the committed positions), so the stability check with payments is a
  re-solve, not a subtraction. With `own_rules` what an MG would trade beyond its commitment where its own floor
  or cap is the price is valued at that rule (`own_rule_fees`): what being rationed at its own rule is worth to
  it by its own declaration, nothing (uplift.py pays no more than this gain). On a clean session it deviates
  in both books (cleanbook.py: where a clean seller sells clean is its own choice, a binary per interval).
- With `window` it deviates there alone; outside it trades nothing, or with `held` keeps its net P2P export at
  `held` there (its session positions: what it answered for the intervals it does not trade, L12).
- `at_own_commitment(scenario, commitment, names)`: a genset MG's deviation gain with its gensets' on/off
  held where its committed day runs them: the part of its gain that is not re-committing them.
- `own_rule_fees(mg, prices, fee)`: the MG's rule fees in the intervals whose price is its own floor or cap
  (net of the exchange fee: exchange_fee.py).
The MG's deviation trades at the commitment's exchange fee (`Commitment.fee`) on both sides, as its answers did.
Reads the commitment (forward.py), never changes it. Deterministic. Never reads clocks or I/O.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import highspy
import numpy as np

from peergrid_controller import lp as lpmod
from peergrid_controller.cleanbook import CleanDayModel, clean_kind, takes_clean
from peergrid_controller.daymodel import DayModel
from peergrid_controller.dayrules import Fees, limits_kw, rule_fees
from peergrid_controller.exchange_fee import with_fee
from peergrid_controller.market import micro_per_wh
from peergrid_controller.matching import net_by_interval
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.uplift import Uplift
from peergrid_ledger.contracts.exchange_state import NANO_PER_MICRO_WH

if TYPE_CHECKING:  # forward.py imports this module to offer its names from there too
    from peergrid_controller.forward import Commitment


def own_rule_fees(mg: Microgrid, prices: Sequence[float], fee: int = 0) -> Fees:
    """The MG's rule fees (dayrules.rule_fees: its floor's excess over its feed-in per kWh sold, the retail
    price's excess over its cap per kWh bought) in the intervals whose price is its own floor (sell) or cap
    (buy) on the chain's tick, zero elsewhere; None for a side with no such interval. There the owner's
    rule is its declared valuation at the margin: it values a kWh sold at no more than its floor, bought at
    no less than its cap, so being rationed there is worth nothing to it by its own declaration.
    With an exchange `fee` (nano per kWh per side) the owner's floor and cap are net of it in the MG's
    model (a kWh sold nets p − fee, a kWh bought costs p + fee), so its rule holds it back at every tick
    from its floor up to the lowest whose net clears the floor, ceil((floor·10⁶ + fee) / 10⁶) micro-units
    per Wh, and from the highest tick whose cost with the fee is within its cap, floor((cap·10⁶ − fee) /
    10⁶), up to its cap: the chain's integers (the closing price of an interval whose price the fee's dead
    band holds can round to any tick in that reach: a fee off the tick put it a tick short, and the MG's
    rationing there was owed as uplift). Fee 0: the rule's own tick, as before."""
    sell, buy = rule_fees(mg)
    floor = micro_per_wh(mg.rules.floor_price)
    floor_reach = (floor, -(-(floor * NANO_PER_MICRO_WH + fee) // NANO_PER_MICRO_WH))

    def at(fees: tuple[float, ...] | None, reach: tuple[int, int] | None) -> tuple[float, ...] | None:
        if fees is None or reach is None:
            return None
        low, high = reach
        out = tuple(f if low <= micro_per_wh(p) <= high else 0.0 for f, p in zip(fees, prices, strict=True))
        return out if any(out) else None

    cap_reach = None  # an infinite cap has no buy fee (rule_fees): nothing to test
    if buy is not None:
        cap = micro_per_wh(mg.rules.cap_price)
        cap_reach = ((cap * NANO_PER_MICRO_WH - fee) // NANO_PER_MICRO_WH, cap)
    return at(sell, floor_reach), at(buy, cap_reach)


def deviation_gains(
    scenario: Scenario,
    commitment: Commitment,
    uplift: Uplift | None = None,
    own_rules: bool = False,
    names: Collection[str] | None = None,
    window: Collection[int] | None = None,
    held: Sequence[float] | None = None,
) -> dict[str, float]:
    """Per MG (those in `names`; None: all): how much less its day would cost had it deviated alone from its
    forward trades, trading whatever it liked at the final prices within its owner's rules (its own day
    MILP, best response) — the day-ahead outcome's stability check (issue #7 item 4). ≤ 0 up to solver
    tolerance means no gain.

    With `own_rules` its best response is valued at its own rules where they are the price
    (`_beyond_commitment`): the gain it has by its own declared valuation, without what being rationed at
    its own floor or cap is worth (uplift.py pays no more than this).

    With `uplift` (uplift.py) the payoff includes the MG's credit and charge, and the best response is
    re-solved under the payments' own rules: the charge is due whatever it does (it took part), the credit
    only if it delivers exactly its committed positions — a binary in its MILP that, when on, holds every
    interval's net P2P export at the committed one (`_earn_if_delivered`) and is worth the credit.

    With `window` (the day's intervals the MG takes part in; None: all) it trades nothing in the others: an
    MGMC that joined the session for part of its day could never have traded at the closing prices outside
    it, so deviating there is no gain its commitment cost it (the deployed edge's claim, dayahead_uplift).
    With `held` (kWh per interval: one MG's, so a one-MG scenario or `names` naming it; not on a clean
    session) its net P2P export outside `window` is held there instead, exactly (sales and purchases fixed):
    it answered the session for those intervals too, so a position inside the window that its plan outside
    made worth it (a battery filled for a later sale) is not valued as a loss against a day that trades
    nothing outside (L12: mg5's 8.02 on the lab's day with a fee); `commitment.day_cost` must then be its
    day with those positions. Held positions the chain never trades bind nothing, so this gain alone can be
    raised by posting them: the edge's claim takes the lesser of it and the gain without `held` (L13,
    dayahead_uplift_claim)."""
    dt = scenario.interval_hours
    gains = {}
    for mg in scenario.microgrids:
        if names is not None and mg.name not in names:
            continue
        model, pairs = _deviator(mg, dt, commitment, window, held)
        kwh, _ = net_by_interval(commitment.trades, mg.name)
        if held is not None and window is not None:  # the rule's fee is on what it sells beyond its position
            kwh = [q if t in window else held[t] for t, q in enumerate(kwh)]
        if own_rules:
            fees = own_rule_fees(mg, commitment.prices, commitment.fee)
            _beyond_commitment(model, [q / dt for q in kwh], fees)
        credit = uplift.credit(mg.name) if uplift is not None else 0.0
        charge = uplift.charge(mg.name) if uplift is not None else 0.0
        if credit > 0:
            _earn_if_delivered(model, [q / dt for q in kwh], pairs, credit)
        best = model.schedule.solve().cost + charge
        gains[mg.name] = commitment.day_cost[mg.name] + charge - credit - best
    return gains


def at_own_commitment(scenario: Scenario, commitment: Commitment, names: Collection[str]) -> dict[str, float]:
    """Per genset MG in `names` (none on a clean session): its deviation gain with its gensets' on/off held
    where its committed day runs them (its day MILP with its trades fixed, as the accept check solves it),
    trading whatever it likes at the final prices as in `deviation_gains`: what moving alone gains it at its
    own commitment, the part the exchange's iterations can reach (its model there is an LP, the commitment
    fixed). `deviation_gains` less this is what re-committing its gensets adds, which no uniform price
    supports (the make-whole's; review28 R28-3 and docs/market.md: on the bench's fee days the MGs owed were
    genset MGs owed mostly for that, while at their own commitment every MG was within its tolerance)."""
    if commitment.clean_prices:
        return {}
    dt = scenario.interval_hours
    gains = {}
    for mg in scenario.microgrids:
        if mg.name not in names or not mg.gensets:
            continue
        kw = [q / dt for q in net_by_interval(commitment.trades, mg.name)[0]]
        committed = DayModel(mg, dt)
        committed.trade(commitment.prices, kw, kw)  # one free column at its committed trades: fixed
        committed.solve()
        model, _ = _deviator(mg, dt, commitment, on=committed.commitment())
        gains[mg.name] = commitment.day_cost[mg.name] - model.schedule.solve().cost
    return gains


def _deviator(
    mg: Microgrid,
    dt: float,
    commitment: Commitment,
    window: Collection[int] | None = None,
    held: Sequence[float] | None = None,
    on: tuple[tuple[bool, ...], ...] | None = None,
) -> tuple[DayModel, list[tuple[float, float]]]:
    """MG `mg`'s day trading freely at the commitment's prices within its owner's rules, and its net export
    bounds (kW) per interval (none outside `window`, or exactly `held` kWh there). On a clean session both
    books (cleanbook.py, its switch a binary: where it sells clean is its own choice): a clean seller's sale
    allowed where its floor clears either price, a clean-only buyer's purchase where the clean price is
    within its cap + premium."""
    n = len(commitment.prices)
    if held is not None and (commitment.clean_prices or len(held) != n):
        raise ValueError(f"held positions: one book of {n} intervals (got {len(held)}, clean: "
                         f"{bool(commitment.clean_prices)})")  # fmt: skip
    pairs = [limits_kw(mg, t, commitment.prices[t], dt) for t in range(n)]
    if window is not None:
        outside = [(0.0, 0.0)] * n if held is None else [(q / dt, q / dt) for q in held]
        pairs = [pair if t in window else outside[t] for t, pair in enumerate(pairs)]
    if not commitment.clean_prices:
        model = DayModel(mg, dt, commitment=on)  # `on`: its gensets' on/off held (at_own_commitment)
        fees = with_fee((None, None), commitment.fee, n)
        model.trade(commitment.prices, [lo for lo, _ in pairs], [hi for _, hi in pairs], *fees)
        if held is not None and window is not None and commitment.fee:  # split columns: fix both sides
            s = model.schedule
            for t in (t for t in range(n) if t not in window):
                sale = pairs[t][0]
                s.highs().changeColBounds(s.cols.p2p_sell[t], max(sale, 0.0), max(sale, 0.0))
                s.highs().changeColBounds(s.cols.p2p_buy[t], max(-sale, 0.0), max(-sale, 0.0))
        return model, pairs
    clean, kind = commitment.clean_prices, clean_kind(mg)
    free = replace(mg, rules=replace(mg.rules, clean_only=False))
    for t in range(n):
        lo, hi = pairs[t]
        if kind == "seller":
            hi = limits_kw(mg, t, max(commitment.prices[t], clean[t]), dt)[1]
        if kind == "buyer":
            lo = limits_kw(free, t, math.nan, dt)[0] if clean[t] >= 0 and takes_clean(mg, clean[t]) else 0.0
        pairs[t] = (lo, hi) if window is None or t in window else (0.0, 0.0)
    model = CleanDayModel(mg, dt, side="exact")
    fees = with_fee((None, None), commitment.fee, n)
    model.trade(commitment.prices + clean, [lo for lo, _ in pairs], [hi for _, hi in pairs], *fees)
    return model, pairs


def _beyond_commitment(model: DayModel, committed_kw: list[float], fees: Fees) -> None:
    """Charge the rule's fee on each kWh sold (bought) beyond the committed trade in the intervals where the
    MG's own floor (cap) is the price: e_k ≥ x_k − max(c_k, 0) at cost fee_k per kWh (f_k ≥ −x_k − max(−c_k,
    0) for purchases), x_k the net P2P export. Only the energy it was rationed of is valued at its rule: its
    committed trade keeps the price (a fee on it would make the commitment look like a loss and pay the MG
    for it), and trading less than committed loses the price, as without rules."""
    s = model.schedule
    h = s.highs()
    empty = np.zeros(0, np.int32)
    for fee, sign in ((fees[0], 1.0), (fees[1], -1.0)):
        for k, c in enumerate(committed_kw):
            if fee is None or fee[k] <= 0.0:
                continue
            h.addCol(fee[k] * s.dt, 0.0, lpmod.INF, 0, empty, np.zeros(0))
            extra = h.getNumCol() - 1
            index = np.array([s.cols.p2p_sell[k], s.cols.p2p_buy[k], extra], np.int32)
            h.addRow(-lpmod.INF, max(sign * c, 0.0), 3, index, np.array([sign, -sign, -1.0]))


def _earn_if_delivered(
    model: DayModel, committed_kw: list[float], limits: list[tuple[float, float]], credit: float
) -> None:
    """A binary `delivers` worth `credit` (its cost −credit) that, when 1, holds every interval's net P2P
    export at the committed one: |x_k − c_k| ≤ M_k·(1 − delivers), M_k the widest move within the bounds."""
    s = model.schedule
    h = s.highs()
    empty = np.zeros(0, np.int32)
    h.addCol(-credit, 0.0, 1.0, 0, empty, np.zeros(0))
    delivers = h.getNumCol() - 1
    h.changeColIntegrality(delivers, highspy.HighsVarType.kInteger)
    for k, (c, (lo, hi)) in enumerate(zip(committed_kw, limits, strict=True)):
        big = max(hi - lo, abs(c - lo), abs(hi - c), 1e-3)
        # net export = sell − buy (the buy column is fixed at 0 unless rule fees split the two)
        index = np.array([s.cols.p2p_sell[k], s.cols.p2p_buy[k], delivers], np.int32)
        h.addRow(-lpmod.INF, c + big, 3, index, np.array([1.0, -1.0, big]))
        h.addRow(-lpmod.INF, big - c, 3, index, np.array([-1.0, 1.0, big]))
