"""Iterative multi-leader multi-follower Stackelberg bargaining for one trading interval.

Promises: sellers (leaders) post a price and the quantity their curve supplies at it; buyers (followers) take
the offers their rules accept, cheapest effective price first, up to what their curve demands at that price;
the venue (the market contract, in memory or on the chain) judges every move and clears each round; sellers
then raise their price when their whole offer is taken (the contract never lets a buyer ask for more) and lower it when they sold less than planned,
but never below what still covers what they sell, within their floor. Prices move by steps, then bisect (`_adjust`). Rounds stop
when no price moves by more than the price tolerance and no request by more than the quantity tolerance.
`stability` then checks numerically that no MG gains more than the tolerance by deviating alone.
Assumes curves in kWh for this interval (curve.py). Pure and deterministic: no clocks, no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from peergrid_controller.curve import ResponseCurve
from peergrid_controller.market import (
    Accepted,
    Bid,
    Offer,
    Rejected,
    Trade,
    Verdict,
    acceptable,
    check_bid,
    check_offer,
    clear,
    micro_per_wh,
    price_tick,
    quantize,
    wh,
    within,
)
from peergrid_controller.model import ContractRules

MAX_REQUESTS = 64  # sellers one bid may name: the ledger's market contract refuses longer demand lists


@dataclass(frozen=True)
class Participant:
    name: str
    curve: ResponseCurve  # private: never leaves the MGMC
    rules: ContractRules  # public: the contract enforces them
    clean: bool  # its energy for sale is renewable-backed this interval


@dataclass(frozen=True)
class BargainingConfig:
    price_tolerance: float = 0.001  # one price tick on the chain
    quantity_tolerance: float = 0.01  # kWh
    max_rounds: int = 60
    price_band: float = 0.002  # offers this close in price are one level to a buyer
    patience: int = 8  # rounds after which buyers widen that band by one more tick


class Venue(Protocol):
    """Where moves are judged and rounds cleared: the market contract, in memory or on the MGMC chain."""

    def post_offer(self, offer: Offer) -> Verdict: ...

    def post_bid(self, bid: Bid) -> Verdict: ...

    def close_round(self) -> list[Trade]:
        """Seal the round's moves; the tentative trades they imply (public: anyone can compute them)."""
        ...

    def finish(self, interval: int) -> list[Trade]:
        """Close the interval: the agreed trades, computed by the contract from the final positions."""
        ...

    def settle(self, trade: Trade, delivered_kwh: float) -> Verdict:
        """Pay one agreed trade, once, for the energy delivered."""
        ...

    def flush(self) -> None:
        """Make everything submitted final (seal what is pending)."""
        ...


@dataclass
class MemoryVenue:
    """The market contract without a chain (tests, baselines, the MGMC's own look-ahead)."""

    rules: dict[str, ContractRules]
    offers: dict[str, Offer] = field(default_factory=dict)
    bids: list[Bid] = field(default_factory=list)
    last_trades: list[Trade] = field(default_factory=list)
    agreed: dict[str, Trade] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)
    balances: dict[str, float] = field(default_factory=dict)

    def post_offer(self, offer: Offer) -> Verdict:
        verdict = check_offer(offer, self.rules[offer.seller])
        if isinstance(verdict, Accepted):
            self.offers[offer.seller] = offer
        return verdict

    def post_bid(self, bid: Bid) -> Verdict:
        verdict = check_bid(bid, self.offers, self.rules[bid.buyer])
        if isinstance(verdict, Accepted):
            self.bids.append(bid)
        return verdict

    def close_round(self) -> list[Trade]:
        self.last_trades = clear(list(self.offers.values()), self.bids)
        self.offers, self.bids = {}, []
        return self.last_trades

    def finish(self, interval: int) -> list[Trade]:
        trades = [t for t in self.last_trades if t.interval == interval]
        for t in trades:
            self.agreed[t.trade_id] = t
        self.last_trades = []
        return trades

    def settle(self, trade: Trade, delivered_kwh: float) -> Verdict:
        agreed = self.agreed.get(trade.trade_id)
        if agreed is None:
            return Rejected(f"no agreed trade {trade.trade_id}")
        if trade.trade_id in self.settled:
            return Rejected(f"trade {trade.trade_id} is already settled")
        if not within(delivered_kwh, agreed.quantity_kwh) or delivered_kwh < 0:
            return Rejected(f"delivered {delivered_kwh} kWh exceeds the agreed {agreed.quantity_kwh}")
        amount = micro_per_wh(agreed.price) * wh(delivered_kwh) / 1e6
        self.balances[agreed.buyer] = self.balances.get(agreed.buyer, 0.0) - amount
        self.balances[agreed.seller] = self.balances.get(agreed.seller, 0.0) + amount
        self.settled.add(trade.trade_id)
        return Accepted()

    def flush(self) -> None:
        pass


@dataclass(frozen=True)
class Round:
    number: int
    offers: tuple[Offer, ...]
    bids: tuple[Bid, ...]
    trades: tuple[Trade, ...]
    rejected: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    interval: int
    rounds: tuple[Round, ...]
    converged: bool
    trades: tuple[Trade, ...]  # agreed by the contract from the final positions


@dataclass
class _SellerState:
    price: float
    step: float
    lower: float
    upper: float
    sold_out_at: float | None = None  # highest price at which it last sold out (excess demand)
    unsold_at: float | None = None  # lowest price at which it last sold less than it offered
    sold: dict[float, float] = field(default_factory=dict)  # kWh asked at the bracket's ends


def split_roles(
    participants: Sequence[Participant], feed_in: float, retail: float
) -> tuple[list[Participant], list[Participant]]:
    """Sellers export at the mid price (or would export more at retail than they import at feed-in)."""
    mid = (feed_in + retail) / 2
    sellers, buyers = [], []
    for p in sorted(participants, key=lambda p: p.name):
        q_mid = p.curve.at(mid)
        if q_mid > 0 or (q_mid == 0 and p.curve.supply(retail) > p.curve.demand(feed_in)):
            if p.curve.supply(retail) > 0:
                sellers.append(p)
        elif p.curve.demand(feed_in) > 0:
            buyers.append(p)
    return sellers, buyers


def make_offer(seller: Participant, price: float, interval: int) -> Offer:
    quantity = min(seller.curve.supply(price), seller.rules.max_quantity_kwh)
    return Offer(seller.name, interval, price_tick(price), quantize(quantity), seller.clean)


def make_bid(
    buyer: Participant,
    offers: Sequence[Offer],
    interval: int,
    band: float = 0.0,
    fill: Mapping[str, float] | None = None,
) -> Bid:
    """Follower's best response: cheapest effective price first, up to the demand at that price.

    Offers whose effective prices lie within `band` of each other count as one price level, and the demand
    at that level is spread over them in proportion to what each offers: otherwise every buyer would crowd
    the seller one tick cheaper, who must ration, while the next one's energy goes unsold. `fill` is the
    share of requests each seller could serve last round (public: from the chain's positions); the buyer
    counts on getting only that share and asks the next level for the rest.
    """
    rules = buyer.rules

    def effective(o: Offer) -> float:
        return o.price - (rules.clean_premium if o.clean else 0.0)

    usable = [o for o in offers if o.seller != buyer.name and acceptable(o, rules) and o.quantity_kwh > 0]
    usable.sort(key=lambda o: (effective(o), o.seller))
    bought = requested = 0.0
    requests: dict[str, float] = {}
    k = 0
    while k < len(usable):
        level = [usable[k]]
        while (
            k + len(level) < len(usable) and effective(usable[k + len(level)]) <= effective(usable[k]) + band
        ):
            level.append(usable[k + len(level)])
        k += len(level)
        # the chain takes at most MAX_REQUESTS sellers per bid: keep the largest offers of a crowded level
        room = MAX_REQUESTS - len(requests)
        if room <= 0:
            break
        if len(level) > room:
            level = sorted(level, key=lambda o: (-o.quantity_kwh, o.seller))[:room]
        worst = max(effective(o) for o in level)
        # expected fills count against the demand; the requests themselves against the owner's limit
        want = min(buyer.curve.demand(worst) - bought, rules.max_quantity_kwh - requested)
        available = sum(o.quantity_kwh for o in level)
        if want <= 0 or available <= 0:
            continue
        share = min(want / available, 1.0)
        for offer in level:
            q = quantize(offer.quantity_kwh * share)
            if q > 0:
                requests[offer.seller] = q
                requested += q
                bought += q * (fill.get(offer.seller, 1.0) if fill else 1.0)
    return Bid(buyer.name, interval, tuple(sorted(requests.items())))


def _adjust(
    state: _SellerState, seller: Participant, offered: float, asked: float, cfg: BargainingConfig
) -> bool:
    """Move the seller's price for the next round; True when it is content (no move it still wants).

    Steps of a quarter of its price range until the response brackets the price (sold out below, unsold
    above), then bisection on the chain's price tick; once the bracket is one tick wide it posts the upper end,
    where it can serve everything asked. A bracket that later observations contradict is dropped.
    """
    tick, tol_q, price = cfg.price_tolerance, cfg.quantity_tolerance, state.price
    # the contract lets nobody ask for more than is offered, so "sold out" is how excess demand shows
    sold_out = offered > tol_q and asked >= offered - tol_q
    if sold_out:
        if price >= state.upper - 1e-12:
            return True
        state.sold_out_at = price
        state.sold[price] = offered
        if state.unsold_at is not None and state.unsold_at <= price:
            state.unsold_at = None
    elif asked < offered - tol_q:
        # lower only while the lower price still covers what buyers take now
        need = min(asked, offered) - tol_q
        if price <= state.lower + 1e-12 or seller.curve.supply(max(price - tick, state.lower)) < need:
            return True
        state.unsold_at = price
        state.sold[price] = asked
        if state.sold_out_at is not None and state.sold_out_at >= price:
            state.sold_out_at = None
    else:
        return True
    lo, hi = state.sold_out_at, state.unsold_at
    if lo is not None and hi is not None:
        if hi - lo <= tick + 1e-9:
            # settle on the end that pays the seller more (ties: the upper end, which serves all it is asked)
            def payoff(p: float) -> float:
                q = state.sold.get(p, 0.0)
                return p * q - seller.curve.cost_of_export(q)

            state.price = lo if payoff(lo) > payoff(hi) + 1e-9 else hi
            return price_tick(price) == price_tick(state.price)
        target = price_tick((lo + hi) / 2)
        target = min(max(target, lo + tick), hi - tick)
    else:
        target = price + state.step if sold_out else price - state.step
    if not sold_out:
        need = min(asked, offered) - tol_q
        while seller.curve.supply(max(target, state.lower)) < need and price - target > tick:
            target = price_tick((target + price) / 2)
    state.price = min(max(target, state.lower), state.upper)
    return price_tick(state.price) == price_tick(price)


def _same(a: Bid, b: Bid, cfg: BargainingConfig) -> bool:
    left, right = dict(a.requests), dict(b.requests)
    return all(
        abs(left.get(s, 0.0) - right.get(s, 0.0)) <= cfg.quantity_tolerance
        for s in left.keys() | right.keys()
    )


def bargain(
    participants: Sequence[Participant],
    interval: int,
    feed_in: float,
    retail: float,
    venue: Venue,
    config: BargainingConfig | None = None,
) -> Outcome:
    cfg = config or BargainingConfig()
    sellers, buyers = split_roles(participants, feed_in, retail)
    premium = max((b.rules.clean_premium for b in buyers), default=0.0)
    upper = retail + premium
    states: dict[str, _SellerState] = {}
    for s in sellers:
        first_unit = s.curve.marginal_price(cfg.quantity_tolerance)
        lower = min(max(s.rules.floor_price, first_unit, feed_in), upper)
        states[s.name] = _SellerState(
            price=(lower + upper) / 2, step=(upper - lower) / 4, lower=lower, upper=upper
        )
    rounds: list[Round] = []
    fill: dict[str, float] = {}
    converged = False
    for number in range(1, cfg.max_rounds + 1):
        # buyers widen what counts as one price level by a tick every `patience` rounds: sellers a tick or
        # two apart would otherwise trade the whole demand back and forth (Bertrand-Edgeworth cycling)
        band = cfg.price_band + cfg.price_tolerance * (number // cfg.patience)
        rejected: list[str] = []
        offers = []
        for s in sellers:
            offer = make_offer(s, states[s.name].price, interval)
            verdict = venue.post_offer(offer)
            if isinstance(verdict, Rejected):
                rejected.append(verdict.reason)
            else:
                offers.append(offer)
        bids = []
        wanted: list[tuple[Participant, Bid]] = []
        for b in buyers:
            bid = make_bid(b, offers, interval, band, fill)
            wanted.append((b, bid))
            verdict = venue.post_bid(bid)
            if isinstance(verdict, Rejected):
                rejected.append(verdict.reason)
            else:
                bids.append(bid)
        trades = venue.close_round()
        rounds.append(Round(number, tuple(offers), tuple(bids), tuple(trades), tuple(rejected)))
        asked: dict[str, float] = {}
        for bid in bids:
            for seller, q in bid.requests:
                asked[seller] = asked.get(seller, 0.0) + q
        # buyers' expected fill per seller, smoothed: acting on last round's fill alone makes the crowd swing
        # from one seller to the next and back (a cobweb)
        fill = {
            o.seller: 0.5 * fill.get(o.seller, 1.0)
            + 0.5 * (min(1.0, o.quantity_kwh / asked[o.seller]) if asked.get(o.seller, 0.0) > 0 else 1.0)
            for o in offers
        }
        content = [
            _adjust(
                states[o.seller], _by_name(sellers, o.seller), o.quantity_kwh, asked.get(o.seller, 0.0), cfg
            )
            for o in offers
        ]
        if all(content) and all(
            _same(make_bid(b, offers, interval, band, fill), bid, cfg) for b, bid in wanted
        ):
            converged = True  # no seller moves and no buyer would ask differently next round
            break
    return Outcome(interval, tuple(rounds), converged, tuple(venue.finish(interval)))


def _by_name(people: Sequence[Participant], name: str) -> Participant:
    return next(p for p in people if p.name == name)
