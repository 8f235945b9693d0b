"""Market and auction contracts: rules the chain enforces, agreed trades, settlement once, the auction example."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, make_genesis, reason, submit_checked

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.results import Accepted, Reason

SELLER_RULES = {
    "floor_price": 200,
    "cap_price": 0,
    "max_quantity": 5000,
    "clean_only": False,
    "clean_premium": 0,
}
BUYER_RULES = {
    "floor_price": 0,
    "cap_price": 300,
    "max_quantity": 2000,
    "clean_only": False,
    "clean_premium": 40,
}


def market_chain(credit: int = 0, balance: int = 10**9) -> LocalChain:
    accounts = (
        Account(Keys.dso.public, ("dso",)),
        Account(Keys.p1.public, ("anonym",), "seller", balance=0, rules=SELLER_RULES),
        Account(Keys.p2.public, ("anonym",), "seller2", balance=0),
        Account(Keys.p3.public, ("anonym",), "buyer", balance=balance, rules=BUYER_RULES),
        Account(Keys.p4.public, ("anonym",), "buyer2", balance=balance),
    )
    return LocalChain(make_genesis(accounts=accounts, params=Params(credit_limit=credit)), Keys.authority)


def offer(price: int, quantity: int = 1000, clean: bool = True, interval: int = 1) -> dict[str, Any]:
    return {"interval": interval, "round": 0, "price": price, "quantity": quantity, "clean": clean}


def demand(seller: bytes, quantity: int) -> dict[str, Any]:
    return {"seller": seller, "quantity": quantity}


def bid(*demands: dict[str, Any], interval: int = 1, round_: int = 0) -> dict[str, Any]:
    return {"interval": interval, "round": round_, "demands": list(demands)}


def test_a_seller_below_its_own_floor_is_rejected_by_the_chain() -> None:
    chain = market_chain()
    assert reason(chain.sign_and_submit(Keys.p1, "offer", offer(199))) is Reason.RULE_VIOLATION
    assert reason(chain.sign_and_submit(Keys.p1, "offer", offer(250, 5001))) is Reason.RULE_VIOLATION
    assert chain.sign_and_submit(Keys.p1, "offer", offer(200)).ok
    assert reason(chain.sign_and_submit(Keys.p1, "offer", offer(250))) is Reason.DUPLICATE
    lower = {"interval": 1, "round": 1, "price": 150, "quantity": 1000}
    assert reason(chain.sign_and_submit(Keys.p1, "move", lower)) is Reason.RULE_VIOLATION
    same_round = {"interval": 1, "round": 0, "price": 260, "quantity": 1000}
    assert reason(chain.sign_and_submit(Keys.p1, "move", same_round)) is Reason.RULE_VIOLATION
    assert chain.sign_and_submit(Keys.p1, "move", {**same_round, "round": 1}).ok
    assert query.offer(chain.view, 1, Keys.p1.public)["price"] == 260  # type: ignore[index]


def test_rules_cannot_be_loosened_for_an_interval_already_traded() -> None:
    chain = market_chain()
    assert chain.sign_and_submit(Keys.p1, "offer", offer(200, interval=5)).ok
    loose = {**SELLER_RULES, "floor_price": 0}
    assert (
        reason(chain.sign_and_submit(Keys.p1, "market.rules", {"rules": loose, "from_interval": 5}))
        is Reason.RULE_VIOLATION
    )
    assert chain.sign_and_submit(Keys.p1, "market.rules", {"rules": loose, "from_interval": 6}).ok
    assert query.rules(chain.view, Keys.p1.public, 5)["floor_price"] == 200
    assert query.rules(chain.view, Keys.p1.public, 6)["floor_price"] == 0


def test_buyer_cap_clean_premium_clean_only_and_quantities() -> None:
    chain = market_chain()
    assert chain.sign_and_submit(Keys.p1, "offer", offer(330, clean=True)).ok  # within cap + clean premium
    assert chain.sign_and_submit(Keys.p2, "offer", offer(310, clean=False)).ok  # above the plain cap
    assert chain.sign_and_submit(Keys.p3, "bid", bid(demand(Keys.p1.public, 500))).ok
    chain2 = market_chain()
    assert chain2.sign_and_submit(Keys.p2, "offer", offer(310, clean=False)).ok
    assert (
        reason(chain2.sign_and_submit(Keys.p3, "bid", bid(demand(Keys.p2.public, 10))))
        is Reason.RULE_VIOLATION
    )
    # a buyer cannot ask for more than was offered, nor beyond its own maximum
    assert chain2.sign_and_submit(Keys.p1, "offer", offer(200, quantity=3000)).ok
    assert (
        reason(chain2.sign_and_submit(Keys.p4, "bid", bid(demand(Keys.p1.public, 3001))))
        is Reason.RULE_VIOLATION
    )
    assert (
        reason(chain2.sign_and_submit(Keys.p3, "bid", bid(demand(Keys.p1.public, 2001))))
        is Reason.RULE_VIOLATION
    )
    assert reason(chain2.sign_and_submit(Keys.p4, "bid", bid(demand(Keys.p3.public, 1)))) is Reason.NOT_FOUND
    twice = bid(demand(Keys.p1.public, 1), demand(Keys.p1.public, 1))
    assert reason(chain2.sign_and_submit(Keys.p4, "bid", twice)) is Reason.INVALID
    # a seller cannot also buy in the same interval
    assert (
        reason(chain2.sign_and_submit(Keys.p1, "bid", bid(demand(Keys.p2.public, 1))))
        is Reason.RULE_VIOLATION
    )


def test_clean_only_buyer_refuses_non_clean_offers() -> None:
    chain = market_chain()
    clean_only = {**BUYER_RULES, "clean_only": True}
    assert chain.sign_and_submit(Keys.p4, "market.rules", {"rules": clean_only, "from_interval": 0}).ok
    assert chain.sign_and_submit(Keys.p2, "offer", offer(250, clean=False)).ok
    assert (
        reason(chain.sign_and_submit(Keys.p4, "bid", bid(demand(Keys.p2.public, 10))))
        is Reason.RULE_VIOLATION
    )


def test_agreed_trades_settle_once_and_move_balances() -> None:
    chain = market_chain()
    assert chain.sign_and_submit(Keys.p1, "offer", offer(250, 1000)).ok
    assert chain.sign_and_submit(Keys.p3, "bid", bid(demand(Keys.p1.public, 400))).ok
    assert chain.sign_and_submit(Keys.p4, "bid", bid(demand(Keys.p1.public, 300))).ok
    assert reason(chain.sign_and_submit(Keys.p2, "trade", {"interval": 1})) is Reason.FORBIDDEN
    closed = chain.sign_and_submit(Keys.p3, "trade", {"interval": 1})
    assert isinstance(closed, Accepted) and len(closed.events) == 2
    assert reason(chain.sign_and_submit(Keys.p3, "trade", {"interval": 1})) is Reason.CLOSED
    assert reason(chain.sign_and_submit(Keys.p2, "offer", offer(250))) is Reason.CLOSED
    assert (
        reason(chain.sign_and_submit(Keys.p3, "move", bid(demand(Keys.p1.public, 1), round_=1)))
        is Reason.CLOSED
    )
    chain.seal()
    trades = dict(query.trades(chain.state, 1))
    assert sorted(t["quantity"] for t in trades.values()) == [300, 400]
    tid = next(t for t, v in trades.items() if v["buyer"] == Keys.p3.public)
    assert (
        reason(chain.sign_and_submit(Keys.p2, "settle", {"trade": tid, "delivered": 400})) is Reason.FORBIDDEN
    )
    assert (
        reason(chain.sign_and_submit(Keys.p3, "settle", {"trade": tid, "delivered": 401})) is Reason.INVALID
    )
    assert chain.sign_and_submit(Keys.p3, "settle", {"trade": tid, "delivered": 400}).ok
    assert (
        reason(chain.sign_and_submit(Keys.p1, "settle", {"trade": tid, "delivered": 400}))
        is Reason.ALREADY_SETTLED
    )
    unagreed = bytes(32)
    assert (
        reason(chain.sign_and_submit(Keys.p3, "settle", {"trade": unagreed, "delivered": 1}))
        is Reason.NOT_FOUND
    )
    chain.seal()
    assert query.balance(chain.state, Keys.p1.public) == 250 * 400
    assert query.balance(chain.state, Keys.p3.public) == 10**9 - 250 * 400


def test_settlement_respects_the_credit_limit() -> None:
    chain = market_chain(balance=1000, credit=500)
    assert chain.sign_and_submit(Keys.p1, "offer", offer(250, 100)).ok
    assert chain.sign_and_submit(Keys.p4, "bid", bid(demand(Keys.p1.public, 100))).ok
    closed = chain.sign_and_submit(Keys.p4, "trade", {"interval": 1})
    assert isinstance(closed, Accepted)
    tid = closed.events[0][1]["id"]
    assert (
        reason(chain.sign_and_submit(Keys.p4, "settle", {"trade": tid, "delivered": 100}))
        is Reason.INSUFFICIENT_FUNDS
    )
    assert chain.sign_and_submit(
        Keys.p4, "settle", {"trade": tid, "delivered": 6}
    ).ok  # 1500 = 1000 + 500 credit
    assert query.balance(chain.view, Keys.p4.public) == -500


def test_oversubscribed_seller_is_shared_pro_rata_and_raised_prices_drop_capped_buyers() -> None:
    chain = market_chain()
    assert chain.sign_and_submit(Keys.p1, "offer", offer(250, 1000)).ok
    assert chain.sign_and_submit(Keys.p3, "bid", bid(demand(Keys.p1.public, 900))).ok
    assert chain.sign_and_submit(Keys.p4, "bid", bid(demand(Keys.p1.public, 600))).ok
    # the seller cuts its quantity after the bids: 1,500 wanted of 500
    assert chain.sign_and_submit(
        Keys.p1, "move", {"interval": 1, "round": 1, "price": 250, "quantity": 500}
    ).ok
    assert chain.sign_and_submit(Keys.p1, "trade", {"interval": 1}).ok
    got = {t["buyer"]: t["quantity"] for _, t in query.trades(chain.view, 1)}
    assert got == {Keys.p3.public: 300, Keys.p4.public: 200}
    chain2 = market_chain()
    assert chain2.sign_and_submit(Keys.p1, "offer", offer(250, 1000, clean=False)).ok
    assert chain2.sign_and_submit(Keys.p3, "bid", bid(demand(Keys.p1.public, 100))).ok
    assert chain2.sign_and_submit(
        Keys.p1, "move", {"interval": 1, "round": 1, "price": 301, "quantity": 1000}
    ).ok
    assert chain2.sign_and_submit(Keys.p1, "trade", {"interval": 1}).ok
    assert query.trades(chain2.view, 1) == []  # above the buyer's cap: no trade


def test_auction_example_from_the_design() -> None:
    """Participant 1 sells; 2, 3, 4 bid 30, 20, 25 with their own keys; 2 wins; 30 units move from 2 to 1."""
    chain = LocalChain(make_genesis(), Keys.authority)  # every participant starts with 1,000
    assert chain.sign_and_submit(
        Keys.p1, "auction.open", {"auction": "lot-1", "quantity": 10, "reserve": 5, "close_height": 2}
    ).ok
    for bidder, amount in ((Keys.p2, 30), (Keys.p3, 20), (Keys.p4, 25)):
        assert chain.sign_and_submit(bidder, "auction.bid", {"auction": "lot-1", "amount": amount}).ok
    assert (
        reason(chain.sign_and_submit(Keys.p1, "auction.bid", {"auction": "lot-1", "amount": 50}))
        is Reason.FORBIDDEN
    )
    assert (
        reason(chain.sign_and_submit(Keys.p3, "auction.bid", {"auction": "lot-1", "amount": 4000}))
        is Reason.INSUFFICIENT_FUNDS
    )
    chain.seal()  # height 1: still open
    assert query.auction(chain.state, "lot-1")["result"] is None  # type: ignore[index]
    _, outcome = chain.seal()  # height 2: the contract closes itself at the end of the block
    assert ("auction-closed", {"auction": "lot-1", "amount": 30, "winner": Keys.p2.public}) in outcome.events
    balances = [query.balance(chain.state, k.public) for k in (Keys.p1, Keys.p2, Keys.p3, Keys.p4)]
    assert balances == [1030, 970, 1000, 1000]
    assert (
        reason(chain.sign_and_submit(Keys.p3, "auction.bid", {"auction": "lot-1", "amount": 40}))
        is Reason.CLOSED
    )


def test_auction_rebid_ties_and_no_bids() -> None:
    chain = LocalChain(make_genesis(), Keys.authority)
    assert chain.sign_and_submit(
        Keys.p1, "auction.open", {"auction": "a", "quantity": 1, "reserve": 10, "close_height": 2}
    ).ok
    assert chain.sign_and_submit(
        Keys.p1, "auction.open", {"auction": "b", "quantity": 1, "reserve": 10, "close_height": 2}
    ).ok
    past = {"auction": "c", "quantity": 1, "reserve": 10, "close_height": 1}
    assert reason(chain.sign_and_submit(Keys.p1, "auction.open", past)) is Reason.INVALID
    assert (
        reason(
            chain.sign_and_submit(
                Keys.p1, "auction.open", {"auction": "a", "quantity": 1, "reserve": 1, "close_height": 5}
            )
        )
        is Reason.DUPLICATE
    )
    assert (
        reason(chain.sign_and_submit(Keys.p2, "auction.bid", {"auction": "a", "amount": 9}))
        is Reason.RULE_VIOLATION
    )
    assert chain.sign_and_submit(Keys.p2, "auction.bid", {"auction": "a", "amount": 40}).ok
    assert chain.sign_and_submit(Keys.p3, "auction.bid", {"auction": "a", "amount": 40}).ok
    assert (
        reason(chain.sign_and_submit(Keys.p3, "auction.bid", {"auction": "a", "amount": 40}))
        is Reason.RULE_VIOLATION
    )
    assert query.balance(chain.view, Keys.p3.public) == 960
    chain.seal()
    _, outcome = chain.seal()
    results = {e[1]["auction"]: e[1] for e in outcome.events}
    assert results["a"]["winner"] == Keys.p2.public  # earliest of equal bids wins
    assert results["b"]["winner"] is None
    assert query.balance(chain.state, Keys.p3.public) == 1000  # escrow released


actions = st.lists(
    st.tuples(
        st.sampled_from(["offer", "bid", "move-offer", "withdraw-offer", "move-bid", "trade", "settle"]),
        st.integers(1, 4),  # who
        st.integers(0, 400),  # price
        st.integers(0, 3000),  # quantity
        st.integers(1, 2),  # interval
    ),
    max_size=25,
)


@given(actions)
@settings(max_examples=60, deadline=None)
def test_random_market_sequences_keep_invariants(steps: list[tuple[str, int, int, int, int]]) -> None:
    chain = market_chain(balance=10**7, credit=10**6)
    who = {1: Keys.p1, 2: Keys.p2, 3: Keys.p3, 4: Keys.p4}
    total = sum(query.balance(chain.view, k.public) for k in who.values())
    rounds: dict[tuple[int, int], int] = {}
    for kind, n, price, quantity, interval in steps:
        key = who[n]
        r = rounds.get((n, interval), 0) + 1
        if kind == "offer":
            body: dict[str, Any] = offer(price, quantity, clean=n % 2 == 1, interval=interval)
        elif kind == "bid":
            body = bid(demand(who[1 + n % 4].public, quantity), interval=interval)
        elif kind == "move-offer":
            body = {"interval": interval, "round": r, "price": price, "quantity": quantity}
        elif kind == "withdraw-offer":  # a seller's zero-quantity move, at any price
            kind, body = "move", {"interval": interval, "round": r, "price": price, "quantity": 0}
        elif kind == "move-bid":
            body = bid(demand(who[1 + n % 4].public, quantity), interval=interval, round_=r)
        elif kind == "trade":
            body = {"interval": interval}
        else:
            trades = query.trades(chain.view, interval)
            if not trades:
                continue
            tid, agreed = trades[quantity % len(trades)]
            body = {"trade": tid, "delivered": min(quantity, agreed["quantity"])}
        if submit_checked(chain, key, kind.split("-")[0], body):  # a rejection changes nothing
            rounds[(n, interval)] = r
    chain.seal()
    # invariants: money is conserved; no trade exceeds its seller's offer; settled at most the agreed quantity
    assert sum(query.balance(chain.state, k.public) for k in who.values()) == total
    for interval in (1, 2):
        for _, agreed in query.trades(chain.state, interval):
            standing = query.offer(chain.state, interval, agreed["seller"])
            assert standing is not None and agreed["quantity"] <= standing["quantity"]
            assert agreed["price"] >= query.rules(chain.state, agreed["seller"], interval)["floor_price"]
            if agreed["settlement"] is not None:
                assert agreed["settlement"]["delivered"] <= agreed["quantity"]
    # replaying the sealed block on a fresh replica gives the same state root
    replica = market_chain(balance=10**7, credit=10**6)
    for tx in chain.block(1).txs:
        assert replica.submit(tx).ok
    replica.seal(chain.block(1).header.time)
    assert replica.state.root == chain.state.root


def test_a_seller_withdraws_with_a_zero_quantity_move_and_may_return() -> None:
    chain = market_chain()
    assert chain.sign_and_submit(Keys.p1, "offer", offer(250)).ok
    assert chain.sign_and_submit(Keys.p3, "bid", bid(demand(Keys.p1.public, 500))).ok
    # withdrawing needs no valid price: a price below the floor is ignored and the standing one stays
    withdraw = {"interval": 1, "round": 1, "price": 10, "quantity": 0}
    assert chain.sign_and_submit(Keys.p1, "move", withdraw).ok
    assert query.offer(chain.view, 1, Keys.p1.public) == {
        "clean": True,
        "price": 250,
        "round": 1,
        "quantity": 0,
    }
    # nobody can ask a withdrawn seller for energy
    again = bid(demand(Keys.p1.public, 1), round_=1)
    assert reason(chain.sign_and_submit(Keys.p3, "move", again)) is Reason.RULE_VIOLATION
    # a withdrawal is still a move: it must be for a later round
    assert reason(chain.sign_and_submit(Keys.p1, "move", withdraw)) is Reason.RULE_VIOLATION
    # the buyer's standing demand (from before the withdrawal) is granted nothing
    assert chain.sign_and_submit(Keys.p1, "trade", {"interval": 1}).ok
    assert query.trades(chain.view, 1) == []


def test_a_withdrawn_seller_may_offer_again_within_its_rules() -> None:
    chain = market_chain()
    assert chain.sign_and_submit(Keys.p1, "offer", offer(250)).ok
    assert chain.sign_and_submit(Keys.p1, "move", {"interval": 1, "round": 1, "price": 0, "quantity": 0}).ok
    below = {"interval": 1, "round": 2, "price": 199, "quantity": 800}
    assert reason(chain.sign_and_submit(Keys.p1, "move", below)) is Reason.RULE_VIOLATION
    assert chain.sign_and_submit(Keys.p1, "move", {**below, "price": 210}).ok
    assert chain.sign_and_submit(Keys.p3, "bid", bid(demand(Keys.p1.public, 500), round_=2)).ok
    assert chain.sign_and_submit(Keys.p3, "trade", {"interval": 1}).ok
    [(_, agreed)] = query.trades(chain.view, 1)
    assert (agreed["price"], agreed["quantity"]) == (210, 500)
