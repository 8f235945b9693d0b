"""Numerical stability check of a bargaining outcome: can any MG do better by deviating alone?

Promises: `check` returns, per MG, the most it could gain (money, this interval) by changing only its own move:
- `taker_gain`: at the final posted prices, a seller offering any other quantity (0 .. what it sold, or more:
  up to what buyers asked of it and were not granted, within its own maximum and each buyer's) or a buyer
  requesting any other bundle from the offers as they stand (others' purchases fixed) — the
  competitive-equilibrium test the outcome is claimed to pass (`stable`);
- `pricing_gain`: a seller re-pricing alone while buyers re-respond (Stackelberg leader deviation). Reported,
  not claimed: a seller with market power can gain this way, and the figure says how much. The venue's
  contract (`MemoryVenue`) judges and clears the re-responses; with `cap_on_fills` (the chain's genesis
  parameter, `MemoryVenue.cap_on_fills`) buyers respond as `bargain` makes them on such a venue: counting on
  the share of their requests each seller serves as they would estimate it after the final round
  (`moves.ExpectedFill`), so a capped buyer may ask past its maximum, and the venue cuts its grants to it. Without it the responses count on full fills, as
  before (a buyer then never asks past its maximum, and the two allocations agree).
Payoffs use each MG's private curve (curve.cost_of_export) plus, for a buyer, its owner's clean premium on
every clean kWh it buys: the owner's rule says what clean energy is worth to it beyond its cost, and
`moves.make_bid` pays up to exactly that (an offer's effective price is its price minus the premium). Valued
at zero here, every buyer paying a premium would look as if it gained by not buying. Pure; no solver, clocks
or randomness.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from peergrid_controller.bargaining import MemoryVenue, Outcome, Participant, make_bid
from peergrid_controller.market import Bid, Offer, Trade, acceptable
from peergrid_controller.moves import ExpectedFill, prices_kept


@dataclass(frozen=True)
class Stability:
    taker_gain: dict[str, float]
    pricing_gain: dict[str, float]
    tolerance: float

    @property
    def stable(self) -> bool:
        return all(g <= self.tolerance for g in self.taker_gain.values())

    @property
    def max_taker_gain(self) -> float:
        return max(self.taker_gain.values(), default=0.0)

    @property
    def max_pricing_gain(self) -> float:
        return max(self.pricing_gain.values(), default=0.0)


def payoff(p: Participant, trades: Sequence[Trade], clean: Collection[str] = ()) -> float:
    """Money received minus paid, minus the change in the MG's own cost for the net energy moved, plus the
    owner's clean premium on what it buys from the sellers in `clean` (renewable-backed offers)."""
    net, money, preferred = 0.0, 0.0, 0.0
    for t in trades:
        if t.seller == p.name:
            net, money = net + t.quantity_kwh, money + t.quantity_kwh * t.price
        elif t.buyer == p.name:
            net, money = net - t.quantity_kwh, money - t.quantity_kwh * t.price
            if t.seller in clean:
                preferred += t.quantity_kwh
    return money - p.curve.cost_of_export(net) + p.rules.clean_premium * preferred


def check(
    participants: Sequence[Participant],
    outcome: Outcome,
    tolerance: float,
    band: float = 0.0,
    cap_on_fills: bool = False,
) -> Stability:
    """`cap_on_fills`: whether the venue the outcome was bargained on caps each buyer's allocation rather
    than its requests (pass the venue's own `cap_on_fills`); it changes the buyers' re-responses to a
    seller's re-pricing (module docstring)."""
    if not outcome.rounds:
        return Stability({}, {}, tolerance)
    last = outcome.rounds[-1]
    rules = {p.name: p.rules for p in participants}
    fill = _final_fill(outcome) if cap_on_fills else None
    offers = {o.seller: o for o in last.offers}
    clean = {o.seller for o in last.offers if o.clean}
    trades = list(last.trades)
    by_name = {p.name: p for p in participants}
    taker: dict[str, float] = {}
    pricing: dict[str, float] = {}
    for name, offer in offers.items():
        seller = by_name[name]
        base = payoff(seller, trades)
        best = base
        for fraction in (0.0, 0.25, 0.5, 0.75, 0.9, 0.99):
            scaled = [_scale(t, fraction) if t.seller == name else t for t in trades]
            best = max(best, payoff(seller, scaled))
        extra = _unserved(name, last.bids, trades, by_name)
        for fraction in (0.25, 0.5, 0.75, 1.0):
            more = [Trade(offer.interval, name, b, q * fraction, offer.price) for b, q in extra.items()]
            best = max(best, payoff(seller, trades + more))
        taker[name] = best - base
        # leader deviation: re-price alone, buyers re-respond, others' offers unchanged
        best_priced = base
        candidates = {offer.price + d for d in (-0.02, -0.005, -0.001, 0.001, 0.005, 0.02, 0.05)}
        candidates |= {o.price - 1e-4 for o in offers.values()} | {b.rules.cap_price for b in participants}
        for price in sorted(c for c in candidates if c >= seller.rules.floor_price and c < 10):
            moved = Offer(
                name,
                offer.interval,
                price,
                min(seller.curve.supply(price), seller.rules.max_quantity_kwh),
                offer.clean,
            )
            venue = MemoryVenue(rules, cap_on_fills=cap_on_fills)
            for o in [o for o in offers.values() if o.seller != name] + [moved]:
                venue.post_offer(o)
            posted = list(venue.offers.values())
            for b in participants:
                if b.name in _buyers(last):
                    venue.post_bid(make_bid(b, posted, offer.interval, band, fill, None, cap_on_fills))
            best_priced = max(best_priced, payoff(seller, venue.close_round()))
        pricing[name] = best_priced - base
    for bid in last.bids:
        buyer = by_name[bid.buyer]
        base = payoff(buyer, trades, clean)
        others = [t for t in trades if t.buyer != bid.buyer]
        left = {
            s: o.quantity_kwh - sum(t.quantity_kwh for t in others if t.seller == s)
            for s, o in offers.items()
            if acceptable(o, buyer.rules) and s != buyer.name
        }
        remaining = [
            Offer(s, o.interval, o.price, max(left[s], 0.0), o.clean) for s, o in offers.items() if s in left
        ]
        # the best response, refinements on (spare={}: nothing is rationed in what remains to it)
        best_bid = make_bid(buyer, remaining, bid.interval, spare={})
        alt = others + [
            Trade(bid.interval, s, buyer.name, q, offers[s].price) for s, q in best_bid.requests if q > 0
        ]
        best = max(base, payoff(buyer, alt, clean))
        for fraction in (0.0, 0.5, 0.9):
            scaled = [_scale(t, fraction) if t.buyer == buyer.name else t for t in trades]
            best = max(best, payoff(buyer, scaled, clean))
        taker[bid.buyer] = best - base
    return Stability(taker, pricing, tolerance)


def _unserved(
    name: str, bids: Sequence[Bid], trades: Sequence[Trade], by_name: Mapping[str, Participant]
) -> dict[str, float]:
    """kWh each buyer asked of seller `name` beyond what it was granted (rationed), scaled down together to
    the seller's own maximum and each cut to what the buyer's maximum still takes: what offering more at the
    same price would sell, the buyers' requests as they stand."""
    received: dict[str, float] = {}
    granted: dict[str, float] = {}
    for t in trades:
        received[t.buyer] = received.get(t.buyer, 0.0) + t.quantity_kwh
        if t.seller == name:
            granted[t.buyer] = granted.get(t.buyer, 0.0) + t.quantity_kwh
    extra: dict[str, float] = {}
    for bid in bids:
        asked = dict(bid.requests).get(name, 0.0)
        room = by_name[bid.buyer].rules.max_quantity_kwh - received.get(bid.buyer, 0.0)
        q = min(asked - granted.get(bid.buyer, 0.0), room)
        if q > 0:
            extra[bid.buyer] = q
    room = by_name[name].rules.max_quantity_kwh - sum(granted.values())
    total = sum(extra.values())
    scale = min(1.0, max(room, 0.0) / total) if total > 0 else 0.0
    return {b: q * scale for b, q in extra.items()}


def _final_fill(outcome: Outcome) -> dict[str, float]:
    """The fill buyers would bid with after the final round: `ExpectedFill` fed the outcome's rounds as
    `bargain` (and the edge agent) feeds it, each round's "every seller content" read from the next round's
    posted prices (`prices_kept`), the final round's from whether the bargaining converged."""
    expected = ExpectedFill()
    fill: dict[str, float] = {}
    for i, played in enumerate(outcome.rounds):
        asked: dict[str, float] = {}
        for bid in played.bids:
            for seller, q in bid.requests:
                asked[seller] = asked.get(seller, 0.0) + q
        if i + 1 < len(outcome.rounds):
            after = {o.seller: o.price for o in outcome.rounds[i + 1].offers}
            content = prices_kept({o.seller: o.price for o in played.offers}, after)
        else:
            content = outcome.converged
        fill = expected.observe({o.seller: o.quantity_kwh for o in played.offers}, asked, content)
    return fill


def _buyers(last: object) -> set[str]:
    return {b.buyer for b in getattr(last, "bids", ())}


def _scale(t: Trade, fraction: float) -> Trade:
    return Trade(t.interval, t.seller, t.buyer, t.quantity_kwh * fraction, t.price)
