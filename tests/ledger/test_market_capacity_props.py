"""Hypothesis: over random sequences of `market.rules`, `market.capacity` and positions (intraday offers, bids
and their moves and closings; a day-ahead session's posts, accepts and clear), no position the chain takes,
and no trade it agrees, exceeds min(max_quantity, capacity) standing in its interval for its account - when it
is taken, and still at the end (neither figure can change under a position the chain took). Rules and
capacities land or not as their own rules say (both only after the account's last traded interval)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, make_genesis

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import exchange_clearing, market
from peergrid_ledger.contracts import exchange_state as xch
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.state import StateReader

MEMBERS = (Keys.p1, Keys.p2, Keys.p3, Keys.p4)
INTERVALS = (10, 11, 12)
FIRST, NAME = 100, "day-1"  # the day-ahead session: chain intervals 100 and 101
LIMIT = st.integers(1, 2000)


def chain_of(cap_on_fills: int) -> LocalChain:
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(Account(k.public, ("anonym",), f"p{i}") for i, k in enumerate(MEMBERS, 1)),
    )
    params = Params(credit_limit=10**12, cap_on_fills=cap_on_fills)
    return LocalChain(
        make_genesis(contracts=("market", "exchange"), accounts=accounts, params=params), Keys.authority
    )


def bound(state: StateReader, who: bytes, interval: int) -> int:
    """min(max_quantity, capacity) standing for `who` in `interval`."""
    rule = int(market.rules_for(state, who, interval)["max_quantity"])
    cap = market.capacity(state, who, interval)
    return rule if cap is None else min(rule, cap)


def limits(data: st.DataObject, chain: LocalChain, intervals: tuple[int, ...]) -> None:
    """A `market.rules` by a member or a `market.capacity` by the DSO from one of `intervals` (or refused)."""
    who = data.draw(st.sampled_from(MEMBERS))
    start = data.draw(st.sampled_from(intervals))
    if data.draw(st.booleans()):
        rules = {**market.NO_RULES, "max_quantity": data.draw(LIMIT)}
        chain.sign_and_submit(who, "market.rules", {"rules": rules, "from_interval": start})
    else:
        body = {"account": who.public, "from_interval": start, "wh": data.draw(LIMIT)}
        chain.sign_and_submit(Keys.dso, "market.capacity", body)


def total(position: dict[str, Any]) -> int:
    return sum(d["quantity"] for d in position["demands"])


def intraday_move(data: st.DataObject, chain: LocalChain, cap_on_fills: int) -> None:
    """One offer, bid, move or closing; every position taken is checked at once against the standing bound."""
    who = data.draw(st.sampled_from(MEMBERS))
    interval = data.draw(st.sampled_from(INTERVALS))
    view = chain.view
    kind = data.draw(st.sampled_from(("offer", "offer", "bid", "bid", "move", "trade")))
    if kind == "trade":  # only once someone bid: an interval closed before any bid trades nothing
        if market.members(view, interval, "buyers"):
            chain.sign_and_submit(Keys.authority, "trade", {"interval": interval})
        return
    round_ = 1 + max(
        [0]
        + [int(p["round"]) for m in MEMBERS for p in (market.offer(view, interval, m.public),) if p]
        + [int(p["round"]) for m in MEMBERS for p in (market.bid(view, interval, m.public),) if p]
    )
    if kind == "offer" or (kind == "move" and market.offer(view, interval, who.public) is not None):
        quantity = data.draw(st.integers(0 if kind == "move" else 1, 2500))
        body = {"interval": interval, "round": round_, "price": 100, "quantity": quantity}
        result = chain.sign_and_submit(who, kind, {**body, "clean": False} if kind == "offer" else body)
        if result.ok:
            assert quantity <= bound(chain.view, who.public, interval)
        return
    sellers = [m for m in market.members(view, interval, "sellers") if m != who.public]
    if not sellers:
        return  # nothing to ask for (an empty bid takes no position)
    chosen = data.draw(st.lists(st.sampled_from(sellers), unique=True, min_size=1, max_size=3))
    offered = {s: int((market.offer(view, interval, s) or {"quantity": 0})["quantity"]) for s in chosen}
    # at most what each offers (more is refused on its own): many bids land, some above the buyer's bound
    asks = {s: st.one_of(st.just(max(1, q)), st.integers(1, max(1, q))) for s, q in offered.items()}
    demands = [{"seller": s, "quantity": data.draw(asks[s])} for s in chosen]
    body = {"interval": interval, "round": round_, "demands": demands}
    result = chain.sign_and_submit(who, kind, body)
    if result.ok and not cap_on_fills:
        assert sum(d["quantity"] for d in demands) <= bound(chain.view, who.public, interval)


def traded(state: StateReader, interval: int) -> dict[bytes, int]:
    """Each account's Wh sold and bought in a closed interval (its trades' sum: it is on one side only)."""
    out: dict[bytes, int] = {}
    for _, trade in query.trades(state, interval):
        for side in ("seller", "buyer"):
            out[trade[side]] = out.get(trade[side], 0) + int(trade["quantity"])
    return out


@pytest.mark.parametrize("cap_on_fills", [0, 1])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_no_intraday_position_nor_trade_exceeds_the_rule_or_the_capacity(
    cap_on_fills: int, data: st.DataObject
) -> None:
    chain = chain_of(cap_on_fills)
    for _ in range(data.draw(st.integers(0, 6))):  # limits first, so that positions meet them
        limits(data, chain, INTERVALS)
    for _ in range(data.draw(st.integers(5, 40))):
        if data.draw(st.integers(0, 2)) == 0:
            limits(data, chain, INTERVALS)
        else:
            intraday_move(data, chain, cap_on_fills)
    state = chain.view
    for interval in INTERVALS:
        for m in MEMBERS:  # still within: neither figure moved under a standing position
            standing = market.offer(state, interval, m.public)
            if standing is not None:
                assert standing["quantity"] <= bound(state, m.public, interval)
            asked = market.bid(state, interval, m.public)
            if asked is not None and not cap_on_fills:
                assert total(asked) <= bound(state, m.public, interval)
        for who, wh in traded(state, interval).items():
            assert wh <= bound(state, who, interval)


def day_ahead(data: st.DataObject, chain: LocalChain) -> None:
    """Open the session; posts, steps and limits at random; close; then accepts and limits at random."""
    opening = {
        "session": NAME,
        "first_interval": FIRST,
        "members": [m.public for m in MEMBERS],
        "prices": [50_000_000, 80_000_000],
        "rho": 5_000_000,
    }
    assert chain.sign_and_submit(Keys.dso, "exchange.open", opening).ok
    position = st.lists(st.integers(-2500, 2500), min_size=2, max_size=2)
    for _ in range(data.draw(st.integers(4, 24))):
        if data.draw(st.integers(0, 3)) == 0:
            limits(data, chain, (FIRST, FIRST + 1))
            continue
        record = xch.session(chain.view, NAME)
        assert record is not None
        if record["posted"] == len(MEMBERS):
            body = {"session": NAME, "iteration": record["iteration"], "rho": 5_000_000}
            assert chain.sign_and_submit(Keys.dso, "exchange.step", body).ok
            continue
        who = data.draw(st.sampled_from(MEMBERS))
        positions = data.draw(position)
        body = {"session": NAME, "iteration": record["iteration"], "positions": positions}
        if chain.sign_and_submit(who, "exchange.position", body).ok:
            assert all(abs(q) <= bound(chain.view, who.public, FIRST + t) for t, q in enumerate(positions))
    record = xch.session(chain.view, NAME)
    assert record is not None
    close = {"session": NAME, "iteration": record["iteration"]}
    assert chain.sign_and_submit(Keys.dso, "exchange.close", close).ok
    for _ in range(data.draw(st.integers(2, 16))):
        if data.draw(st.integers(0, 2)) == 0:
            limits(data, chain, (FIRST, FIRST + 1))
            continue
        who = data.draw(st.sampled_from(MEMBERS))
        final = (xch.stepped(chain.view, NAME, who.public) or {}).get("positions") or [0, 0]
        # a share of its final stepped position (the reduce-only rule), so that many accepts are well formed
        share = [q * data.draw(st.integers(0, 4)) // 4 for q in final]
        body = {"session": NAME, "positions": share, "clean": False}
        if chain.sign_and_submit(who, "exchange.accept", body).ok:
            assert all(abs(q) <= bound(chain.view, who.public, FIRST + t) for t, q in enumerate(share))
    chain.sign_and_submit(Keys.dso, "exchange.clear", {"session": NAME})


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_no_day_ahead_post_accept_nor_forward_trade_exceeds_the_rule_or_the_capacity(
    data: st.DataObject,
) -> None:
    chain = chain_of(0)
    day_ahead(data, chain)
    state = chain.view
    for m in MEMBERS:  # an accept fixes both figures through its last traded interval
        accept = exchange_clearing.accepted(state, NAME, m.public)
        if accept is not None:
            assert all(abs(q) <= bound(state, m.public, FIRST + t) for t, q in enumerate(accept["positions"]))
    for interval in (FIRST, FIRST + 1):
        for who, wh in traded(state, interval).items():
            assert wh <= bound(state, who, interval)


def test_the_properties_take_positions_at_all() -> None:
    """Guard against a vacuous property: a capacity below the rule leaves a position at it and refuses one
    above it, in the way the properties' moves are built."""
    chain = chain_of(0)
    assert chain.sign_and_submit(
        Keys.dso, "market.capacity", {"account": Keys.p1.public, "from_interval": 10, "wh": 300}
    ).ok
    body = {"interval": 10, "round": 1, "price": 100, "quantity": 300, "clean": False}
    assert chain.sign_and_submit(Keys.p1, "offer", body).ok
    assert not chain.sign_and_submit(Keys.p1, "offer", {**body, "interval": 11, "quantity": 301}).ok
    assert bound(chain.view, Keys.p1.public, 10) == 300
