"""The MGMC chain judges every move: rules are enforced by the ledger's market contract, not by the MGMC."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.market import Bid, Offer, Rejected, Trade, clear
from peergrid_controller.model import ContractRules, Load, Microgrid, Scenario, Tariff


def scenario(rules: dict[str, ContractRules]) -> Scenario:
    tariff = Tariff((0.25,), (0.05,))
    mgs = tuple(
        Microgrid(name, tariff, loads=(Load("l", (1.0,), (0.0,)),), rules=r) for name, r in rules.items()
    )
    return Scenario("chain-test", 0.25, mgs)


def test_seller_below_its_floor_is_rejected_by_the_chain() -> None:
    venue = ChainVenue(scenario({"s": ContractRules(floor_price=0.08), "b": ContractRules()}))
    verdict = venue.post_offer(Offer("s", 0, 0.07, 5.0, True))
    assert isinstance(verdict, Rejected)
    assert "floor" in verdict.reason
    assert not isinstance(venue.post_offer(Offer("s", 0, 0.08, 5.0, True)), Rejected)


def test_buyer_cannot_buy_more_than_offered_on_the_chain() -> None:
    venue = ChainVenue(scenario({"s": ContractRules(), "b": ContractRules(cap_price=0.2)}))
    venue.post_offer(Offer("s", 0, 0.1, 5.0, True))
    over = venue.post_bid(Bid("b", 0, (("s", 5.001),)))
    assert isinstance(over, Rejected) and "exceeds" in over.reason
    assert not isinstance(venue.post_bid(Bid("b", 0, (("s", 5.0),))), Rejected)


def test_chain_settles_each_agreed_trade_once_and_nothing_else() -> None:
    venue = ChainVenue(scenario({"s": ContractRules(), "b": ContractRules()}))
    venue.post_offer(Offer("s", 0, 0.1, 4.0, True))
    venue.post_bid(Bid("b", 0, (("s", 4.0),)))
    venue.close_round()
    (trade,) = venue.finish(0)
    assert trade == Trade(0, "s", "b", 4.0, 0.1)
    assert not isinstance(venue.settle(trade, 4.0), Rejected)
    again = venue.settle(trade, 4.0)
    assert isinstance(again, Rejected) and "already settled" in again.reason
    assert isinstance(venue.settle(Trade(1, "s", "b", 1.0, 0.1), 1.0), Rejected)  # never agreed
    venue.flush()
    assert math.isclose(venue.balance("s"), 0.4) and math.isclose(venue.balance("b"), -0.4)


@st.composite
def positions(draw: st.DrawFn) -> tuple[list[Offer], list[Bid]]:
    sellers = [f"s{i}" for i in range(draw(st.integers(1, 3)))]
    offers = [
        Offer(
            s, 0, draw(st.integers(50, 250)) / 1000, draw(st.integers(1, 20_000)) / 1000, draw(st.booleans())
        )
        for s in sellers
    ]
    bids = []
    for j in range(draw(st.integers(1, 3))):
        requests = []
        for o in offers:
            q = draw(st.integers(0, round(o.quantity_kwh * 1000))) / 1000
            if q > 0:
                requests.append((o.seller, q))
        bids.append(Bid(f"b{j}", 0, tuple(requests)))
    return offers, bids


@settings(max_examples=25, deadline=None)
@given(positions())
def test_local_clearing_equals_the_contracts_agreed_trades(case: tuple[list[Offer], list[Bid]]) -> None:
    offers, bids = case
    names = [o.seller for o in offers] + [b.buyer for b in bids]
    venue = ChainVenue(scenario({n: ContractRules() for n in names}))
    for o in offers:
        assert not isinstance(venue.post_offer(o), Rejected)
    for b in bids:
        assert not isinstance(venue.post_bid(b), Rejected)
    local = clear(offers, bids)
    venue.close_round()
    agreed = venue.finish(0)
    key = lambda t: (t.seller, t.buyer)  # noqa: E731
    assert sorted(agreed, key=key) == sorted(local, key=key)
