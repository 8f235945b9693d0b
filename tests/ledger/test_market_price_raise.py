"""review13 F1: a demand counts only at a price its buyer saw - a seller that raises its price after the
buyer asked (up to the buyer's cap, or without limit for an uncapped buyer) and closes at once trades nothing
with that buyer until the buyer asks again at the new price (`market._stamp_demands`, `agree_trades`)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, make_genesis

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Account, Params

CAPPED = {"floor_price": 0, "cap_price": 300, "max_quantity": 2000, "clean_only": False, "clean_premium": 0}


def _chain(buyer_rules: dict[str, Any] | None = CAPPED) -> LocalChain:
    accounts = (
        Account(Keys.p1.public, ("anonym",), "seller"),
        Account(Keys.p2.public, ("anonym",), "seller2"),
        Account(Keys.p3.public, ("anonym",), "buyer", balance=10**9, rules=buyer_rules),
    )
    return LocalChain(make_genesis(accounts=accounts, params=Params()), Keys.authority)


def _ok(result: Any) -> None:
    assert result.ok, result


def _open(c: LocalChain, price: int = 200) -> None:
    _ok(c.sign_and_submit(Keys.p1, "offer", {"interval": 1, "round": 0, "price": price, "quantity": 1000, "clean": False}))  # fmt: skip
    _ok(c.sign_and_submit(Keys.p3, "bid", {"interval": 1, "round": 0, "demands": [{"seller": Keys.p1.public, "quantity": 1000}]}))  # fmt: skip
    c.seal()


def _raise(c: LocalChain, price: int, rnd: int = 1) -> None:
    _ok(c.sign_and_submit(Keys.p1, "move", {"interval": 1, "round": rnd, "price": price, "quantity": 1000}))


def test_raise_and_close_in_one_block_trades_nothing() -> None:
    c = _chain()
    _open(c)
    _raise(c, 300)  # the buyer's cap: before the fix the trade closed at 300
    _ok(c.sign_and_submit(Keys.p1, "trade", {"interval": 1}))
    c.seal()
    assert query.trades(c.view, 1) == []
    assert market.closed(c.view, 1)


def test_uncapped_buyer_is_not_taken_at_any_price() -> None:
    c = _chain(None)
    _open(c)
    _raise(c, 10**6)
    c.seal()
    _ok(c.sign_and_submit(Keys.p1, "trade", {"interval": 1}))
    c.seal()
    assert query.trades(c.view, 1) == []


def test_buyer_that_asks_again_trades_at_the_new_price() -> None:
    c = _chain()
    _open(c)
    _raise(c, 250)
    c.seal()
    stamped = market.bid(c.view, 1, Keys.p3.public)
    assert stamped is not None and stamped["stamps"] == [[Keys.p1.public, 200]]
    _ok(c.sign_and_submit(Keys.p3, "move", {"interval": 1, "round": 1, "demands": [{"seller": Keys.p1.public, "quantity": 1000}]}))  # fmt: skip
    c.seal()
    fresh = market.bid(c.view, 1, Keys.p3.public)
    assert fresh is not None and "stamps" not in fresh
    _ok(c.sign_and_submit(Keys.p1, "trade", {"interval": 1}))
    c.seal()
    ((_tid, t),) = query.trades(c.view, 1)
    assert (t["price"], t["quantity"]) == (250, 1000)


def test_cut_keeps_the_demand_and_back_down_counts_again() -> None:
    c = _chain()
    _open(c)
    _ok(c.sign_and_submit(Keys.p1, "move", {"interval": 1, "round": 1, "price": 180, "quantity": 1000}))
    c.seal()
    assert "stamps" not in (market.bid(c.view, 1, Keys.p3.public) or {})  # a cut moves no bid's bytes
    _raise(c, 260, rnd=2)  # stamped at 180, the price before the raise
    _raise(c, 290, rnd=3)  # a second raise keeps the first (lower) stamp
    _ok(c.sign_and_submit(Keys.p1, "move", {"interval": 1, "round": 4, "price": 170, "quantity": 1000}))
    _ok(c.sign_and_submit(Keys.p1, "trade", {"interval": 1}))
    c.seal()
    assert market.bid(c.view, 1, Keys.p3.public)["stamps"] == [[Keys.p1.public, 180]]  # type: ignore[index]
    ((_tid, t),) = query.trades(c.view, 1)
    assert (t["price"], t["quantity"]) == (170, 1000)


def test_only_the_raising_sellers_demands_are_dropped() -> None:
    c = _chain()
    _ok(c.sign_and_submit(Keys.p1, "offer", {"interval": 1, "round": 0, "price": 200, "quantity": 500, "clean": False}))  # fmt: skip
    _ok(c.sign_and_submit(Keys.p2, "offer", {"interval": 1, "round": 0, "price": 210, "quantity": 500, "clean": False}))  # fmt: skip
    demands = [{"seller": Keys.p1.public, "quantity": 500}, {"seller": Keys.p2.public, "quantity": 500}]
    _ok(c.sign_and_submit(Keys.p3, "bid", {"interval": 1, "round": 0, "demands": demands}))
    c.seal()
    _ok(c.sign_and_submit(Keys.p2, "move", {"interval": 1, "round": 1, "price": 300, "quantity": 500}))
    _ok(c.sign_and_submit(Keys.p2, "trade", {"interval": 1}))
    c.seal()
    ((_tid, t),) = query.trades(c.view, 1)
    assert (t["seller"], t["price"], t["quantity"]) == (Keys.p1.public, 200, 500)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(150, 300), min_size=1, max_size=6))
def test_a_closing_never_charges_more_than_the_buyer_asked_at(prices: list[int]) -> None:
    """Any run of seller moves after the buyer's last bid: a trade, if any, is at most the price standing
    when the buyer asked."""
    c = _chain()
    _open(c)
    for k, price in enumerate(prices, start=1):
        _raise(c, price, rnd=k)
        if k % 2:
            c.seal()
    _ok(c.sign_and_submit(Keys.p1, "trade", {"interval": 1}))
    c.seal()
    for _tid, t in query.trades(c.view, 1):
        assert t["price"] <= 200
    stamp = _first_raise_from(prices)
    assert bool(query.trades(c.view, 1)) == (stamp is None or prices[-1] <= stamp)


def _first_raise_from(prices: list[int]) -> int | None:
    """The model: the price standing before the seller's first raise after the bid (None: it only cut)."""
    before = 200
    for p in prices:
        if p > before:
            return before
        before = p
    return None
