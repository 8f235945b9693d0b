"""The settlement computes the imbalance compensation on the chain (market.tariff, settle's `short`).

The DSO prices each party's cover (`market.tariff`: retail, feed-in per interval, set once, before the
interval closes). On a trade both of whose parties are priced, each party states what was delivered and its
own side's shortfall; the one settlement pays price x delivered from buyer to seller and, from the side that
fell short more, the compensation for the excess: per Wh not delivered the buyer's retail less the price, per
Wh not taken the price less the seller's feed-in, never below zero. A silent party's shortfall is the
undelivered rest its counterparty does not own (none where that owns it all); statements that leave part of it owned by nobody dispute the trade, and the DSO names both
sides. Unpriced trades, and every statement body of before, settle exactly as they did.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, reason
from test_settle_both import (
    BUYER,
    BUYER2,
    PRICE,
    SELLER,
    WAIT,
    Clock,
    balances,
    both_chain,
    events,
    trades_of,
)

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.contracts.market_state import compensation
from peergrid_ledger.results import Reason

RETAIL, FEED_IN = 300, 50  # micro-units per Wh: BUYER's retail, SELLER's feed-in in interval 1
QUANTITY = 400  # Wh: the trade of SELLER to BUYER (trades_of)


def priced(c: LocalChain, clock: Clock, retail: int = RETAIL, feed_in: int = FEED_IN) -> None:
    """The DSO prices every party of `trades_of` for intervals 0 … 2."""
    for k in (SELLER, BUYER, BUYER2):
        body = {"account": k.public, "first_interval": 0, "retail": [retail] * 3, "feed_in": [feed_in] * 3}
        assert clock.send(Keys.dso, body, "market.tariff").ok


def setup(**prices: int) -> tuple[LocalChain, Clock, bytes, bytes]:
    c = both_chain()
    clock = Clock(c)
    priced(c, clock, **prices)
    tid, tid2 = trades_of(c, clock)
    return c, clock, tid, tid2


def state(clock: Clock, who: Any, tid: bytes, delivered: int, short: int | None = None) -> Any:
    body: dict[str, Any] = {"trade": tid, "delivered": delivered}
    if short is not None:
        body["short"] = short
    return clock.send(who, body)


def moved(before: dict[bytes, int], after: dict[bytes, int]) -> dict[str, int]:
    return {
        "seller": after[SELLER.public] - before[SELLER.public],
        "buyer": after[BUYER.public] - before[BUYER.public],
    }


def test_a_seller_short_pays_its_buyer_retail_less_the_price_per_wh_in_the_same_settlement() -> None:
    c, clock, tid, _ = setup()
    before = balances(c)
    assert state(clock, BUYER, tid, 300).ok  # an old body: the buyer took all it was sent
    settled = events(state(clock, SELLER, tid, 300, short=100))
    assert settled[-1] == (
        "settled",
        {
            "trade": tid,
            "amount": PRICE * 300,
            "delivered": 300,
            "basis": "agreed",
            "compensation": 100 * (RETAIL - PRICE),
            "payer": "seller",
        },
    )
    assert moved(before, balances(c)) == {
        "seller": PRICE * 300 - 100 * (RETAIL - PRICE),
        "buyer": -PRICE * 300 + 100 * (RETAIL - PRICE),
    }
    record = query.settlement(c.state, tid)
    assert record is not None and record["settlement"]["compensation"] == {
        "payer": "seller",
        "amount": 5000,
        "seller_short": 100,
        "buyer_short": 0,
    }
    assert record["statements"]["seller"]["short"] == 100 and "short" not in record["statements"]["buyer"]
    assert reason(state(clock, BUYER, tid, 300)) is Reason.ALREADY_SETTLED  # once


def test_a_buyer_that_does_not_take_pays_the_price_less_the_sellers_feed_in() -> None:
    c, clock, tid, _ = setup()
    before = balances(c)
    assert state(clock, SELLER, tid, 300).ok
    assert events(state(clock, BUYER, tid, 300, short=100))[-1][1]["compensation"] == 100 * (PRICE - FEED_IN)
    assert moved(before, balances(c)) == {"seller": PRICE * 300 + 20_000, "buyer": -PRICE * 300 - 20_000}


def test_both_short_only_the_larger_shortfalls_excess_is_compensated() -> None:
    c, clock, tid, tid2 = setup()
    before = balances(c)
    assert state(clock, SELLER, tid, 300, short=100).ok
    assert events(state(clock, BUYER, tid, 300, short=40))[-1][1]["compensation"] == 60 * (RETAIL - PRICE)
    assert moved(before, balances(c))["buyer"] == -PRICE * 300 + 60 * 50
    # equal shortfalls: each got what it then wanted, nobody owes
    assert state(clock, SELLER, tid2, 200, short=100).ok
    assert events(state(clock, BUYER2, tid2, 200, short=100))[-1][1]["compensation"] == 0


def test_the_compensation_is_never_negative_when_the_cover_is_cheaper_than_the_trade() -> None:
    c, clock, tid, tid2 = setup(retail=200, feed_in=260)  # retail below the price, feed-in above it
    before = balances(c)
    assert state(clock, BUYER, tid, 300).ok
    assert events(state(clock, SELLER, tid, 300, short=100))[-1][1]["compensation"] == 0
    assert state(clock, SELLER, tid2, 200).ok
    assert events(state(clock, BUYER2, tid2, 200, short=100))[-1][1]["compensation"] == 0
    assert sum(balances(c).values()) == sum(before.values())


def test_a_delivered_trade_records_a_zero_compensation_and_an_unpriced_one_keeps_its_old_record() -> None:
    c, clock, tid, _ = setup()
    assert state(clock, BUYER, tid, QUANTITY).ok and state(clock, SELLER, tid, QUANTITY).ok
    record = query.settlement(c.state, tid)
    assert record is not None and record["settlement"]["compensation"]["amount"] == 0
    plain = both_chain()
    clock2 = Clock(plain)
    tid_plain, _ = trades_of(plain, clock2)
    assert state(clock2, BUYER, tid_plain, 300).ok
    assert events(state(clock2, SELLER, tid_plain, 300))[-1][1] == {
        "trade": tid_plain,
        "amount": PRICE * 300,
        "delivered": 300,
        "basis": "agreed",
    }
    old = query.settlement(plain.state, tid_plain)
    assert old is not None and set(old["settlement"]) == {"amount", "delivered", "txid", "basis"}


def test_a_shortfall_nobody_owns_is_disputed_and_the_dso_names_both_sides() -> None:
    c, clock, tid, _ = setup()
    before = balances(c)
    assert state(clock, BUYER, tid, 300).ok
    disputed = events(state(clock, SELLER, tid, 300))  # 100 Wh missing, each says it was not its fault
    assert disputed[-1] == ("disputed", {"trade": tid, "buyer": 300, "seller": 300, "unowned": 100})
    assert balances(c) == before
    dso = {"trade": tid, "delivered": 300}
    missing = clock.send(Keys.dso, dso)
    assert reason(missing) is Reason.INVALID and "larger shortfall is 100 Wh, not 0" in str(missing)
    wrong = clock.send(Keys.dso, {**dso, "seller_short": 60, "buyer_short": 20})
    assert reason(wrong) is Reason.INVALID
    assert reason(clock.send(Keys.dso, {**dso, "short": 100})) is Reason.INVALID  # one side's, not both
    settled = events(clock.send(Keys.dso, {**dso, "seller_short": 100, "buyer_short": 20}))
    assert settled[-1][1] == {
        "trade": tid,
        "amount": PRICE * 300,
        "delivered": 300,
        "basis": "dso",
        "compensation": 80 * (RETAIL - PRICE),
        "payer": "seller",
    }


def test_a_silent_partys_shortfall_is_the_undelivered_rest_its_counterparty_does_not_own() -> None:
    c, clock, tid, tid2 = setup()
    before = balances(c)
    assert state(clock, BUYER, tid, 300, short=30).ok  # the seller never states
    clock.now += WAIT
    changed = state(clock, BUYER, tid, 300, short=0)
    assert reason(changed) is Reason.DUPLICATE and "own shortfall 30" in str(changed)
    lapsed = events(state(clock, BUYER, tid, 300, short=30))
    assert lapsed[-1][1]["basis"] == "lapsed" and lapsed[-1][1]["payer"] == "seller"
    assert lapsed[-1][1]["compensation"] == 70 * (RETAIL - PRICE)
    assert moved(before, balances(c))["buyer"] == -PRICE * 300 + 70 * 50
    # a silent buyer: what was not delivered is its own shortfall, so a seller that delivered is paid for it
    assert state(clock, SELLER, tid2, 100).ok
    clock.now += WAIT
    assert events(state(clock, SELLER, tid2, 100))[-1][1]["compensation"] == 200 * (PRICE - FEED_IN)


def test_a_party_at_fault_cannot_shift_its_shortfall_onto_a_silent_counterparty() -> None:
    c, clock, tid, _ = setup()
    before = balances(c)
    assert state(clock, SELLER, tid, 300, short=100).ok  # it owns all 100 Wh missing; the buyer is down
    clock.now += WAIT
    lapsed = events(state(clock, SELLER, tid, 300, short=100))
    assert lapsed[-1][1]["compensation"] == 100 * (RETAIL - PRICE) and lapsed[-1][1]["payer"] == "seller"
    assert moved(before, balances(c))["buyer"] == -PRICE * 300 + 100 * 50
    record = query.settlement(c.state, tid)
    assert record is not None and record["settlement"]["compensation"]["buyer_short"] == 0


def test_bad_shortfalls_are_refused_naming_why_and_move_nothing() -> None:
    c, clock, tid, _ = setup()
    before = balances(c)
    over = state(clock, SELLER, tid, 300, short=101)
    assert reason(over) is Reason.INVALID and "exceed agreed 400" in str(over)
    both = clock.send(SELLER, {"trade": tid, "delivered": 300, "seller_short": 100, "buyer_short": 0})
    assert reason(both) is Reason.INVALID and "own side's" in str(both)
    plain = both_chain()
    clock2 = Clock(plain)
    tid_plain, _ = trades_of(plain, clock2)
    unpriced = state(clock2, SELLER, tid_plain, 300, short=100)
    assert reason(unpriced) is Reason.INVALID and "market.tariff" in str(unpriced)
    assert balances(c) == before and query.settlement(c.state, tid)["state"] == "open"  # type: ignore[index]


def test_only_the_dso_prices_a_cover_once_per_interval_before_it_closes() -> None:
    c = both_chain()
    clock = Clock(c)
    body = {"account": BUYER.public, "first_interval": 1, "retail": [RETAIL], "feed_in": [FEED_IN]}
    assert reason(clock.send(BUYER, body, "market.tariff")) is Reason.FORBIDDEN
    assert reason(clock.send(Keys.dso, {**body, "feed_in": []}, "market.tariff")) is Reason.INVALID
    assert (
        reason(clock.send(Keys.dso, {**body, "account": b"\x07" * 32}, "market.tariff")) is Reason.NOT_FOUND
    )
    assert events(clock.send(Keys.dso, body, "market.tariff")) == [
        ("tariff", {"account": BUYER.public, "first_interval": 1, "intervals": 1})
    ]
    again = clock.send(Keys.dso, {**body, "retail": [RETAIL + 1]}, "market.tariff")
    assert reason(again) is Reason.DUPLICATE and f"retail {RETAIL}" in str(again)
    assert market.tariff(c.state, BUYER.public, 1) == (RETAIL, FEED_IN)
    assert market.tariff(c.state, BUYER.public, 2) is None
    trades_of(c, clock, interval=2)
    late = clock.send(Keys.dso, {**body, "account": SELLER.public, "first_interval": 2}, "market.tariff")
    assert reason(late) is Reason.CLOSED and "interval 2 is closed" in str(late)


def test_a_chain_without_settle_by_both_takes_no_cover_prices() -> None:
    from ledger_fixtures import make_genesis

    from peergrid_ledger.genesis import Params

    c = LocalChain(make_genesis(params=Params(credit_limit=10**6)), Keys.authority)
    body = {"account": Keys.p1.public, "first_interval": 1, "retail": [RETAIL], "feed_in": [FEED_IN]}
    refused = Clock(c).send(Keys.dso, body, "market.tariff")
    assert reason(refused) is Reason.RULE_VIOLATION and "settle_by_both" in str(refused)


# ---------------------------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, QUANTITY),
    st.integers(0, QUANTITY),
    st.integers(0, 600),
    st.integers(0, 600),
    st.sampled_from(["both", "buyer", "seller"]),
    st.booleans(),
)
def test_any_shortfalls_settle_once_conserve_money_and_leave_the_party_let_down_whole(
    seller_short: int, buyer_short: int, retail: int, feed_in: int, speaking: str, seller_first: bool
) -> None:
    c, clock, tid, _ = setup(retail=retail, feed_in=feed_in)
    before = balances(c)
    delivered = QUANTITY - max(seller_short, buyer_short)
    order = [(SELLER, seller_short), (BUYER, buyer_short)]
    if not seller_first:
        order.reverse()
    if speaking != "both":
        order = [o for o in order if o[0] is (SELLER if speaking == "seller" else BUYER)]
    for who, short in order:
        assert state(clock, who, tid, delivered, short).ok
    if speaking != "both":  # the other is silent: its shortfall is the rest the speaker does not own
        clock.now += WAIT
        assert state(clock, order[0][0], tid, delivered, order[0][1]).ok
        gap = QUANTITY - delivered
        if speaking == "seller":
            buyer_short = gap if seller_short < gap else 0
        else:
            seller_short = gap if buyer_short < gap else 0
    record = query.settlement(c.state, tid)
    assert record is not None and record["state"] == "settled"
    for who, short in ((SELLER, seller_short), (BUYER, buyer_short)):  # exactly once
        assert reason(state(clock, who, tid, delivered, short)) is Reason.ALREADY_SETTLED
    after = balances(c)
    assert sum(after.values()) == sum(before.values())
    paid = record["settlement"]["compensation"]
    assert paid["amount"] >= 0
    money = moved(before, after)
    # the party let down ends as if it had traded what its own side delivered, its cover at the DSO's prices
    # paid for (or better, where the cover costs less than the trade)
    if seller_short > buyer_short:  # the buyer bought the missing energy at retail
        outlay = -money["buyer"] + retail * (seller_short - buyer_short)
        assert outlay <= PRICE * (QUANTITY - buyer_short)
        assert outlay == PRICE * (QUANTITY - buyer_short) or retail < PRICE
    elif buyer_short > seller_short:  # the seller sold the energy not taken at feed-in
        income = money["seller"] + feed_in * (buyer_short - seller_short)
        assert income >= PRICE * (QUANTITY - seller_short)
        assert income == PRICE * (QUANTITY - seller_short) or feed_in > PRICE
    else:
        assert paid["amount"] == 0
    assert money["seller"] + money["buyer"] == 0
    assert paid["amount"] == compensation(PRICE, seller_short, buyer_short, retail, feed_in)[1]


def test_a_side_at_fault_without_the_funds_owes_the_compensation_and_the_trade_settles() -> None:
    # review12 F3: a payer short of the compensation no longer refuses the whole settlement (it held the
    # other side's energy payment back); what it cannot pay within its credit is recorded as owed
    c = both_chain(balance=0)  # credit 0: the seller cannot pay a compensation it has not got
    clock = Clock(c)
    priced(c, clock)
    tid, _ = trades_of(c, clock)
    before = balances(c)
    assert state(clock, BUYER, tid, 0).ok  # nothing arrived
    settled = events(state(clock, SELLER, tid, 0, short=QUANTITY))[-1][1]  # owes 400 x 50, has nothing
    assert (settled["compensation"], settled["owed"]) == (0, QUANTITY * (RETAIL - PRICE))
    assert balances(c) == before
    record = query.settlement(c.state, tid)
    assert record is not None and record["state"] == "settled"
    assert record["settlement"]["owed"] == {"payer": "seller", "amount": QUANTITY * (RETAIL - PRICE)}
