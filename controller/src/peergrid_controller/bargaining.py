"""Iterative multi-leader multi-follower Stackelberg bargaining for one trading interval.

Promises: sellers (leaders) post a price and the quantity their curve supplies at it; buyers (followers) take
the offers their rules accept, cheapest effective price first, up to what their curve demands at that price;
the venue (the market contract, in memory or on the chain) judges every move and clears each round; sellers
then raise their price when their whole offer is taken (the contract never lets a buyer ask for more) and lower it when they sold less than planned,
but never below what still covers what they sell, within their floor. Steps halve on each reversal. Rounds stop
when no price moves by more than the price tolerance and no request by more than the quantity tolerance.
`stability` then checks numerically that no MG gains more than the tolerance by deviating alone.
Assumes curves in kWh for this interval (curve.py). Pure and deterministic: no clocks, no randomness.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    direction: int = 0


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


def make_bid(buyer: Participant, offers: Sequence[Offer], interval: int) -> Bid:
    """Follower's best response: cheapest effective price first, up to the demand at that price."""
    rules = buyer.rules

    def effective(o: Offer) -> float:
        return o.price - (rules.clean_premium if o.clean else 0.0)

    bought = 0.0
    requests: dict[str, float] = {}
    for offer in sorted(offers, key=lambda o: (effective(o), o.seller)):
        if offer.seller == buyer.name or not acceptable(offer, rules):
            continue
        want = min(
            offer.quantity_kwh, buyer.curve.demand(effective(offer)) - bought, rules.max_quantity_kwh - bought
        )
        want = quantize(want)
        if want > 0:
            requests[offer.seller] = want
            bought += want
    return Bid(buyer.name, interval, tuple(sorted(requests.items())))


def _adjust(
    state: _SellerState, seller: Participant, offered: float, asked: float, cfg: BargainingConfig
) -> bool:
    """Move the seller's price for the next round; True when it is content (no move it still wants)."""
    tol_q = cfg.quantity_tolerance
    move = 0
    # the contract lets nobody ask for more than is offered, so "sold out" is how excess demand shows
    if offered > tol_q and asked >= offered - tol_q and state.price < state.upper:
        move = +1
    elif asked < offered - tol_q and state.price > state.lower:
        # lower only while the lower price still covers what buyers take now (a local look, not a round)
        while seller.curve.supply(max(state.price - state.step, state.lower)) < min(asked, offered) - tol_q:
            state.step /= 2
            if state.step < cfg.price_tolerance:
                return True
        move = -1
    if move == 0:
        return True
    if state.direction != 0 and move != state.direction:
        state.step /= 2
    before = state.price
    state.price = min(max(state.price + move * state.step, state.lower), state.upper)
    state.direction = move
    return abs(state.price - before) <= cfg.price_tolerance


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
    converged = False
    for number in range(1, cfg.max_rounds + 1):
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
        for b in buyers:
            bid = make_bid(b, offers, interval)
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
        content = [
            _adjust(
                states[o.seller], _by_name(sellers, o.seller), o.quantity_kwh, asked.get(o.seller, 0.0), cfg
            )
            for o in offers
        ]
        if all(content):
            converged = True
            break
    return Outcome(interval, tuple(rounds), converged, tuple(venue.finish(interval)))


def _by_name(people: Sequence[Participant], name: str) -> Participant:
    return next(p for p in people if p.name == name)
