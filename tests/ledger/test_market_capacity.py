"""A position above the connection capacity the DSO posted for its account (`market.capacity`) is refused
wherever `max_quantity` bounds one: an offer and a seller's move, a bid's and a buyer's move's total, an
exchange post and an exchange accept (per interval, net of both books), and with genesis `cap_on_fills` the
closing fills a buyer up to min(max_quantity, capacity). Each refusal is `rule-violation` naming the capacity
and the interval, and changes nothing (`submit_checked`); a quantity above the member's own rule is refused
naming the rule, as before (checked first). A capacity changes only from an interval after the account's last
position, so it never makes a standing position too big; an exchange post is no position until accepted."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_fixtures import Keys, make_genesis, reason, submit_checked

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Reason

P1, P2, P3, P4 = Keys.p1, Keys.p2, Keys.p3, Keys.p4
ALL = (P1, P2, P3, P4)
T = 10  # the intraday tests' interval
FIRST = 100  # the exchange session's first chain interval (two intervals)


def rules(max_quantity: int = 10**12, clean_only: bool = False) -> dict[str, Any]:
    return {**market.NO_RULES, "max_quantity": max_quantity, "clean_only": clean_only}


def chain_with(
    member_rules: dict[bytes, dict[str, Any]] | None = None, params: Params | None = None
) -> LocalChain:
    member_rules = member_rules or {}
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(
            Account(k.public, ("anonym",), f"p{i}", rules=member_rules.get(k.public))
            for i, k in enumerate(ALL, 1)
        ),
    )
    genesis = make_genesis(
        contracts=("market", "exchange"), accounts=accounts, params=params or Params(credit_limit=10**12)
    )
    return LocalChain(genesis, Keys.authority)


def post_capacity(chain: LocalChain, who: Keypair, wh: int, start: int = T) -> None:
    assert submit_checked(
        chain, Keys.dso, "market.capacity", {"account": who.public, "from_interval": start, "wh": wh}
    )


def refused(chain: LocalChain, who: Keypair, kind: str, body: dict[str, Any]) -> str:
    """The refusal's words; it must be `rule-violation` and change nothing (`submit_checked`)."""
    assert not submit_checked(chain, who, kind, body)
    result = chain.sign_and_submit(who, kind, body)
    assert reason(result) is Reason.RULE_VIOLATION, result
    return str(result)


def offer(quantity: int, interval: int = T, round_: int = 0) -> dict[str, Any]:
    return {"interval": interval, "round": round_, "price": 100, "quantity": quantity, "clean": False}


def bid(*demands: tuple[Keypair, int], interval: int = T, round_: int = 0) -> dict[str, Any]:
    return {
        "interval": interval,
        "round": round_,
        "demands": [{"seller": s.public, "quantity": q} for s, q in demands],
    }


# ---------------------------------------------------------------------------------------------- intraday


def test_an_offer_above_the_capacity_is_refused_naming_it_and_the_interval_and_one_at_it_stands() -> None:
    chain = chain_with({P1.public: rules(2000)})
    post_capacity(chain, P1, 500)
    text = refused(chain, P1, "offer", offer(501))
    assert "501 Wh in interval 10 above the connection capacity 500 Wh" in text, text
    assert market.offer(chain.view, T, P1.public) is None
    assert submit_checked(chain, P1, "offer", offer(500))
    # a move above it is refused too; the offer stands as it was; a withdrawal (0) is always fine
    text = refused(chain, P1, "move", {"interval": T, "round": 1, "price": 90, "quantity": 600})
    assert "capacity 500" in text and "interval 10" in text, text
    assert market.offer(chain.view, T, P1.public)["quantity"] == 500  # type: ignore[index]
    assert submit_checked(chain, P1, "move", {"interval": T, "round": 1, "price": 90, "quantity": 0})


def test_where_the_members_own_rule_is_the_tighter_its_refusal_is_the_rules_as_before() -> None:
    chain = chain_with({P1.public: rules(400)})
    post_capacity(chain, P1, 500)
    text = refused(chain, P1, "offer", offer(450))
    assert "above the seller's maximum 400" in text and "capacity" not in text, text
    # above both: the rule, checked first, is named with its words as before (the capacity next, when the
    # quantity is within the rule)
    chain = chain_with({P1.public: rules(2000)})
    post_capacity(chain, P1, 500)
    assert "above the seller's maximum 2000" in refused(chain, P1, "offer", offer(3000))
    assert "capacity 500" in refused(chain, P1, "offer", offer(2000))


def test_a_bid_whose_total_is_above_the_capacity_is_refused_and_so_is_a_move_raising_it() -> None:
    chain = chain_with()
    for seller in (P1, P2):
        assert submit_checked(chain, seller, "offer", offer(1000))
    post_capacity(chain, P3, 700)
    text = refused(chain, P3, "bid", bid((P1, 400), (P2, 301)))
    assert "total demand 701 Wh in interval 10 above the connection capacity 700 Wh" in text, text
    assert submit_checked(chain, P3, "bid", bid((P1, 400), (P2, 300)))
    assert "capacity 700" in refused(chain, P3, "move", bid((P1, 500), (P2, 300), round_=1))
    assert submit_checked(chain, P3, "move", bid((P1, 700), round_=1))


def test_with_cap_on_fills_a_bid_may_ask_more_and_the_closing_fills_at_most_the_capacity() -> None:
    """cap_on_fills: max_quantity caps the fills, not the asks; so does the capacity, the tighter here."""
    chain = chain_with({P3.public: rules(900)}, Params(credit_limit=10**12, cap_on_fills=1))
    for seller in (P1, P2):
        assert submit_checked(chain, seller, "offer", offer(1000))
    post_capacity(chain, P3, 700)
    assert submit_checked(chain, P3, "bid", bid((P1, 600), (P2, 600)))
    assert submit_checked(chain, P3, "trade", {"interval": T})
    filled = sum(t["quantity"] for _, t in query.trades(chain.view, T) if t["buyer"] == P3.public)
    assert filled == 700  # 350 + 350: each price level pro rata (both at 100), not 900 (its rule)


def test_cap_on_fills_without_a_capacity_fills_up_to_the_rule_as_before() -> None:
    chain = chain_with({P3.public: rules(900)}, Params(credit_limit=10**12, cap_on_fills=1))
    for seller in (P1, P2):
        assert submit_checked(chain, seller, "offer", offer(1000))
    assert submit_checked(chain, P3, "bid", bid((P1, 600), (P2, 600)))
    assert submit_checked(chain, P3, "trade", {"interval": T})
    assert sum(t["quantity"] for _, t in query.trades(chain.view, T)) == 900


def test_a_capacity_posted_after_a_position_stands_only_from_a_later_interval() -> None:
    """set_capacity's last-interval rule: the DSO cannot cut a standing offer (nor a bid) after the fact, so
    a position the chain took never exceeds the capacity standing in its interval."""
    chain = chain_with()
    assert submit_checked(chain, P1, "offer", offer(1000))
    assert submit_checked(chain, P3, "bid", bid((P1, 800)))
    for who in (P1, P3):
        body = {"account": who.public, "from_interval": T, "wh": 300}
        assert not submit_checked(chain, Keys.dso, "market.capacity", body)
        assert market.capacity(chain.view, who.public, T) is None
        post_capacity(chain, who, 300, T + 1)
    # the standing positions in T stay as they are and may still move within their own rules
    assert submit_checked(chain, P1, "move", {"interval": T, "round": 1, "price": 100, "quantity": 900})
    assert submit_checked(chain, P3, "move", bid((P1, 900), round_=1))
    # from T + 1 on the capacity binds
    assert "interval 11 above the connection capacity 300" in refused(chain, P1, "offer", offer(301, T + 1))
    assert submit_checked(chain, P1, "offer", offer(300, T + 1))
    assert submit_checked(chain, P2, "offer", offer(1000, T + 1))
    assert "capacity 300" in refused(chain, P3, "bid", bid((P1, 200), (P2, 101), interval=T + 1))
    assert submit_checked(chain, P3, "bid", bid((P1, 200), (P2, 100), interval=T + 1))


# ---------------------------------------------------------------------------------------------- day-ahead


def session(clean: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session": "day-1",
        "first_interval": FIRST,
        "members": [k.public for k in ALL],
        "prices": [50_000_000, 80_000_000],
        "rho": 5_000_000,
    }
    return {**body, "clean_prices": [60_000_000, 90_000_000]} if clean else body


def post(positions: list[int], iteration: int = 0, **extra: Any) -> dict[str, Any]:
    return {"session": "day-1", "iteration": iteration, "positions": positions, **extra}


def test_an_exchange_post_above_the_capacity_is_refused_in_its_interval() -> None:
    chain = chain_with({P1.public: rules(5000)})
    post_capacity(chain, P1, 1200, FIRST + 1)  # interval 100 unbounded but by the rule, 101 by the capacity
    assert submit_checked(chain, Keys.dso, "exchange.open", session())
    text = refused(chain, P1, "exchange.position", post([3000, -1201]))
    assert "net position -1201 Wh in interval 101 above the connection capacity 1200 Wh" in text, text
    assert submit_checked(chain, P1, "exchange.position", post([3000, -1200]))


def test_a_clean_sessions_post_is_bounded_on_its_net_general_plus_clean() -> None:
    chain = chain_with()
    post_capacity(chain, P1, 1000, FIRST)
    assert submit_checked(chain, Keys.dso, "exchange.open", session(clean=True))
    body = post([600, 0], clean_positions=[500, 0], clean=True)
    text = refused(chain, P1, "exchange.position", body)
    assert "net position 1100 Wh in interval 100" in text and "capacity 1000" in text, text
    assert submit_checked(
        chain, P1, "exchange.position", post([500, 0], clean_positions=[500, 0], clean=True)
    )


def closed_session(chain: LocalChain, positions: dict[Keypair, list[int]]) -> None:
    assert submit_checked(chain, Keys.dso, "exchange.open", session())
    for k in ALL:
        assert submit_checked(chain, k, "exchange.position", post(positions.get(k, [0, 0])))
    assert submit_checked(
        chain, Keys.dso, "exchange.step", {"session": "day-1", "iteration": 0, "rho": 5_000_000}
    )
    assert submit_checked(chain, Keys.dso, "exchange.close", {"session": "day-1", "iteration": 1})


def test_an_accept_above_a_capacity_posted_after_the_posts_is_refused_and_one_cut_to_it_clears() -> None:
    """The posts are no position: the DSO may post a capacity up to the member's accept, which then meets it;
    the accept may always cut its position to it (reduce-only), and the clear trades what was accepted."""
    chain = chain_with()
    closed_session(chain, {P1: [1000, 800], P3: [-1000, -800]})
    post_capacity(chain, P1, 600, FIRST)
    accept = {"session": "day-1", "positions": [1000, 800], "clean": False}
    text = refused(chain, P1, "exchange.accept", accept)
    assert "accepted net position 1000 Wh in interval 100 above the connection capacity 600 Wh" in text, text
    assert submit_checked(chain, P1, "exchange.accept", {**accept, "positions": [600, 600]})
    assert submit_checked(chain, P3, "exchange.accept", {**accept, "positions": [-1000, -800]})
    # once accepted the capacity is fixed through the session's last interval it trades in
    body = {"account": P1.public, "from_interval": FIRST + 1, "wh": 1}
    assert not submit_checked(chain, Keys.dso, "market.capacity", body)
    for who in (P2, P4):
        assert submit_checked(chain, who, "exchange.accept", {**accept, "positions": [0, 0]})
    assert submit_checked(chain, Keys.dso, "exchange.clear", {"session": "day-1"})
    sold = {t: sum(tr["quantity"] for _, tr in query.trades(chain.view, t)) for t in (FIRST, FIRST + 1)}
    assert sold == {FIRST: 600, FIRST + 1: 600}


def test_without_a_capacity_an_accept_is_bounded_by_the_rule_alone_as_before() -> None:
    chain = chain_with({P1.public: rules(900)})
    closed_session(chain, {P1: [900, 800], P3: [-900, -800]})
    accept = {"session": "day-1", "positions": [900, 800], "clean": False}
    assert submit_checked(chain, P1, "exchange.accept", accept)


@pytest.mark.parametrize("wh", [1, 10**12])
def test_a_capacity_at_either_end_of_its_range_bounds_as_posted(wh: int) -> None:
    chain = chain_with()
    post_capacity(chain, P1, wh)
    assert submit_checked(chain, P1, "offer", offer(wh))
    if wh == 1:
        assert "capacity 1 Wh" in refused(chain, P1, "offer", offer(2, T + 1))
