"""What a priced settlement records as `owed` is collected, and a member that owes may not buy (contracts/funds.py).

A payer that cannot pay a trade's compensation within its credit limit owes the rest (test_settle_owed.py). The
debt goes on the payer's debt list, oldest first; every later credit the contracts make to it (a settlement's
energy payment or compensation, a `pay`) pays its oldest debts first, never more than the credit, each part
announced by `owed_paid`. While it owes, its bids, demand-raising moves and exchange purchases are refused
`insufficient-funds` naming the debt; it may sell, which is what pays the debt. The trade record's `owed` stays
what was owed at the settlement. A chain where nobody owes has no debt record (its bytes are as before).
Collection alone (chains and cycles of debts, any graph of them) is test_debts_collect.py's; the model of it all
(settlements, payments, auctions) test_debts_model.py's; a debtor's refunds and own payments (review14 K6)
test_debts_refunds.py's.
"""

from __future__ import annotations

from typing import Any

from ledger_fixtures import Keys, make_genesis, reason
from test_settle_both import ENDED_LONG_AGO, PRICE, WAIT, Clock, events
from test_settle_compensation import FEED_IN, RETAIL

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.funds import debts_key
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Reason

A, B, C = Keys.p1, Keys.p2, Keys.p3
PLENTY = 10**7
CREDIT = 5_000  # the credit limit of the chains that test paying within it


def debt_chain(
    held: dict[Keypair, int],
    credit: int = 0,
    contracts: tuple[str, ...] = ("market", "payments"),
    owed_limit: int = 0,
    unpaid_as_debt: int = 0,
) -> tuple[LocalChain, Clock]:
    """A settle_by_both chain whose parties hold `held`, every one priced (RETAIL, FEED_IN) for intervals 0-63."""
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(Account(k.public, ("anonym",), f"p{i}", balance=b) for i, (k, b) in enumerate(held.items(), 1)),
    )
    params = Params(
        credit_limit=credit,
        settle_by_both=1,
        settle_wait_ms=WAIT,
        owed_limit=owed_limit,
        unpaid_as_debt=unpaid_as_debt,
        **ENDED_LONG_AGO,
    )
    c = LocalChain(make_genesis(accounts=accounts, params=params, contracts=contracts), Keys.authority)
    clock = Clock(c)
    for k in held:
        body = {"account": k.public, "first_interval": 0, "retail": [RETAIL] * 64, "feed_in": [FEED_IN] * 64}
        assert clock.send(Keys.dso, body, "market.tariff").ok
    return c, clock


def offer(clock: Clock, seller: Keypair, interval: int, quantity: int, price: int = PRICE) -> Any:
    body = {"interval": interval, "round": 0, "price": price, "quantity": quantity, "clean": True}
    return clock.send(seller, body, "offer")


def bid(clock: Clock, buyer: Keypair, seller: Keypair, interval: int, quantity: int) -> Any:
    body = {"interval": interval, "round": 0, "demands": [{"seller": seller.public, "quantity": quantity}]}
    return clock.send(buyer, body, "bid")


def traded(
    c: LocalChain, clock: Clock, seller: Keypair, buyer: Keypair, interval: int, quantity: int
) -> bytes:
    """`seller` sells `buyer` `quantity` Wh at PRICE in `interval`: the trade's id."""
    assert offer(clock, seller, interval, quantity).ok
    assert bid(clock, buyer, seller, interval, quantity).ok
    assert clock.send(buyer, {"interval": interval}, "trade").ok
    ((tid, _),) = query.trades(c.state, interval)
    return tid


def dso_settle(clock: Clock, tid: bytes, delivered: int, seller_short: int, buyer_short: int) -> Any:
    body = {"trade": tid, "delivered": delivered, "seller_short": seller_short, "buyer_short": buyer_short}
    return clock.send(Keys.dso, body)


def balance(c: LocalChain, k: Keypair) -> int:
    return query.balance(c.state, k.public)


# a buyer that takes nothing of 400 Wh owes 400 x (PRICE - FEED_IN)
OWES_400 = 400 * (PRICE - FEED_IN)


def owing(
    held: dict[Keypair, int], contracts: tuple[str, ...] = ("market", "payments"), owed_limit: int = 0
) -> tuple[Any, ...]:
    """B bought 400 Wh of A in interval 1, took none of it and holds nothing: it owes A OWES_400."""
    c, clock = debt_chain(held, contracts=contracts, owed_limit=owed_limit)
    tid = traded(c, clock, A, B, 1, 400)
    settled = events(dso_settle(clock, tid, 0, 0, 400))
    assert settled == [
        ("settled", {"trade": tid, "amount": 0, "delivered": 0, "basis": "dso", "compensation": 0,
                     "payer": "buyer", "owed": OWES_400}),
    ]  # fmt: skip
    return c, clock, tid


def test_a_debt_is_listed_and_paid_by_the_debtors_next_sale_first() -> None:
    c, clock, owed_tid = owing({A: PLENTY, B: 0, C: PLENTY})
    assert query.owed(c.state, B.public) == OWES_400
    assert query.debts(c.state, B.public) == [{"amount": OWES_400, "creditor": A.public, "trade": owed_tid}]
    assert query.owed(c.state, A.public) == 0 and query.debts(c.state, A.public) == []
    # B sells C 400 Wh, delivered in full: C pays 100,000, of which B's debt to A (80,000) is paid first ...
    tid = traded(c, clock, B, C, 2, 400)
    before = {k: balance(c, k) for k in (A, B, C)}
    result = events(dso_settle(clock, tid, 400, 0, 0))
    energy = 400 * PRICE
    assert result[0] == ("settled", {"trade": tid, "amount": energy, "delivered": 400, "basis": "dso",
                                     "compensation": 0, "payer": "seller"})  # fmt: skip
    assert result[1:] == [
        (
            "owed_paid",
            {"debtor": B.public, "creditor": A.public, "amount": OWES_400, "trade": owed_tid, "owed": 0},
        )
    ]
    assert energy > OWES_400  # ... in full, and B keeps the rest
    after = {k: balance(c, k) for k in (A, B, C)}
    assert after[A] - before[A] == OWES_400
    assert after[B] - before[B] == energy - OWES_400
    assert after[C] - before[C] == -energy
    assert query.owed(c.state, B.public) == 0 and query.debts(c.state, B.public) == []
    assert c.state.get(debts_key(B.public)) is None  # paid: no record left
    # the settlement that recorded it still says what was owed then
    record = query.settlement(c.state, owed_tid)
    assert record is not None and record["settlement"]["owed"] == {"payer": "buyer", "amount": OWES_400}
    # and B may buy again
    assert offer(clock, A, 3, 100).ok and bid(clock, B, A, 3, 100).ok


def test_a_credit_smaller_than_the_debts_pays_the_oldest_first_and_never_more_than_it() -> None:
    c, clock, first = owing({A: PLENTY, B: 0, C: PLENTY})
    # B owes C too, recorded later (B may not buy while it owes, so as a seller): it sells C 100 Wh and
    # delivers none, holding nothing
    second = traded(c, clock, B, C, 2, 100)
    settled = events(dso_settle(clock, second, 0, 100, 0))
    due = 100 * (RETAIL - PRICE)
    assert settled[0][1]["owed"] == due and settled[1:] == []  # no credit reached B: nothing collected
    assert query.debts(c.state, B.public) == [
        {"amount": OWES_400, "creditor": A.public, "trade": first},
        {"amount": due, "creditor": C.public, "trade": second},
    ]
    # a pay of 50,000 to B: the oldest (A's) takes it all, C's waits
    before = {k: balance(c, k) for k in (A, B, C)}
    paid = events(clock.send(C, {"payee": B.public, "amount": 50_000, "ref": "gift"}, "pay"))
    assert paid[1:] == [
        ("owed_paid", {"debtor": B.public, "creditor": A.public, "amount": 50_000, "trade": first,
                       "owed": OWES_400 + due - 50_000}),
    ]  # fmt: skip
    after = {k: balance(c, k) for k in (A, B, C)}
    assert (after[A] - before[A], after[B] - before[B], after[C] - before[C]) == (50_000, 0, -50_000)
    # the next pay finishes A's debt and starts on C's: two events, oldest first
    rest = OWES_400 - 50_000
    paid = events(clock.send(C, {"payee": B.public, "amount": rest + 2_000, "ref": "gift-2"}, "pay"))
    assert paid[1:] == [
        ("owed_paid", {"debtor": B.public, "creditor": A.public, "amount": rest, "trade": first,
                       "owed": due}),
        ("owed_paid", {"debtor": B.public, "creditor": C.public, "amount": 2_000, "trade": second,
                       "owed": due - 2_000}),
    ]  # fmt: skip
    assert query.debts(c.state, B.public) == [{"amount": due - 2_000, "creditor": C.public, "trade": second}]


def test_a_debtor_may_not_buy_but_may_sell_and_cut_its_demands() -> None:
    c, clock, owed_tid = owing({A: PLENTY, B: 0, C: PLENTY})
    assert offer(clock, A, 2, 500).ok
    refused = bid(clock, B, A, 2, 100)
    assert reason(refused) is Reason.INSUFFICIENT_FUNDS
    text = str(refused)
    assert f"owes {OWES_400} micro-units on 1 settlement(s)" in text and "a bid in interval 2" in text
    assert A.public.hex()[:16] in text and owed_tid.hex()[:16] in text and "it may sell" in text
    assert query.bid(c.state, 2, B.public) is None
    assert offer(clock, B, 2, 50).ok  # selling stays open
    # an empty bid buys nothing: a debtor joins an interval's bargaining with one (the edge's way to take part
    # as neither side), but no later move of it may ask for energy
    assert clock.send(B, {"interval": 3, "round": 0, "demands": []}, "bid").ok
    assert offer(clock, A, 3, 500).ok
    move = {"interval": 3, "round": 1, "demands": [{"seller": A.public, "quantity": 1}]}
    assert reason(clock.send(B, move, "move")) is Reason.INSUFFICIENT_FUNDS
    assert clock.send(B, {**move, "demands": []}, "move").ok
    # a bid it opened before it owed: it may cut it, not raise it or ask a new seller
    c, clock = debt_chain({A: PLENTY, B: 0, C: PLENTY})
    assert offer(clock, A, 2, 500).ok and offer(clock, C, 2, 500).ok
    assert bid(clock, B, A, 2, 200).ok  # B does not owe yet
    tid = traded(c, clock, A, B, 1, 400)
    assert dso_settle(clock, tid, 0, 0, 400).ok  # now it does
    move = {"interval": 2, "round": 1, "demands": [{"seller": A.public, "quantity": 300}]}
    assert reason(clock.send(B, move, "move")) is Reason.INSUFFICIENT_FUNDS
    move["demands"] = [{"seller": A.public, "quantity": 100}, {"seller": C.public, "quantity": 1}]
    refused = clock.send(B, move, "move")
    assert reason(refused) is Reason.INSUFFICIENT_FUNDS and "a move raising a demand" in str(refused)
    move["demands"] = [{"seller": A.public, "quantity": 100}]
    assert clock.send(B, move, "move").ok
    assert query.bid(c.state, 2, B.public) == {"demands": move["demands"], "round": 1}


def test_a_debtor_may_post_no_exchange_purchase_but_may_sell() -> None:
    _, clock, _ = owing({A: PLENTY, B: 0, C: PLENTY}, contracts=("market", "payments", "exchange"))
    session = {"session": "day-1", "first_interval": 100, "members": [A.public, B.public],
               "prices": [50_000_000, 80_000_000], "rho": 5_000_000}  # fmt: skip
    assert clock.send(Keys.dso, session, "exchange.open").ok
    post = {"session": "day-1", "iteration": 0, "positions": [300, -200]}
    refused = clock.send(B, post, "exchange.position")
    assert reason(refused) is Reason.INSUFFICIENT_FUNDS
    assert "a purchase in exchange session 'day-1'" in str(refused) and f"owes {OWES_400}" in str(refused)
    assert clock.send(B, {**post, "positions": [300, 0]}, "exchange.position").ok
    assert clock.send(A, {**post, "positions": [-300, -200]}, "exchange.position").ok  # A owes nothing


def test_a_member_that_came_to_owe_after_its_last_position_accepts_no_purchase() -> None:
    """`exchange.position` refuses a debtor's purchases, but a member can come to owe between its last
    position and its first accept: that accept may not buy either (a re-accept only shrinks a purchase)."""
    c, clock = debt_chain({A: PLENTY, B: 0, C: PLENTY}, contracts=("market", "payments", "exchange"))
    session = {"session": "day-1", "first_interval": 100, "members": [A.public, B.public],
               "prices": [50_000_000, 80_000_000], "rho": 5_000_000}  # fmt: skip
    assert clock.send(Keys.dso, session, "exchange.open").ok
    for k, positions in ((A, [200, 100]), (B, [-200, -100])):
        assert clock.send(
            k, {"session": "day-1", "iteration": 0, "positions": positions}, "exchange.position"
        ).ok
    assert clock.send(Keys.dso, {"session": "day-1", "iteration": 0, "rho": 5_000_000}, "exchange.step").ok
    assert clock.send(Keys.dso, {"session": "day-1", "iteration": 1}, "exchange.close").ok
    tid = traded(c, clock, A, B, 1, 400)  # B takes none of it and holds nothing: it owes A OWES_400
    assert events(dso_settle(clock, tid, 0, 0, 400))[0][1]["owed"] == OWES_400
    accept = {"session": "day-1", "positions": [-200, 0], "clean": False}
    refused = clock.send(B, accept, "exchange.accept")
    assert reason(refused) is Reason.INSUFFICIENT_FUNDS
    assert "a purchase accepted in exchange session 'day-1'" in str(refused)
    assert f"owes {OWES_400}" in str(refused)
    assert clock.send(B, {**accept, "positions": [0, 0]}, "exchange.accept").ok  # declining is open
    assert clock.send(A, {**accept, "positions": [200, 100]}, "exchange.accept").ok  # A owes nothing


def test_a_debtors_auction_proceeds_pay_its_debt_first() -> None:
    """The auction example's proceeds are a credit like any other: a debtor selling a lot pays its debts."""
    c, clock, _ = owing({A: PLENTY, B: 0, C: PLENTY}, contracts=("market", "payments", "auction"))
    before = balance(c, A)
    close = c.height + 3
    lot = {"auction": "lot-1", "quantity": 10, "reserve": 5, "close_height": close}
    assert clock.send(B, lot, "auction.open").ok
    assert clock.send(C, {"auction": "lot-1", "amount": OWES_400 + 7}, "auction.bid").ok
    while c.height < close:
        clock.send(C, {"auction": "lot-1", "amount": 1}, "auction.bid")  # refused (too low): a block passes
    assert query.owed(c.state, B.public) == 0 and query.debts(c.state, B.public) == []
    assert balance(c, A) == before + OWES_400 and balance(c, B) == 7


def test_an_exchange_purchase_within_the_genesis_owed_limit_is_taken() -> None:
    """genesis owed_limit: a member owing at most that may still buy on the exchange, one more unit may not."""
    session = {"session": "day-1", "first_interval": 100, "members": [A.public, B.public],
               "prices": [50_000_000, 80_000_000], "rho": 5_000_000}  # fmt: skip
    post = {"session": "day-1", "iteration": 0, "positions": [300, -200]}
    for limit, taken in ((OWES_400, True), (OWES_400 - 1, False)):
        contracts = ("market", "payments", "exchange")
        _, clock, _ = owing({A: PLENTY, B: 0, C: PLENTY}, contracts=contracts, owed_limit=limit)
        assert clock.send(Keys.dso, session, "exchange.open").ok
        assert clock.send(B, post, "exchange.position").ok is taken


def test_a_bid_and_a_demand_raise_within_the_genesis_owed_limit_are_taken() -> None:
    """genesis owed_limit on the intraday market: owing at most that, a member still bids and raises a demand."""
    for limit, taken in ((OWES_400, True), (OWES_400 - 1, False)):
        _, clock, _ = owing({A: PLENTY, B: 0, C: PLENTY}, owed_limit=limit)
        assert offer(clock, A, 2, 500).ok
        assert bid(clock, B, A, 2, 100).ok is taken
        if taken:
            move = {"interval": 2, "round": 1, "demands": [{"seller": A.public, "quantity": 200}]}
            assert clock.send(B, move, "move").ok


def test_a_chain_where_nobody_owes_writes_no_debt_record() -> None:
    c, clock = debt_chain({A: PLENTY, B: PLENTY, C: PLENTY})
    tid = traded(c, clock, A, B, 1, 400)
    result = events(dso_settle(clock, tid, 200, 0, 200))  # B pays the compensation in full
    assert [name for name, _ in result] == ["settled"] and "owed" not in result[0][1]
    assert not [k for k, _ in c.state.items() if k.startswith(b"owed/")]
    assert events(clock.send(A, {"payee": B.public, "amount": 5, "ref": "r"}, "pay")) == [
        ("paid", {"payer": A.public, "payee": B.public, "amount": 5, "ref": "r"})
    ]


def test_a_debtor_paid_off_within_its_credit_buys_again() -> None:
    """Owed after paying what its credit allowed, refused a bid, paid off by a payment, then buying again."""
    c, clock = debt_chain({A: 0, B: 0, C: PLENTY}, credit=CREDIT)
    tid = traded(c, clock, A, B, 1, 400)
    assert dso_settle(clock, tid, 0, 0, 400).ok  # B owes 80,000 less the 5,000 it paid within its credit
    assert query.owed(c.state, B.public) == OWES_400 - CREDIT
    assert offer(clock, C, 2, 10).ok and reason(bid(clock, B, C, 2, 10)) is Reason.INSUFFICIENT_FUNDS
    paid = events(clock.send(C, {"payee": B.public, "amount": 90_000, "ref": "x"}, "pay"))
    assert paid[1][1]["amount"] == OWES_400 - CREDIT and query.owed(c.state, B.public) == 0
    assert balance(c, B) == -CREDIT + 90_000 - (OWES_400 - CREDIT)
    assert bid(clock, B, C, 2, 10).ok
