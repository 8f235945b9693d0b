"""On the chain venue a bid that stands unchanged after a seller it names raised its price is sent again.

The market contract stamps every standing demand on a seller that raises (`market._stamp_demands`, review13
F1) and counts it at the closing only once the buyer has asked again; the venue sent no move identical to the
standing one, so a buyer that still wanted the same energy at the higher price lost the whole demand at
`finish`, while the round's own clear (and the memory venue) counted it. On the bench's 20-MG owner-rules day
(seed 1, off) the chain agreed 0.898 of the central gain against the memory venue's 0.962, all of it in
intervals 63 and 69-83, where sellers at 0.27 raised by a tick in the last rounds (M11).
"""

from __future__ import annotations

import pytest

from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.market import Bid, Offer
from peergrid_controller.synth import synthetic_scenario


def _venue() -> ChainVenue:
    return ChainVenue(synthetic_scenario(3, 4, seed=1))


def _round(venue: ChainVenue, price: float, quantity: float = 10.0) -> None:
    venue.post_offer(Offer("mg001", 0, price, quantity, True))
    venue.post_bid(Bid("mg002", 0, (("mg001", 5.0),)))
    assert [t.quantity_kwh for t in venue.close_round()] == [5.0]


def test_a_bid_standing_after_its_seller_raised_still_trades() -> None:
    venue = _venue()
    _round(venue, 0.10)
    sent = venue.transactions
    _round(venue, 0.11)  # the seller raises; the buyer still asks 5 kWh of it
    assert venue.transactions == sent + 2  # the seller's move and the buyer's again
    (trade,) = venue.finish(0)  # before: [] (the stamped demand did not count)
    assert (trade.buyer, trade.quantity_kwh, trade.price) == ("mg002", 5.0, pytest.approx(0.11))


def test_a_bid_after_a_cut_is_not_sent_again() -> None:
    venue = _venue()
    _round(venue, 0.11)
    sent = venue.transactions
    _round(venue, 0.10)  # a cut stamps nothing: the standing bid counts as it is
    assert venue.transactions == sent + 1
    (trade,) = venue.finish(0)
    assert (trade.quantity_kwh, trade.price) == (5.0, pytest.approx(0.10))


def test_a_bid_standing_after_its_seller_withdrew_and_came_back_still_trades() -> None:
    venue = _venue()
    _round(venue, 0.10)
    venue.post_offer(Offer("mg001", 0, 0.10, 0.0, True))  # a withdrawal keeps the price before it
    venue.close_round()
    _round(venue, 0.12)
    (trade,) = venue.finish(0)
    assert (trade.quantity_kwh, trade.price) == (5.0, pytest.approx(0.12))
