"""Iterative multi-leader multi-follower Stackelberg bargaining for one trading interval.

Promises: first a call finds the interval's indicative price from quantities alone (`moves.interval_price`,
within the DSO's feed-in and retail prices): the MGs that export at it are the sellers (leaders), those that
import are the buyers (followers; at retail, with a clean premium in the market, those that import a tick
below it). Sellers post a price (starting there) and the quantity their curve supplies at it; buyers take the
offers their rules accept, cheapest effective price first, up to what their curve demands at that price; the
venue (the market contract, in memory or on the chain) judges every move and clears each round; sellers then
raise their price when their whole offer is taken and lower it when they sold less than planned, within their
bounds (`moves.adjust`). Rounds stop when no seller moves and no buyer would ask differently (`converged`; with
owner rules, nor once its fill estimate settles on the fills it got), or at `max_rounds` (`converged` false).
`stability` then checks numerically that no MG gains more than the tolerance by deviating alone. Each
participant's moves are `peergrid_controller.moves` (public, also used on the edge). Assumes curves in kWh
for this interval (curve.py). Pure and deterministic: no clocks, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from peergrid_controller.market import (
    Accepted,
    Bid,
    Offer,
    Rejected,
    Trade,
    Verdict,
    check_bid,
    check_offer,
    clear,
    micro_per_wh,
    wh,
    within,
)
from peergrid_controller.model import ContractRules
from peergrid_controller.moves import (
    MAX_REQUESTS,
    BargainingConfig,
    ExpectedFill,
    Participant,
    SellerState,
    adjust,
    capped,
    interval_price,
    make_bid,
    make_offer,
    open_seller,
    price_band,
    same_requests,
    seller_ceiling,
    settled_fills,
    split_roles,
)

__all__ = [
    "MAX_REQUESTS",
    "BargainingConfig",
    "MemoryVenue",
    "Outcome",
    "Participant",
    "Round",
    "Venue",
    "bargain",
    "make_bid",
    "make_offer",
    "split_roles",
]


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

    def settle(self, trade: Trade, delivered_kwh: float, carry: Callable[[], None] | None = None) -> Verdict:
        """Pay one agreed trade, once, for the energy delivered; Accepted only once it is paid. Where the
        parties each state what they metered (the chain under `settle_by_both`), one call sends every message
        it takes; `carry`, where given, runs before each of them (a transport: netsim.LossyVenue)."""
        ...

    def flush(self) -> None:
        """Make everything submitted final (seal what is pending)."""
        ...


@dataclass
class MemoryVenue:
    """The market contract without a chain (tests, baselines, the MGMC's own look-ahead). `cap_on_fills`: as
    the chain's genesis parameter, a buyer's maximum caps what it is allocated, not what it asks; `bargain`
    reads it (a venue without the attribute caps the requests) and lets buyers ask past their maximum."""

    rules: dict[str, ContractRules]
    cap_on_fills: bool = False
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
        verdict = check_bid(bid, self.offers, self.rules[bid.buyer], self.cap_on_fills)
        if isinstance(verdict, Accepted):
            self.bids.append(bid)
        return verdict

    def close_round(self) -> list[Trade]:
        caps: dict[str, float] | None = None
        premiums: dict[str, float] | None = None
        if self.cap_on_fills:
            caps = {b.buyer: self.rules[b.buyer].max_quantity_kwh for b in self.bids}
            premiums = {b.buyer: self.rules[b.buyer].clean_premium for b in self.bids}
        self.last_trades = clear(list(self.offers.values()), self.bids, caps, premiums)
        self.offers, self.bids = {}, []
        return self.last_trades

    def finish(self, interval: int) -> list[Trade]:
        trades = [t for t in self.last_trades if t.interval == interval]
        for t in trades:
            self.agreed[t.trade_id] = t
        self.last_trades = []
        return trades

    def settle(self, trade: Trade, delivered_kwh: float, carry: Callable[[], None] | None = None) -> Verdict:
        """The delivered energy pays, once: what the chain pays when both parties state it (or either alone
        does, without `settle_by_both`). One message."""
        if carry is not None:
            carry()
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


def bargain(
    participants: Sequence[Participant],
    interval: int,
    feed_in: float,
    retail: float,
    venue: Venue,
    config: BargainingConfig | None = None,
) -> Outcome:
    cfg = config or BargainingConfig()
    premium = max((p.rules.clean_premium for p in participants), default=0.0)
    # the roles are called within the DSO's own prices: a tick above retail every MG that can export would
    # rather buy from the DSO and sell to a peer, so a call reaching into the premium's range finds a feeder
    # of sellers only and nothing trades (measured: the bench's 20-MG owner-rules day with the guard off, 57
    # of 96 intervals traded nothing, 1 without the rules). A clean seller still prices up to retail + the
    # premium its buyers pay (below).
    price = interval_price(
        lambda x: sum(capped(p, x) for p in participants), feed_in, retail, cfg.price_tolerance
    )
    sellers, buyers = split_roles(participants, feed_in, retail, price)
    if premium > 0.0 and price >= retail:
        # a feeder short at every price below retail: at retail itself a buyer is indifferent between the DSO
        # and a peer, and a curve that goes on past retail (for the premium) buys nothing on its step there,
        # so it joins the buyers it was a tick below; sellers that go unsold then come down to it (measured:
        # that day's premiums alone, strict mode: 07:00-08:30 traded nothing without this)
        below = price - cfg.price_tolerance
        named = {p.name for p in sellers}
        buyers = [p for p in participants if p.name not in named and capped(p, below) < 0]
        buyers.sort(key=lambda p: p.name)
    # a seller asks past retail only for a clean premium one of the interval's buyers pays (`seller_ceiling`,
    # as the edge's sellers on the chain do)
    paid = max((b.rules.clean_premium for b in buyers), default=0.0)
    states: dict[str, SellerState] = {
        s.name: open_seller(s, feed_in, seller_ceiling(s, retail, paid), cfg, price) for s in sellers
    }
    rounds: list[Round] = []
    expected = ExpectedFill()
    fill: dict[str, float] = {}
    # buyers rank the same offers apart only through their owners' rules (clean premium, clean-only, cap).
    # Without such rules every buyer asks a level's sellers in proportion to their offers, so all are rationed
    # alike and a difference in fill comes only from offers that moved since: extra requests sent on it drew
    # the crowd from sellers that then cut their price and their supply (measured: 20 MGs without rules,
    # -0.01 of the central gain). There the refinements stay off (spare None) and the moves are as before.
    ranked_apart = any(
        p.rules.clean_premium > 0 or p.rules.clean_only or math.isfinite(p.rules.cap_price)
        for p in participants
    )
    spare: dict[str, float] | None = {} if ranked_apart else None
    fills_capped = bool(getattr(venue, "cap_on_fills", False))
    converged = False
    asked_last: dict[str, dict[str, float]] = {}  # each buyer's own requests last round (make_bid's `mine`)
    for number in range(1, cfg.max_rounds + 1):
        band = price_band(number, cfg)
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
            mine = asked_last.get(b.name, {}) if spare is not None else None
            bid = make_bid(b, offers, interval, band, fill, spare, fills_capped, mine)
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
        by_name = {s.name: s for s in sellers}
        content = [
            adjust(states[o.seller], by_name[o.seller], o.quantity_kwh, asked.get(o.seller, 0.0), cfg)
            for o in offers
        ]
        # buyers' expected fill per seller, smoothed across rounds (the edge agents keep the same estimate)
        offered = {o.seller: o.quantity_kwh for o in offers}
        fill = expected.observe(offered, asked, all(content))
        # energy a seller left unsold this round (public): only there is a short buyer's extra request served
        # next round; a seller asked exactly what it offers has nothing more to give (measured: extra requests
        # sent to such sellers made the crowd leave and return every other round, a two-round cycle)
        if spare is not None:
            spare = {
                o.seller: o.quantity_kwh - asked.get(o.seller, 0.0)
                for o in offers
                if o.quantity_kwh - asked.get(o.seller, 0.0) > cfg.quantity_tolerance
            }
        asked_last = {b.name: dict(bid.requests) for b, bid in wanted}
        # with owner rules, the buyers' estimate settles on the fills they got once prices have stood still
        # for two rounds (`ExpectedFill`), and a short buyer then asks a seller that served it in full for
        # more: until then the market has not stopped (M18: the 20-MG owner-rules day, interval 72 under
        # M17's forecast, converged a round after prices stood still, the smoothed fill of clean sellers
        # rationed in rounds 1 and 6 still 0.98 though they had left 6 kWh unsold since round 7, the
        # buyers short)
        to_settle = settled_fills(spare, expected, (offered, asked))
        settled = [fill] if to_settle is None else [fill, to_settle]
        if all(content) and all(
            same_requests(
                make_bid(b, offers, interval, band, f, spare, fills_capped, asked_last[b.name]), bid, cfg
            )
            for b, bid in wanted
            for f in settled
        ):
            converged = True  # no seller moves and no buyer would ask differently next round
            break
    return Outcome(interval, tuple(rounds), converged, tuple(venue.finish(interval)))
