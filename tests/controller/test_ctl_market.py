"""The market contract: rules enforced, nobody buys more than offered, clearing is deterministic."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from peergrid_controller.bargaining import MemoryVenue
from peergrid_controller.market import Accepted, Bid, Offer, Rejected, Trade, check_bid, check_offer, clear
from peergrid_controller.model import ContractRules


def test_seller_below_its_floor_is_rejected() -> None:
    verdict = check_offer(Offer("s", 0, 0.07, 5.0, True), ContractRules(floor_price=0.08))
    assert isinstance(verdict, Rejected)
    assert "below its floor" in verdict.reason
    assert isinstance(check_offer(Offer("s", 0, 0.08, 5.0, True), ContractRules(floor_price=0.08)), Accepted)


def test_offer_above_max_quantity_or_not_finite_is_rejected() -> None:
    assert isinstance(
        check_offer(Offer("s", 0, 0.1, 5.001, True), ContractRules(max_quantity_kwh=5.0)), Rejected
    )
    assert isinstance(check_offer(Offer("s", 0, math.nan, 1.0, True), ContractRules()), Rejected)
    assert isinstance(check_offer(Offer("s", 0, 0.1, -1.0, True), ContractRules()), Rejected)


def test_buyer_cannot_buy_more_than_offered() -> None:
    offers = {"s": Offer("s", 0, 0.1, 5.0, True)}
    verdict = check_bid(Bid("b", 0, (("s", 5.5),)), offers, ContractRules())
    assert isinstance(verdict, Rejected)
    assert "offered only" in verdict.reason
    assert isinstance(check_bid(Bid("b", 0, (("s", 5.0),)), offers, ContractRules()), Accepted)


def test_buyer_cap_clean_only_and_premium() -> None:
    dirty = {"s": Offer("s", 0, 0.21, 5.0, False)}
    clean = {"s": Offer("s", 0, 0.21, 5.0, True)}
    capped = ContractRules(cap_price=0.20, clean_premium=0.02)
    assert isinstance(check_bid(Bid("b", 0, (("s", 1.0),)), dirty, capped), Rejected)  # above the cap
    assert isinstance(check_bid(Bid("b", 0, (("s", 1.0),)), clean, capped), Accepted)  # premium for clean
    picky = ContractRules(clean_only=True)
    assert isinstance(check_bid(Bid("b", 0, (("s", 1.0),)), dirty, picky), Rejected)


def test_bid_for_an_absent_offer_or_from_oneself_is_rejected() -> None:
    offers = {"s": Offer("s", 0, 0.1, 5.0, True)}
    assert isinstance(check_bid(Bid("b", 0, (("x", 1.0),)), offers, ContractRules()), Rejected)
    assert isinstance(check_bid(Bid("s", 0, (("s", 1.0),)), offers, ContractRules()), Rejected)
    assert isinstance(
        check_bid(Bid("b", 1, (("s", 1.0),)), offers, ContractRules()), Rejected
    )  # wrong interval


def test_oversubscribed_seller_shares_pro_rata_rounded_down_to_wh() -> None:
    offers = [Offer("s", 0, 0.1, 10.0, True)]
    bids = [Bid("a", 0, (("s", 10.0),)), Bid("b", 0, (("s", 5.0),))]
    trades = clear(offers, bids)
    assert [(t.buyer, t.quantity_kwh) for t in trades] == [("a", 6.666), ("b", 3.333)]


def test_every_trade_settles_once_and_only_if_agreed() -> None:
    venue = MemoryVenue({"s": ContractRules(), "b": ContractRules()})
    venue.post_offer(Offer("s", 0, 0.1, 4.0, True))
    venue.post_bid(Bid("b", 0, (("s", 4.0),)))
    venue.close_round()
    (trade,) = venue.finish(0)
    assert isinstance(venue.settle(trade, 4.0), Accepted)
    assert venue.balances == {"b": -0.4, "s": 0.4}
    again = venue.settle(trade, 4.0)
    assert isinstance(again, Rejected) and "already settled" in again.reason
    forged = Trade(0, "s", "x", 1.0, 0.1)
    assert isinstance(venue.settle(forged, 1.0), Rejected)
    assert venue.balances == {"b": -0.4, "s": 0.4}


quantities = st.floats(min_value=0.0, max_value=500.0, allow_nan=False)


@given(
    offered=st.lists(quantities, min_size=1, max_size=4),
    asks=st.lists(st.lists(quantities, min_size=4, max_size=4), min_size=1, max_size=5),
)
def test_clearing_never_gives_more_than_offered_or_asked(
    offered: list[float], asks: list[list[float]]
) -> None:
    offers = [Offer(f"s{i}", 0, 0.1, round(q, 3), True) for i, q in enumerate(offered)]
    bids = [
        Bid(f"b{j}", 0, tuple((f"s{i}", round(row[i], 3)) for i in range(len(offers)) if row[i] > 0))
        for j, row in enumerate(asks)
    ]
    trades = clear(offers, bids)
    assert trades == clear(list(reversed(offers)), list(reversed(bids)))  # order of arrival does not matter
    for offer in offers:
        sold = sum(t.quantity_kwh for t in trades if t.seller == offer.seller)
        assert sold <= offer.quantity_kwh + 1e-9
    for bid in bids:
        for seller, q in bid.requests:
            got = sum(t.quantity_kwh for t in trades if t.buyer == bid.buyer and t.seller == seller)
            assert 0 <= got <= q + 1e-9
