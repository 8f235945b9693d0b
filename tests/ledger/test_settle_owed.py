"""The compensation never holds the energy payment hostage (review12 F3).

On a priced trade the settlement pays price x delivered and then moves the imbalance compensation from the
side that fell short more. Before, a payer that could pay for the energy but not the compensation got the
whole settlement refused (`insufficient-funds`), so the seller that delivered was paid nothing for as long as
the buyer at fault stayed short - on purpose, by draining its balance, too. Now the energy settles whenever it
alone is payable; the payer pays what it can of the compensation within its credit limit and the rest is
recorded on the settlement as `owed` {payer, amount} (what was owed then; collecting it from the payer's later
credits, and refusing it purchases meanwhile, is test_debts.py's). A settlement that pays in full carries no
`owed`, so its bytes are those of before; energy that is not payable is refused as before.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, make_genesis, reason
from test_settle_both import (
    BUYER,
    BUYER2,
    ENDED_LONG_AGO,
    OTHER,
    PRICE,
    SELLER,
    WAIT,
    Clock,
    events,
    trades_of,
)
from test_settle_compensation import FEED_IN, QUANTITY, RETAIL, priced

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.market_state import compensation
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.results import Reason

PLENTY = 10**7


def chain(seller: int = PLENTY, buyer: int = PLENTY, credit: int = 0) -> tuple[LocalChain, Clock, bytes]:
    """A priced settle_by_both chain whose SELLER and BUYER hold the balances given; the trade SELLER ->
    BUYER of QUANTITY Wh at PRICE, its interval closed."""
    held = {SELLER: seller, BUYER: buyer, BUYER2: PLENTY, OTHER: PLENTY}
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(Account(k.public, ("anonym",), f"p{i}", balance=held[k]) for i, k in enumerate(held, 1)),
    )
    params = Params(credit_limit=credit, settle_by_both=1, settle_wait_ms=WAIT, **ENDED_LONG_AGO)
    c = LocalChain(make_genesis(accounts=accounts, params=params), Keys.authority)
    clock = Clock(c)
    priced(c, clock)
    tid, _ = trades_of(c, clock)
    return c, clock, tid


def send(clock: Clock, who: Any, tid: bytes, delivered: int, **shorts: int) -> Any:
    return clock.send(who, {"trade": tid, "delivered": delivered, **shorts})


def held(c: LocalChain) -> tuple[int, int]:
    return query.balance(c.state, SELLER.public), query.balance(c.state, BUYER.public)


def settlement(c: LocalChain, tid: bytes) -> dict[str, Any]:
    record = query.settlement(c.state, tid)
    assert record is not None and record["state"] == "settled", record
    result: dict[str, Any] = record["settlement"]
    return result


# a buyer that took 200 of 400 Wh: the energy is 200 x PRICE, the compensation 200 x (PRICE - FEED_IN)
ENERGY, OWES = 200 * PRICE, 200 * (PRICE - FEED_IN)


def test_a_buyer_that_can_pay_the_energy_but_not_the_compensation_still_pays_the_seller() -> None:
    c, clock, tid = chain(buyer=ENERGY + 10_000)  # the review's case: the energy payable, not all the rest
    assert send(clock, SELLER, tid, 200, short=0).ok
    settled = events(send(clock, BUYER, tid, 200, short=200))[-1]
    assert settled == (
        "settled",
        {
            "trade": tid,
            "amount": ENERGY,
            "delivered": 200,
            "basis": "agreed",
            "compensation": 10_000,
            "payer": "buyer",
            "owed": OWES - 10_000,
        },
    )
    assert held(c) == (PLENTY + ENERGY + 10_000, 0)  # the buyer down to its credit limit (0), no further
    record = settlement(c, tid)
    assert record["compensation"] == {
        "payer": "buyer",
        "amount": 10_000,
        "seller_short": 0,
        "buyer_short": 200,
    }
    assert record["owed"] == {"payer": "buyer", "amount": OWES - 10_000}
    assert reason(send(clock, BUYER, tid, 200, short=200)) is Reason.ALREADY_SETTLED  # never twice
    assert reason(send(clock, Keys.dso, tid, 200, seller_short=0, buyer_short=200)) is Reason.ALREADY_SETTLED
    assert held(c) == (PLENTY + ENERGY + 10_000, 0)


def test_a_buyer_that_drained_its_balance_owes_all_of_it_on_a_lapse_and_the_dsos_settle() -> None:
    # lapse: the buyer states and goes silent with exactly the energy left, the seller settles on its word
    c, clock, tid = chain(buyer=ENERGY)
    assert send(clock, SELLER, tid, 200, short=0).ok
    clock.now += WAIT
    settled = events(send(clock, SELLER, tid, 200, short=0))[-1][1]
    assert (settled["basis"], settled["compensation"], settled["owed"]) == ("lapsed", 0, OWES)
    assert held(c) == (PLENTY + ENERGY, 0)
    assert settlement(c, tid)["owed"] == {"payer": "buyer", "amount": OWES}
    # the DSO's settle of a disputed trade (review12 F3's evidence: retried for ever before)
    c, clock, tid = chain(buyer=ENERGY)
    assert send(clock, BUYER, tid, 200, short=200).ok
    assert send(clock, SELLER, tid, 400, short=0).ok  # the statements disagree: disputed
    settled = events(send(clock, Keys.dso, tid, 200, seller_short=0, buyer_short=200))[-1][1]
    assert (settled["basis"], settled["compensation"], settled["owed"]) == ("dso", 0, OWES)
    assert held(c) == (PLENTY + ENERGY, 0)


def test_a_seller_at_fault_pays_from_the_energy_payment_and_within_its_credit() -> None:
    # the seller delivered 300 of 400 and holds nothing: it pays the compensation out of the energy payment
    c, clock, tid = chain(seller=0)
    assert send(clock, BUYER, tid, 300).ok
    settled = events(send(clock, SELLER, tid, 300, short=100))[-1][1]
    assert (settled["compensation"], "owed" in settled) == (100 * (RETAIL - PRICE), False)
    # delivered nothing, holds nothing, credit 3,000: it pays 3,000 and owes the rest
    c, clock, tid = chain(seller=0, credit=3_000)
    assert send(clock, BUYER, tid, 0).ok
    settled = events(send(clock, SELLER, tid, 0, short=QUANTITY))[-1][1]
    due = QUANTITY * (RETAIL - PRICE)
    assert (settled["amount"], settled["compensation"], settled["owed"]) == (0, 3_000, due - 3_000)
    assert held(c) == (-3_000, PLENTY + 3_000)
    assert settlement(c, tid)["owed"] == {"payer": "seller", "amount": due - 3_000}


def test_energy_the_buyer_cannot_pay_is_refused_as_before_and_nothing_moves() -> None:
    c, clock, tid = chain(buyer=ENERGY - 1)
    before = held(c)
    assert send(clock, SELLER, tid, 200, short=0).ok
    refused = send(clock, BUYER, tid, 200, short=200)
    assert reason(refused) is Reason.INSUFFICIENT_FUNDS and "buyer cannot pay" in str(refused)
    assert held(c) == before
    record = query.settlement(c.state, tid)
    assert record is not None and record["state"] == "stated" and record["settlement"] is None


def test_a_settlement_that_pays_in_full_records_no_owed() -> None:
    c, clock, tid = chain(buyer=ENERGY + OWES)  # exactly enough
    assert send(clock, SELLER, tid, 200, short=0).ok
    settled = events(send(clock, BUYER, tid, 200, short=200))[-1][1]
    assert settled["compensation"] == OWES and "owed" not in settled
    assert set(settlement(c, tid)) == {"amount", "basis", "compensation", "delivered", "txid"}
    assert held(c) == (PLENTY + ENERGY + OWES, 0)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, QUANTITY),
    st.integers(0, QUANTITY),
    st.integers(0, 200_000),
    st.integers(0, 200_000),
    st.integers(0, 50_000),
    st.sampled_from(["agreed", "lapsed", "dso"]),
)
def test_money_is_conserved_the_energy_is_paid_and_paid_plus_owed_is_the_compensation(
    seller_short: int, buyer_short: int, seller: int, buyer: int, credit: int, basis: str
) -> None:
    c, clock, tid = chain(seller=seller, buyer=buyer, credit=credit)
    delivered = QUANTITY - max(seller_short, buyer_short)
    start = held(c)
    if basis == "agreed":
        results = [send(clock, SELLER, tid, delivered, short=seller_short)]
        results.append(send(clock, BUYER, tid, delivered, short=buyer_short))
    elif basis == "lapsed":  # the seller's word alone: the silent buyer's is the rest it does not own
        results = [send(clock, SELLER, tid, delivered, short=seller_short)]
        clock.now += WAIT
        results.append(send(clock, SELLER, tid, delivered, short=seller_short))
        gap = QUANTITY - delivered
        buyer_short = gap if seller_short < gap else 0
    else:
        results = [send(clock, Keys.dso, tid, delivered, seller_short=seller_short, buyer_short=buyer_short)]
    energy = PRICE * delivered
    if buyer + credit < energy:  # the energy alone is not payable: refused as before, nothing moves
        assert reason(results[-1]) is Reason.INSUFFICIENT_FUNDS
        assert held(c) == start
        return
    assert all(r.ok for r in results)
    record = settlement(c, tid)
    after = held(c)
    assert sum(after) == sum(start)  # conserved
    payer, due = compensation(PRICE, seller_short, buyer_short, RETAIL, FEED_IN)
    paid = record["compensation"]["amount"]
    owed = record.get("owed", {"payer": payer, "amount": 0})
    assert owed["payer"] == payer and paid + owed["amount"] == due and paid >= 0
    assert ("owed" in record) == (owed["amount"] > 0)
    assert record["amount"] == energy  # the seller is paid for what was delivered
    to_seller = energy + (paid if payer == "buyer" else -paid)
    assert after == (start[0] + to_seller, start[1] - to_seller)
    assert min(after) >= -credit  # nobody below its credit limit
    if owed["amount"]:  # owed only what the payer could not pay: it is at its credit limit
        assert after[0 if payer == "seller" else 1] == -credit
    assert reason(send(clock, Keys.dso, tid, delivered)) is Reason.ALREADY_SETTLED
