"""The stability check's pricing deviation on a venue with the chain's `cap_on_fills`: buyers re-respond as
they would there (counting on the fills the final round showed, asking past their maximum), and the venue's
capped allocation clears them. Hand-built final rounds, answers worked out by hand."""

from __future__ import annotations

import pytest

from peergrid_controller.bargaining import MemoryVenue, Outcome, Participant, Round
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.market import Accepted, Bid, Offer
from peergrid_controller.model import ContractRules
from peergrid_controller.stability import check


def _buyer(name: str, kwh: float, value: float, rules: ContractRules) -> Participant:
    """Buys `kwh` at any price below `value`, nothing above it."""
    return Participant(name, ResponseCurve((0.05, value), (-kwh, 0.0), 0.30), rules, False)


def _seller(name: str, kwh: float, cost: float) -> Participant:
    """Sells `kwh` at `cost` or more (its marginal cost), nothing below."""
    return Participant(name, ResponseCurve((0.05, cost), (0.0, kwh), 0.30), ContractRules(), True)


def _settled(
    people: list[Participant], offers: list[Offer], bids: list[Bid], cap_on_fills: bool, rounds: int = 2
) -> Outcome:
    """A converged outcome whose last `rounds` rounds were the same moves (prices standing still), each
    judged and cleared by the venue as bargain() would have it."""
    venue = MemoryVenue({p.name: p.rules for p in people}, cap_on_fills=cap_on_fills)
    played = []
    for number in range(1, rounds + 1):
        for o in offers:
            assert isinstance(venue.post_offer(o), Accepted)
        for b in bids:
            assert isinstance(venue.post_bid(b), Accepted)
        trades = tuple(venue.close_round())
        played.append(Round(number, tuple(offers), tuple(bids), trades, ()))
    return Outcome(0, tuple(played), True, trades)


def _rationed_market() -> tuple[list[Participant], list[Offer], list[Bid]]:
    """a and b (10 kWh each at 0.112) are asked 15 each and serve 2/3; c has 30 kWh at its cost 0.115 and
    sells y's rest. x wants 20 kWh but may receive at most 10; y wants 30. Both value energy at 0.20."""
    people = [
        _seller("a", 10.0, 0.09),
        _seller("b", 10.0, 0.09),
        _seller("c", 30.0, 0.115),
        _buyer("x", 20.0, 0.20, ContractRules(max_quantity_kwh=10.0)),
        _buyer("y", 30.0, 0.20, ContractRules()),
    ]
    offers = [
        Offer("a", 0, 0.112, 10.0, True),
        Offer("b", 0, 0.112, 10.0, True),
        Offer("c", 0, 0.115, 30.0, True),
    ]
    bids = [
        Bid("x", 0, (("a", 5.0), ("b", 5.0))),
        Bid("y", 0, (("a", 10.0), ("b", 10.0), ("c", 10.0))),
    ]
    return people, offers, bids


def test_with_cap_on_fills_a_seller_re_pricing_also_sells_what_a_capped_buyer_counts_on_missing() -> None:
    people, offers, bids = _rationed_market()
    # c sells 10 kWh at its cost: it gains nothing where it is. Its best re-pricing is +0.05 (0.165, still
    # below both buyers' 0.20). Counting its requests against its maximum, x asks a and b for 5 each and
    # nothing of c; y asks c for its last 10: c gains 10 × 0.05 = 0.5.
    plain = check(people, _settled(people, offers, bids, False), 0.001, cap_on_fills=False)
    assert plain.pricing_gain["c"] == pytest.approx(0.5, abs=1e-3)
    # On a cap_on_fills venue, after two rounds at standing prices, x counts on the 2/3 of its requests
    # that a and b served, expects 6.667 kWh there and asks c for the 3.333 that its maximum still takes;
    # y, expecting 13.333, asks c for 16.667. The venue keeps x within 10 kWh, so c sells 20 kWh: it gains
    # 20 × 0.05 = 1.0.
    capped = check(people, _settled(people, offers, bids, True), 0.001, cap_on_fills=True)
    assert capped.pricing_gain["c"] == pytest.approx(1.0, abs=1e-3)
    # After a single round buyers still smooth the fill (bargain's ExpectedFill): 0.5 × 1 + 0.5 × 2/3, so
    # x expects 8.333 and asks c for 1.667, y expects 16.667 and asks c for 13.333: c gains 15 × 0.05.
    once = check(people, _settled(people, offers, bids, True, rounds=1), 0.001, cap_on_fills=True)
    assert once.pricing_gain["c"] == pytest.approx(0.75, abs=1e-3)
    # the taker test does not depend on it: at the posted prices the allocation caps nothing here
    assert capped.taker_gain == pytest.approx(plain.taker_gain, abs=1e-9)


def test_with_cap_on_fills_and_no_seller_rationed_the_check_is_unchanged() -> None:
    # every seller serves all it is asked (fill 1): a buyer never asks past its maximum, so the capped
    # allocation cuts nothing and both readings agree
    people, offers, _ = _rationed_market()
    bids = [Bid("x", 0, (("a", 5.0), ("b", 5.0))), Bid("y", 0, (("a", 5.0), ("b", 5.0), ("c", 20.0)))]
    plain = check(people, _settled(people, offers, bids, False), 0.001)
    capped = check(people, _settled(people, offers, bids, True), 0.001, cap_on_fills=True)
    assert capped.pricing_gain == pytest.approx(plain.pricing_gain, abs=1e-9)
    assert capped.taker_gain == pytest.approx(plain.taker_gain, abs=1e-9)
