"""Properties of random clean sessions on a real chain (exchange_clean.py): per book, energy and money are
conserved; every clean trade's seller declared itself a clean seller and its buyer is clean-only; no pair
trades twice in an interval; and a session opened without `clean_prices` writes nothing of a clean book
(its bytes are pinned in test_exchange_clean_compat.py).

A session: 3–4 members (a clean seller, a clean-only buyer and a grey member, then anyone) with random rules (clean-only or not, a quantity limit), each declaring itself a
clean seller or not; 1–3 intervals at random general and clean opening prices (some negative); 1–3
iterations of random posts within the clean book's rules, stepped; the close; accepts of random cuts of
each member's final stepped positions (a member whose cut the rules refuse at the closing prices declines);
the clear; then the DSO settles every trade as delivered in full.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, make_genesis

from peergrid_ledger import keyspace as ks
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.contracts.exchange import micro_per_wh, position, session, stepped
from peergrid_ledger.contracts.exchange_clearing import accepted
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.results import Accepted

MEMBERS = (Keys.p1, Keys.p2, Keys.p3, Keys.p4)
FIRST = 300
RHO = 5_000_000
BALANCE = 10**9


def _member(draw: st.DrawFn) -> dict[str, Any]:
    return {
        # a clean seller, a clean-only buyer, a grey member, or a clean-only member that sells clean too
        **draw(
            st.sampled_from(
                [
                    {"clean_only": False, "seller": True},
                    {"clean_only": True, "seller": False},
                    {"clean_only": False, "seller": False},
                    {"clean_only": True, "seller": True},
                ]
            )
        ),
        "max_quantity": draw(st.sampled_from([800, 3000, 10**12])),
    }


def _position(draw: st.DrawFn, who: dict[str, Any]) -> tuple[int, int]:
    """(g, c) of one interval within the clean book's rules for `who`."""
    # its clean side(s) three times as likely as none (hypothesis shrinks toward the first)
    side = 3 * ((["sell"] if who["seller"] else []) + (["buy"] if who["clean_only"] else [])) + ["none"]
    kind = who.get("always") or draw(st.sampled_from(side))
    g = draw(st.integers(0 if who["clean_only"] or kind == "sell" else -2000, 2000))
    c = {"none": 0, "sell": draw(st.integers(0, 2000)), "buy": -draw(st.integers(0, 2000))}[kind]
    if c < 0:  # a clean purchase is never resold as general in its interval: g = 0 there
        g = 0
    limit = who["max_quantity"]
    while abs(g + c) > limit:  # within |g + c| ≤ max_quantity, moving toward 0 keeps the sides' signs
        g, c = (g // 2 if g > 0 else -(-g // 2)), (c // 2 if c > 0 else -(-c // 2))
    return g, c


@st.composite
def sessions(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(3, 4))
    # a clean seller and a clean-only buyer in every session, so that the clean book trades
    members = [{**_member(draw), "seller": True, "always": "sell"}]
    members += [{**_member(draw), "clean_only": True, "always": "buy"}]
    members += [{**_member(draw), "clean_only": False, "seller": False}]  # grey: the general book trades
    members += [_member(draw) for _ in range(n - 3)]
    intervals = draw(st.integers(1, 3))
    price = st.integers(-20, 150).map(lambda p: p * 10**6)
    iterations = draw(st.integers(1, 3))
    posts = [[[_position(draw, who) for _ in range(intervals)] for who in members] for _ in range(iterations)]
    cuts = [[draw(st.sampled_from([0, 0, 1, 2])) for _ in range(2 * intervals)] for _ in members]
    return {
        "members": members,
        "prices": [draw(price) for _ in range(intervals)],
        "clean_prices": [draw(price) for _ in range(intervals)],
        "posts": posts,
        "cuts": cuts,
    }


def _rules(who: dict[str, Any]) -> dict[str, Any]:
    return {
        "floor_price": 0,
        "cap_price": 10**12,
        "max_quantity": who["max_quantity"],
        "clean_only": who["clean_only"],
        "clean_premium": 0,
    }


def run(day: dict[str, Any], clean: bool = True) -> tuple[LocalChain, list[tuple[str, dict[str, Any]]]]:
    """The day on a fresh chain, cleared and settled (the module docstring); its clear's events."""
    keys = MEMBERS[: len(day["members"])]
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(
            Account(k.public, ("anonym",), f"p{i}", rules=_rules(who), balance=BALANCE)
            for i, (k, who) in enumerate(zip(keys, day["members"], strict=True), 1)
        ),
    )
    genesis = make_genesis(
        contracts=("market", "exchange"), accounts=accounts, params=Params(credit_limit=10**12)
    )
    chain = LocalChain(genesis, Keys.authority)

    def ok(who: Any, kind: str, body: dict[str, Any]) -> Accepted:
        result = chain.sign_and_submit(who, kind, body)
        assert isinstance(result, Accepted), (kind, body, result)
        return result

    body: dict[str, Any] = {
        "session": "d",
        "first_interval": FIRST,
        "members": [k.public for k in keys],
        "prices": day["prices"],
        "rho": RHO,
    }
    if clean:
        body["clean_prices"] = day["clean_prices"]
    ok(Keys.dso, "exchange.open", body)
    for iteration, posts in enumerate(day["posts"]):
        for k, who, cells in zip(keys, day["members"], posts, strict=True):
            post: dict[str, Any] = {"session": "d", "iteration": iteration}
            if clean:
                post.update(positions=[g for g, _ in cells], clean_positions=[c for _, c in cells])
                post["clean"] = who["seller"]
            else:  # no clean book: each member's net position, within the general rules
                post["positions"] = [max(g + c, 0) if who["clean_only"] else g + c for g, c in cells]
            ok(k, "exchange.position", post)
        ok(Keys.dso, "exchange.step", {"session": "d", "iteration": iteration, "rho": RHO})
    ok(Keys.dso, "exchange.close", {"session": "d", "iteration": len(day["posts"])})
    for k, who, cuts in zip(keys, day["members"], day["cuts"], strict=True):
        final = stepped(chain.view, "d", k.public)
        assert final is not None
        n = len(final["positions"])
        # a cut per cell: 0 keeps it, 1 halves it, 2 declines it
        cut = [
            [q, q // 2 if q > 0 else -(-q // 2), 0][how]
            for q, how in zip(final["positions"], cuts, strict=False)
        ]
        accept: dict[str, Any] = {"session": "d", "positions": cut, "clean": who["seller"]}
        if clean:
            cleans = final["clean_positions"]
            accept["clean_positions"] = [
                [q, q // 2 if q > 0 else -(-q // 2), 0][how] for q, how in zip(cleans, cuts[n:], strict=True)
            ]
        # refused (a purchase at a negative price): it declines the general book, else the clean one, else all
        zeros = [0] * n
        tries = [
            {},
            {"positions": zeros},
            {"clean_positions": zeros},
            {"positions": zeros, "clean_positions": zeros},
        ]
        for change in tries if clean else tries[:2]:
            if chain.sign_and_submit(k, "exchange.accept", {**accept, **change}).ok:
                break
        else:
            raise AssertionError(f"no accept of {accept} passed")
    cleared = ok(Keys.dso, "exchange.clear", {"session": "d"})
    for name, event in cleared.events:
        if name == "trade":
            ok(Keys.dso, "settle", {"trade": event["id"], "delivered": event["quantity"]})
    chain.seal()
    return chain, [e for e in cleared.events if e[0] == "trade"]


@settings(max_examples=60, deadline=None)
@given(sessions())
def test_random_clean_sessions_conserve_and_keep_the_books_apart(day: dict[str, Any]) -> None:
    chain, trades = run(day)
    state = chain.state
    keys = [k.public for k in MEMBERS[: len(day["members"])]]
    rules = dict(zip(keys, day["members"], strict=True))
    record = session(state, "d")
    assert record is not None and record["clean"] is True
    accepts = {k: accepted(state, "d", k) for k in keys}
    # no trade twice: ids, and (interval, seller, buyer), unique across both books
    assert len({e["id"] for _, e in trades}) == len(trades)
    assert len({(e["interval"], e["seller"], e["buyer"]) for _, e in trades}) == len(trades)
    for t in range(len(day["prices"])):
        interval = FIRST + t
        for book, field, prices in (
            (True, "clean_positions", record["clean_prices"]),
            (False, "positions", record["prices"]),
        ):
            mine = [e for _, e in trades if e["interval"] == interval and e.get("clean", False) is book]
            sold: dict[bytes, int] = {}
            bought: dict[bytes, int] = {}
            for e in mine:
                assert e["price"] == micro_per_wh(prices[t])  # the book's closing price on the tick
                sold[e["seller"]] = sold.get(e["seller"], 0) + e["quantity"]
                bought[e["buyer"]] = bought.get(e["buyer"], 0) + e["quantity"]
                if book:  # a clean trade: a declared clean seller to a clean-only buyer
                    post = position(state, "d", e["seller"])
                    assert post is not None and post["clean"] is True and rules[e["seller"]]["seller"]
                    assert rules[e["buyer"]]["clean_only"]
                    assert market.trade(state, e["id"])["clean"] is True  # type: ignore[index]
                else:  # a general buyer is never clean-only
                    assert not rules[e["buyer"]]["clean_only"]
            sells = {k: a[field][t] for k, a in accepts.items() if a and a[field][t] > 0}
            buys = {k: -a[field][t] for k, a in accepts.items() if a and a[field][t] < 0}
            # energy per book: both sides move the short side's volume, nobody beyond its accept
            volume = min(sum(sells.values()), sum(buys.values()))
            assert sum(sold.values()) == sum(bought.values()) == volume
            assert all(q <= sells[k] for k, q in sold.items()) and all(
                q <= buys[k] for k, q in bought.items()
            )
    # money: every trade paid price × quantity from its buyer to its seller, nothing created or lost
    balances = {k: ks.decode_int(state.get(ks.balance(k))) for k in keys}
    assert sum(balances.values()) == BALANCE * len(keys)
    for k in keys:
        paid = sum(e["price"] * e["quantity"] for _, e in trades if e["buyer"] == k)
        got = sum(e["price"] * e["quantity"] for _, e in trades if e["seller"] == k)
        assert balances[k] == BALANCE - paid + got


@settings(max_examples=25, deadline=None)
@given(sessions())
def test_a_random_session_without_clean_prices_writes_no_clean_book(day: dict[str, Any]) -> None:
    chain, trades = run(day, clean=False)
    prefixes = (b"xch/cprices/", b"xch/csums/")
    assert not any(key.startswith(prefixes) for key, _ in chain.state.items())
    keys = [k.public for k in MEMBERS[: len(day["members"])]]
    for k in keys:
        post, mine = position(chain.state, "d", k), accepted(chain.state, "d", k)
        assert post is not None and "clean_positions" not in post and "clean" not in post
        assert mine is not None and "clean_positions" not in mine
    assert all("clean" not in e for _, e in trades)
