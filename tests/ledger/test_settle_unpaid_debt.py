"""review13 F6: with genesis `unpaid_as_debt` an agreeing statement the buyer cannot pay still settles the
trade: the buyer pays what its credit allows, the rest is its debt to the seller (`settle_pay.pay`), collected
from its next credits, and it may not buy meanwhile (`funds.refuse_debtor`). Without it (the default) the
statement is refused and unrecorded, as before."""

from __future__ import annotations

import pytest
from ledger_fixtures import make_genesis, reason
from test_settle_both import BUYER, OTHER, PRICE, SELLER, WAIT, Clock, both_chain, events, trades_of

from peergrid_ledger import query
from peergrid_ledger.genesis import Genesis, GenesisError, Params
from peergrid_ledger.results import Reason

AMOUNT = PRICE * 400  # the buyer's 400 Wh trade (trades_of)


def test_an_agreement_the_buyer_cannot_pay_is_recorded_and_owed() -> None:
    c = both_chain(balance=0, credit=30_000, contracts=("market", "payments"), unpaid_as_debt=1)
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert clock.state(BUYER, tid, 400).ok
    settled = clock.state(SELLER, tid, 400)  # 100,000 due, 30,000 of room
    last = [e for e in events(settled) if e[0] == "settled"][-1][1]
    assert last == {
        "trade": tid,
        "amount": AMOUNT,
        "delivered": 400,
        "basis": "agreed",
        "unpaid": AMOUNT - 30_000,
    }
    record = query.trade(c.state, tid)
    assert record is not None and record["settlement"]["unpaid"] == AMOUNT - 30_000
    assert query.balance(c.state, BUYER.public) == -30_000 and query.balance(c.state, SELLER.public) == 30_000
    assert query.owed(c.state, BUYER.public) == AMOUNT - 30_000
    # the debtor may not buy
    offer = {"interval": 2, "round": 0, "price": PRICE, "quantity": 1000, "clean": False}
    assert clock.send(SELLER, offer, "offer").ok
    bid = {"interval": 2, "round": 0, "demands": [{"seller": SELLER.public, "quantity": 900}]}
    assert reason(clock.send(BUYER, bid, "bid")) is Reason.INSUFFICIENT_FUNDS
    # a credit to it pays the seller first
    assert clock.send(OTHER, {"payee": BUYER.public, "amount": 100_000, "ref": "top-up"}, "pay").ok
    assert query.owed(c.state, BUYER.public) == 0
    assert query.balance(c.state, SELLER.public) == AMOUNT
    assert clock.send(BUYER, bid, "bid").ok


def test_a_buyer_past_its_credit_owes_it_all_and_a_lapse_records_it_too() -> None:
    c = both_chain(balance=0, unpaid_as_debt=1)
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert clock.state(SELLER, tid, 400).ok
    clock.now += WAIT
    lapsed = clock.state(SELLER, tid, 400)  # the silent buyer has no room at all
    assert [e for e in events(lapsed) if e[0] == "settled"][-1][1]["unpaid"] == AMOUNT
    assert query.owed(c.state, BUYER.public) == AMOUNT and query.balance(c.state, BUYER.public) == 0


def test_without_the_param_the_statement_is_refused_as_before() -> None:
    c = both_chain(balance=0)
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert clock.state(BUYER, tid, 400).ok
    assert reason(clock.state(SELLER, tid, 400)) is Reason.INSUFFICIENT_FUNDS
    assert query.owed(c.state, BUYER.public) == 0


def test_the_param_is_a_late_settle_flag() -> None:
    both = {"settle_by_both": 1, "settle_interval_ms": 900_000}
    assert "unpaid_as_debt" not in make_genesis(params=Params(**both)).to_value()["params"]
    with pytest.raises(GenesisError, match="unpaid_as_debt: only with settle_by_both"):
        Params(unpaid_as_debt=1)
    with pytest.raises(GenesisError, match="unpaid_as_debt: expected 0 or 1"):
        Params(**both, unpaid_as_debt=2)
    set_ = make_genesis(params=Params(**both, unpaid_as_debt=1))
    assert Genesis.decode(set_.encode()).params.unpaid_as_debt == 1
