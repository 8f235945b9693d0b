"""The chain venue reads a settlement's `owed`: its compensation figure is the contract's (moved + owed), as
delivery.py's is, when the payer cannot pay it all within the venue's `credit_limit` (settle_pay, N3)."""

from __future__ import annotations

import pytest

from peergrid_controller.chain_venue import CREDIT_LIMIT, ChainVenue, CompensationError
from peergrid_controller.market import Bid, Offer, Rejected, Trade, micro_per_wh
from peergrid_controller.model import ContractRules, Load, Microgrid, Scenario, Tariff
from peergrid_controller.settling import COMPENSATION_REF
from peergrid_controller.uplift import Payment
from peergrid_ledger import query
from peergrid_ledger.contracts.market_state import compensation

TARIFF = Tariff((0.25,), (0.05,))
SCENARIO = Scenario(
    "chain-owed",
    0.25,
    tuple(
        Microgrid(name, TARIFF, loads=(Load("l", (1.0,), (0.0,)),), rules=ContractRules())
        for name in ("s", "b")
    ),
)
AGREED_WH, PRICE = 4000, 0.1


def settle_short(credit_limit: int, seller_short: int) -> tuple[ChainVenue, Trade, int]:
    """One trade of 4 kWh at 0.1 that the seller delivers short by `seller_short` Wh, settled on a venue of
    `credit_limit`; with the contract's compensation for it (the seller pays)."""
    venue = ChainVenue(SCENARIO, compensate=True, credit_limit=credit_limit)
    assert not isinstance(venue.post_offer(Offer("s", 0, PRICE, AGREED_WH / 1000, True)), Rejected)
    assert not isinstance(venue.post_bid(Bid("b", 0, (("s", AGREED_WH / 1000),))), Rejected)
    venue.close_round()
    (trade,) = venue.finish(0)
    venue.metered({(0, "s", "b"): (seller_short, 0)})
    verdict = venue.settle(trade, (AGREED_WH - seller_short) / 1000)
    assert not isinstance(verdict, Rejected), verdict
    side, due = compensation(
        micro_per_wh(PRICE), seller_short, 0, micro_per_wh(TARIFF.retail[0]), micro_per_wh(TARIFF.feed_in[0])
    )
    assert side == "seller" and due > 0
    return venue, trade, due


def balances(venue: ChainVenue) -> dict[str, int]:
    return {name: query.balance(venue.chain.view, kp.public) for name, kp in venue.keys.items()}


def test_a_seller_that_cannot_pay_any_owes_it_all_and_the_venue_reports_the_contracts_figure() -> None:
    venue, trade, due = settle_short(credit_limit=0, seller_short=AGREED_WH)  # delivered nothing: paid 0
    record = query.settlement(venue.chain.view, venue.trade_id(trade))
    assert record is not None and record["settlement"]["compensation"]["amount"] == 0
    assert record["settlement"]["owed"] == {"payer": "seller", "amount": due}
    assert venue.compensation() == (Payment("s", "b", due),)  # before N4: () - the chain "moved" nothing
    assert venue.owed() == (Payment("s", "b", due),)
    assert set(balances(venue).values()) == {0}
    # the simulation's figure (delivery.py's, the contract's compensation) is confirmed, and the day closes
    assert not isinstance(venue.pay(Payment("s", "b", due), COMPENSATION_REF), Rejected)
    venue.flush()


def test_a_seller_that_can_pay_part_moves_that_part_and_owes_the_rest() -> None:
    short = 3500
    energy = micro_per_wh(PRICE) * (AGREED_WH - short)  # what the buyer pays, within this credit limit
    venue, _trade, due = settle_short(credit_limit=energy, seller_short=short)
    paid = 2 * energy  # the seller's room: the energy it was paid + the credit limit
    assert 0 < paid < due
    assert venue.compensation() == (Payment("s", "b", due),)
    assert venue.owed() == (Payment("s", "b", due - paid),)
    assert balances(venue) == {"s": energy - paid, "b": -energy + paid}
    wrong = venue.pay(Payment("s", "b", paid), COMPENSATION_REF)  # only what moved: not the contract's figure
    assert isinstance(wrong, Rejected)
    assert (
        f"moved (or recorded as owed) {due} micro-units of compensation from s to b, not {paid}"
        in wrong.reason
    )
    with pytest.raises(CompensationError, match=rf"recorded as owed\) {due} micro-units"):
        venue.flush()


def test_the_default_credit_limit_owes_nothing_and_gives_the_same_figure() -> None:
    limited, _, due = settle_short(credit_limit=0, seller_short=AGREED_WH)
    default, _, same = settle_short(credit_limit=CREDIT_LIMIT, seller_short=AGREED_WH)
    assert same == due and default.compensation() == limited.compensation() and default.owed() == ()
    assert balances(default) == {"s": -due, "b": due}


TRADE = Trade(0, "s", "b", 4.0, 0.1)


def test_an_owed_without_a_compensation_is_refused_loudly_and_nothing_is_counted() -> None:
    venue = ChainVenue(SCENARIO, compensate=True)
    with pytest.raises(CompensationError, match=r"records owed .* but no compensation"):
        venue.settlement.read_compensation(TRADE, {"amount": 0, "owed": {"payer": "seller", "amount": 5}})
    assert venue.settlement.due == {} == venue.settlement.unpaid


def test_an_owed_by_the_other_side_than_the_compensations_payer_is_refused_loudly() -> None:
    venue = ChainVenue(SCENARIO, compensate=True)
    record = {"compensation": {"payer": "buyer", "amount": 3}, "owed": {"payer": "seller", "amount": 5}}
    with pytest.raises(CompensationError, match="owed by the seller, compensation by the buyer"):
        venue.settlement.read_compensation(TRADE, record)
    assert venue.settlement.due == {} == venue.settlement.unpaid


def test_a_hand_made_record_the_buyer_owes_counts_moved_plus_owed_for_the_buyer() -> None:
    venue = ChainVenue(SCENARIO, compensate=True)
    venue.settlement.read_compensation(
        TRADE, {"compensation": {"payer": "buyer", "amount": 3}, "owed": {"payer": "buyer", "amount": 5}}
    )
    venue.settlement.read_compensation(TRADE, {"compensation": {"payer": "seller", "amount": 2}})
    assert venue.compensation() == (Payment("b", "s", 6),)  # 8 one way, 2 the other, netted
    assert venue.owed() == (Payment("b", "s", 5),)
