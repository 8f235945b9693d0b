"""The exchange contract's clearing: members accept their final stepped positions, the chain computes the
forward trades and records them as the market contract's trades (exchange_clearing.py, pairing.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis, reason, submit_checked

from peergrid_ledger import keyspace as ks
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.contracts.exchange import micro_per_wh, stepped
from peergrid_ledger.contracts.exchange_clearing import _held, accepted, cleared
from peergrid_ledger.contracts.pairing import forward_trades, largest_remainder
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason

P1, P2, P3, P4 = Keys.p1, Keys.p2, Keys.p3, Keys.p4
ALL = (P1, P2, P3, P4)
RHO = 5_000_000
FIRST = 100
PRICES = [50_000_000, 80_000_000, -10_000_000]  # nano per kWh: 50, 80 and −10 micro-units per Wh


def chain_with(rules: dict[bytes, dict[str, Any]] | None = None) -> LocalChain:
    rules = rules or {}
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(Account(k.public, ("anonym",), f"p{i}", rules=rules.get(k.public)) for i, k in enumerate(ALL, 1)),
    )
    genesis = make_genesis(
        contracts=("market", "exchange"), accounts=accounts, params=Params(credit_limit=10**12)
    )
    return LocalChain(genesis, Keys.authority)


def submit(chain: LocalChain, who: Keypair, kind: str, body: dict[str, Any]) -> None:
    assert submit_checked(chain, who, kind, body), chain.sign_and_submit(who, kind, body)


def refused(chain: LocalChain, who: Keypair, kind: str, body: dict[str, Any]) -> tuple[Reason, str]:
    """Why `kind` is refused; a refusal must change nothing (`submit_checked`)."""
    assert not submit_checked(chain, who, kind, body)
    result = chain.sign_and_submit(who, kind, body)
    return reason(result), str(result)


def closed_session(
    finals: dict[Keypair, list[int]],
    prices: list[int] | None = None,
    rules: dict[bytes, dict[str, Any]] | None = None,
    name: str = "day-1",
    deadline: int | None = None,
) -> LocalChain:
    """A session whose iteration 0 posts `finals` (the final stepped positions), stepped, then closed at
    iteration 1 with a half-posted iteration 1 abandoned (each member posts its negation first); opened
    with `deadline` (block time) when given."""
    chain = chain_with(rules)
    members = list(finals)
    body: dict[str, Any] = {
        "session": name,
        "first_interval": FIRST,
        "members": [m.public for m in members],
        "prices": PRICES if prices is None else prices,
        "rho": RHO,
    }
    if deadline is not None:
        body["deadline"] = deadline
    submit(chain, Keys.dso, "exchange.open", body)
    for m, positions in finals.items():
        submit(chain, m, "exchange.position", {"session": name, "iteration": 0, "positions": positions})
    submit(chain, Keys.dso, "exchange.step", {"session": name, "iteration": 0, "rho": RHO})
    abandoned = [-q for q in finals[members[0]]]
    submit(chain, members[0], "exchange.position", {"session": name, "iteration": 1, "positions": abandoned})
    submit(chain, Keys.dso, "exchange.close", {"session": name, "iteration": 1})
    return chain


def accept_body(positions: list[int], clean: bool = False, name: str = "day-1") -> dict[str, Any]:
    return {"session": name, "positions": positions, "clean": clean}


HAND = {P1: [3000, 1001, 400], P2: [1000, 1001, 600], P3: [-2000, -1001, -700], P4: [-1000, 0, -300]}


def test_a_hand_computed_clear() -> None:
    """Closing prices 50, 80, −10 micro-units per Wh (nano 50_000_000 … on the tick: ÷ 10**6).
    Interval 100: sellers 3000 + 1000 = 4000 Wh, buyers 2000 + 1000 = 3000: the sellers are cut to 3000,
        P1 3000·3000/4000 = 2250, P2 750 (exact). Largest to largest: P1→P3 2000, P1→P4 250, P2→P4 750
        (three trades = |S| + |B| − 1).
    Interval 101: P1 and P2 sell 1001 each, P3 buys 1001: 2002·½ = 500.5 each, floors 500 + 500, the Wh
        left goes to the smaller key (equal remainders); it is then the larger seller and pairs first.
    Interval 102: the price is negative, every member declines it (accepts 0): no trade, left open."""
    chain = closed_session(HAND)
    for m in ALL:
        # the abandoned iteration-1 post of P1 is not its stepped position
        final = stepped(chain.view, "day-1", m.public)
        assert final is not None and final["iteration"] == 0 and final["positions"] == HAND[m]
        submit(chain, m, "exchange.accept", accept_body([*HAND[m][:2], 0], clean=m is P2))
    result = chain.sign_and_submit(Keys.dso, "exchange.clear", {"session": "day-1"})
    assert isinstance(result, Accepted)
    chain.seal()
    lo, hi = sorted([P1.public, P2.public])
    want = {
        (100, P1.public, P3.public, 2000, 50),
        (100, P1.public, P4.public, 250, 50),
        (100, P2.public, P4.public, 750, 50),
        (101, lo, P3.public, 501, 80),
        (101, hi, P3.public, 500, 80),
    }
    trades = [e for kind, e in result.events if kind == "trade"]
    assert {(e["interval"], e["seller"], e["buyer"], e["quantity"], e["price"]) for e in trades} == want
    assert result.events[0] == ("exchange_cleared", {"session": "day-1", "accepted": 4, "trades": 5})
    for e in trades:  # recorded as the market contract's trades, under its trade ids
        assert e["id"] == market.trade_id(e["interval"], e["seller"], e["buyer"])
        record = market.trade(chain.state, e["id"])
        assert record is not None and record["settlement"] is None and record["price"] == e["price"]
        assert record["clean"] == (e["seller"] == P2.public)
    for interval, count in ((100, 3), (101, 2)):
        record = market.interval_record(chain.state, interval)
        assert record["closed"] and record["session"] == "day-1" and len(record["trades"]) == count
    assert not market.closed(chain.state, 102)
    summary = cleared(chain.state, "day-1")
    assert summary is not None and (summary["accepted"], summary["trades"]) == (4, 5)
    # a cleared interval is closed for the market's positions too
    reason_, _ = refused(
        chain, P1, "offer", {"interval": 100, "round": 1, "price": 1, "quantity": 1, "clean": False}
    )
    assert reason_ is Reason.CLOSED


def test_micro_per_wh_rounds_to_the_nearest_tie_to_even() -> None:
    assert [micro_per_wh(n) for n in (0, 499_999, 500_000, 500_001, 1_500_000, -500_000, -1_500_000)] == [
        0,
        0,
        0,
        1,
        2,
        0,
        -2,
    ]
    assert micro_per_wh(123_456_789) == 123


def test_settle_pays_each_cleared_trade_once() -> None:
    chain = closed_session(HAND)
    for m in ALL:
        submit(chain, m, "exchange.accept", accept_body([*HAND[m][:2], 0]))
    result = chain.sign_and_submit(Keys.dso, "exchange.clear", {"session": "day-1"})
    assert isinstance(result, Accepted)
    chain.seal()
    balances = {m: ks.decode_int(chain.state.get(ks.balance(m.public))) for m in ALL}
    paid = dict.fromkeys(ALL, 0)
    for kind, e in result.events:
        if kind != "trade":
            continue
        seller = next(m for m in ALL if m.public == e["seller"])
        buyer = next(m for m in ALL if m.public == e["buyer"])
        submit(chain, buyer, "settle", {"trade": e["id"], "delivered": e["quantity"]})
        assert (
            refused(chain, seller, "settle", {"trade": e["id"], "delivered": 0})[0] is Reason.ALREADY_SETTLED
        )
        paid[seller] += e["price"] * e["quantity"]
        paid[buyer] -= e["price"] * e["quantity"]
    chain.seal()
    for m in ALL:
        assert ks.decode_int(chain.state.get(ks.balance(m.public))) == balances[m] + paid[m]
    assert paid[P1] == 50 * 2250 + 80 * (501 if P1.public < P2.public else 500)


# ---------------------------------------------------------------------------------------------- refusals


def test_accept_refusals() -> None:
    chain = closed_session({P1: [3000, 1000, 0], P2: [-3000, -1000, 0]})
    assert refused(chain, Keys.dso, "exchange.accept", accept_body([0, 0, 0]))[0] is Reason.FORBIDDEN
    assert refused(chain, P3, "exchange.accept", accept_body([0, 0, 0]))[0] is Reason.FORBIDDEN
    assert refused(chain, P1, "exchange.accept", accept_body([0, 0, 0], name="nope"))[0] is Reason.NOT_FOUND
    assert refused(chain, P1, "exchange.accept", accept_body([0, 0]))[0] is Reason.INVALID
    why, text = refused(chain, P1, "exchange.accept", accept_body([-1, 0, 0]))
    assert why is Reason.RULE_VIOLATION and "sign" in text
    why, text = refused(chain, P1, "exchange.accept", accept_body([0, 0, 5]))  # its final is 0 there
    assert why is Reason.RULE_VIOLATION and "sign" in text
    why, text = refused(chain, P2, "exchange.accept", accept_body([-3001, 0, 0]))
    assert why is Reason.RULE_VIOLATION and "larger" in text
    submit(chain, P1, "exchange.accept", accept_body([2000, 0, 0]))
    assert refused(chain, P1, "exchange.accept", accept_body([0, 0, 0]))[0] is Reason.DUPLICATE
    submit(chain, Keys.dso, "exchange.clear", {"session": "day-1"})
    why, text = refused(chain, P2, "exchange.accept", accept_body([0, 0, 0]))
    assert why is Reason.CLOSED and "cleared" in text


def test_accept_before_the_close_is_refused() -> None:
    chain = chain_with()
    body = {"session": "s", "first_interval": 0, "members": [P1.public, P2.public], "prices": [1], "rho": RHO}
    submit(chain, Keys.dso, "exchange.open", body)
    why, text = refused(chain, P1, "exchange.accept", accept_body([0], name="s"))
    assert why is Reason.RULE_VIOLATION and "not closed" in text
    why, text = refused(chain, Keys.dso, "exchange.clear", {"session": "s"})
    assert why is Reason.RULE_VIOLATION and "not closed" in text


def rules(**kw: Any) -> dict[str, Any]:
    return {**market.NO_RULES, **kw}


def test_accepts_keep_the_owner_rules_at_the_closing_price_on_the_tick() -> None:
    # P1's floor 51 is above the price 50 of interval 100 and below 80; P3's cap 79 is above 50, below 80
    owner = {P1.public: rules(floor_price=51), P3.public: rules(cap_price=79)}
    chain = closed_session(
        {P1: [1000, 1000, 0], P2: [1000, 1000, 0], P3: [-1000, -1000, 0], P4: [-1000, -1000, 0]}, rules=owner
    )
    why, text = refused(chain, P1, "exchange.accept", accept_body([1000, 0, 0]))
    assert why is Reason.RULE_VIOLATION and "below the floor 51" in text
    submit(chain, P1, "exchange.accept", accept_body([0, 1000, 0]))
    why, text = refused(chain, P3, "exchange.accept", accept_body([0, -1000, 0]))
    assert why is Reason.RULE_VIOLATION and "above the cap 79" in text
    submit(chain, P3, "exchange.accept", accept_body([-1000, 0, 0]))
    # rules changed after the posts, for the session's intervals: the accept judges the rules in force now
    submit(chain, P4, "market.rules", {"rules": rules(clean_only=True), "from_interval": FIRST})
    why, text = refused(chain, P4, "exchange.accept", accept_body([0, -1, 0]))
    assert why is Reason.RULE_VIOLATION and "clean-only" in text
    submit(chain, P2, "market.rules", {"rules": rules(max_quantity=600), "from_interval": FIRST})
    why, text = refused(chain, P2, "exchange.accept", accept_body([601, 0, 0]))
    assert why is Reason.RULE_VIOLATION and "maximum 600" in text
    submit(chain, P2, "exchange.accept", accept_body([600, 0, 0]))
    # an accept freezes the member's rules up to the last interval it trades in, as a market position does
    why, _ = refused(chain, P2, "market.rules", {"rules": rules(), "from_interval": FIRST})
    assert why is Reason.RULE_VIOLATION


def test_a_purchase_at_a_negative_price_is_refused() -> None:
    chain = closed_session({P1: [0, 0, 100], P2: [0, 0, -100]})
    why, text = refused(chain, P2, "exchange.accept", accept_body([0, 0, -100]))
    assert why is Reason.RULE_VIOLATION and "< 0" in text
    why, text = refused(chain, P1, "exchange.accept", accept_body([0, 0, 100]))  # floor 0
    assert why is Reason.RULE_VIOLATION and "below the floor" in text


def test_clear_refusals() -> None:
    chain = closed_session({P1: [1000, 0, 0], P2: [-1000, 0, 0]})
    submit(chain, P1, "exchange.accept", accept_body([1000, 0, 0]))
    assert refused(chain, P1, "exchange.clear", {"session": "day-1"})[0] is Reason.FORBIDDEN
    assert refused(chain, Keys.dso, "exchange.clear", {"session": "nope"})[0] is Reason.NOT_FOUND
    # P2 never accepted: it trades nothing, so nothing trades
    result = chain.sign_and_submit(Keys.dso, "exchange.clear", {"session": "day-1"})
    assert isinstance(result, Accepted)
    assert result.events == (("exchange_cleared", {"session": "day-1", "accepted": 1, "trades": 0}),)
    why, text = refused(chain, Keys.dso, "exchange.clear", {"session": "day-1"})
    assert why is Reason.CLOSED and "cleared" in text
    assert accepted(chain.view, "day-1", P2.public) is None
    assert not market.closed(chain.view, FIRST)


@pytest.mark.parametrize("traded", [False, True])
def test_an_interval_the_market_already_holds_is_skipped_and_the_rest_cleared(traded: bool) -> None:
    """review7 F2: the market's positions in one interval (here two non-members') used to refuse the whole
    clear, for ever once the interval closed. Now that interval is skipped, named, and left as it was."""
    chain = closed_session({P1: [1000, 1000, 0], P2: [-1000, -1000, 0]})
    for m, q in ((P1, 1000), (P2, -1000)):
        submit(chain, m, "exchange.accept", accept_body([q, q, 0]))
    # intraday positions (and, `traded`, a closing) in chain interval 101 by two others
    offer = {"interval": FIRST + 1, "round": 1, "price": 10, "quantity": 5, "clean": False}
    submit(chain, P3, "offer", offer)
    submit(
        chain,
        P4,
        "bid",
        {"interval": FIRST + 1, "round": 1, "demands": [{"seller": P3.public, "quantity": 5}]},
    )
    if traded:
        submit(chain, P3, "trade", {"interval": FIRST + 1})
    before = market.interval_record(chain.view, FIRST + 1)
    result = chain.sign_and_submit(Keys.dso, "exchange.clear", {"session": "day-1"})
    assert isinstance(result, Accepted)
    held = "closed" if traded else "positions"
    skipped = [{"interval": FIRST + 1, "held": held}]
    summary = {"session": "day-1", "accepted": 2, "trades": 1, "skipped": skipped}
    assert result.events[0] == ("exchange_cleared", summary)
    assert [(e["interval"], e["quantity"]) for k, e in result.events if k == "trade"] == [(FIRST, 1000)]
    record = cleared(chain.view, "day-1")
    assert record is not None and record["skipped"] == skipped and record["trades"] == 1
    # interval 100 cleared; 101 is exactly the market's as it was (its positions can still close it)
    assert market.interval_record(chain.view, FIRST)["session"] == "day-1"
    assert market.interval_record(chain.view, FIRST + 1) == before
    if not traded:
        submit(chain, P3, "trade", {"interval": FIRST + 1})
        agreed = market.interval_record(chain.view, FIRST + 1)
        assert "session" not in agreed and len(agreed["trades"]) == 1


def test_one_watt_hour_offer_by_a_stranger_no_longer_blocks_the_day() -> None:
    """review7 F2's evidence (f_block_clear.py): P3, no member, offers 1 Wh in the session's last interval
    and closes it with no trade. The three other intervals clear; the closed one is named (F6: "closed",
    not "has trades", since it has none)."""
    chain = closed_session({P1: [1000] * 4, P2: [-1000] * 4}, prices=[50_000_000] * 4)
    submit(chain, P1, "exchange.accept", accept_body([1000] * 4))
    submit(chain, P2, "exchange.accept", accept_body([-1000] * 4))
    offer = {"interval": FIRST + 3, "round": 1, "price": 1, "quantity": 1, "clean": False}
    submit(chain, P3, "offer", offer)
    submit(chain, P3, "trade", {"interval": FIRST + 3})
    assert market.interval_record(chain.view, FIRST + 3)["trades"] == []
    submit(chain, Keys.dso, "exchange.clear", {"session": "day-1"})
    record = cleared(chain.view, "day-1")
    assert record is not None and record["trades"] == 3
    assert record["skipped"] == [{"interval": FIRST + 3, "held": "closed"}]
    assert [market.closed(chain.view, FIRST + t) for t in range(4)] == [True] * 4
    assert market.interval_record(chain.view, FIRST + 3)["trades"] == []  # untouched


def test_held_names_what_the_market_holds() -> None:
    """The words for each of the three holds (F6: an interval closed with no trades is "closed", not "has
    trades"); a free interval is None."""
    chain = chain_with({P1.public: None})
    assert _held(chain.view, 7) is None
    submit(chain, P1, "offer", {"interval": 7, "round": 1, "price": 1, "quantity": 1, "clean": False})
    assert _held(chain.view, 7) == ("positions", "interval 7 has open positions in the market contract")
    submit(chain, P1, "trade", {"interval": 7})
    assert _held(chain.view, 7) == ("closed", "interval 7 is already closed in the market contract")


def test_a_cleared_interval_cannot_be_reopened_for_re_bargaining() -> None:
    chain = closed_session({P1: [1000, 0, 0], P2: [-1000, 0, 0]})
    for m, q in ((P1, 1000), (P2, -1000)):
        submit(chain, m, "exchange.accept", accept_body([q, 0, 0]))
    submit(chain, Keys.dso, "exchange.clear", {"session": "day-1"})
    body = {"interval": FIRST, "iteration": 1, "ref": bytes(32), "until": 2**62}
    why, text = refused(chain, Keys.dso, "market.reopen", body)
    assert why is Reason.RULE_VIOLATION and "forward trades" in text


# ---------------------------------------------------------------------------------------------- properties


def side_checks(
    sells: dict[Any, int], buys: dict[Any, int], trades: list[tuple[Any, Any, int]], limit: int
) -> None:
    sold: dict[Any, int] = {}
    bought: dict[Any, int] = {}
    for s, b, q in trades:
        assert q > 0 and s in sells and b in buys
        sold[s] = sold.get(s, 0) + q
        bought[b] = bought.get(b, 0) + q
    assert sum(sold.values()) == sum(bought.values())  # balanced exactly
    assert all(sold[s] <= sells[s] for s in sold) and all(bought[b] <= buys[b] for b in bought)
    assert len(trades) <= max(
        len([1 for v in sells.values() if v]) + len([1 for v in buys.values() if v]) - 1, 0
    )
    for b in bought:
        assert len([1 for _, buyer, _ in trades if buyer == b]) <= limit
    big_s, big_b = sum(sells.values()), sum(buys.values())
    volume = min(big_s, big_b)
    if volume and trades == forward_trades(sells, buys, 10**9):
        # no buyer was cut at the limit: the long side is cut pro rata within 1 Wh, the short side whole
        assert sum(sold.values()) == volume
        long_side, got, total = (sells, sold, big_s) if big_s >= big_b else (buys, bought, big_b)
        for who, want in long_side.items():
            assert abs(got.get(who, 0) - Fraction(want * volume, total)) < 1


volumes = st.dictionaries(st.integers(0, 40), st.integers(0, 10_000), max_size=12)


@settings(max_examples=300, deadline=None)
@given(volumes, volumes, st.integers(1, 4))
def test_forward_trades_balance_and_cut_the_long_side_pro_rata(
    sells: dict[int, int], buys: dict[int, int], limit: int
) -> None:
    sells_s = {f"s{k:02d}": v for k, v in sells.items()}
    buys_s = {f"b{k:02d}": v for k, v in buys.items()}
    trades = forward_trades(sells_s, buys_s, limit)
    side_checks(sells_s, buys_s, trades, limit)
    assert trades == sorted(trades) and forward_trades(sells_s, buys_s, limit) == trades


def test_forward_trades_refuses_what_has_no_meaning() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        forward_trades({"a": -1}, {"b": 1})
    with pytest.raises(ValueError, match="both sells and buys"):
        forward_trades({"a": 1}, {"a": 1})
    with pytest.raises(ValueError, match="cannot share"):
        largest_remainder({"a": 1}, 2)


finals_strategy = st.lists(st.integers(-5000, 5000), min_size=4, max_size=4)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(finals_strategy, min_size=1, max_size=3),
    st.lists(st.lists(st.sampled_from([0, 1, 2, 3, 4]), min_size=4, max_size=4), min_size=3, max_size=3),
)
def test_random_accepts_clear_into_balanced_trades_each_settled_once(
    columns: list[list[int]], cuts: list[list[int]]
) -> None:
    # per interval t one column of four final positions; each member accepts k/4 of it (0 declines)
    finals = {m: [col[i] for col in columns] for i, m in enumerate(ALL)}
    chain = closed_session(finals, prices=[50_000_000] * len(columns))
    taken: dict[Keypair, list[int]] = {}
    for i, m in enumerate(ALL):
        taken[m] = [int(q * cuts[t % 3][i] / 4) for t, q in enumerate(finals[m])]
        submit(chain, m, "exchange.accept", accept_body(taken[m]))
    result = chain.sign_and_submit(Keys.dso, "exchange.clear", {"session": "day-1"})
    assert isinstance(result, Accepted)
    trades = [e for kind, e in result.events if kind == "trade"]
    for t in range(len(columns)):
        sells = {m.public: q[t] for m, q in taken.items() if q[t] > 0}
        buys = {m.public: -q[t] for m, q in taken.items() if q[t] < 0}
        mine = [(e["seller"], e["buyer"], e["quantity"]) for e in trades if e["interval"] == FIRST + t]
        side_checks(sells, buys, mine, market.MAX_DEMANDS)
        assert market.closed(chain.view, FIRST + t) == bool(mine)
    for e in trades:
        buyer = next(m for m in ALL if m.public == e["buyer"])
        submit(chain, buyer, "settle", {"trade": e["id"], "delivered": e["quantity"]})
        assert (
            refused(chain, buyer, "settle", {"trade": e["id"], "delivered": 1})[0] is Reason.ALREADY_SETTLED
        )


def scripted_root() -> str:
    """A whole session (open, posts, step, close, accepts, clear) as fixed signed transactions on a fresh
    chain: its state root and interval 100's record, as text."""
    chain = chain_with()
    signers = {k.public: chain.signer(k) for k in (Keys.dso, *ALL)}
    name = "day-1"
    open_body = {
        "session": name,
        "first_interval": FIRST,
        "members": [m.public for m in ALL],
        "prices": PRICES,
        "rho": RHO,
    }
    script: list[tuple[Keypair, str, dict[str, Any]]] = [(Keys.dso, "exchange.open", open_body)]
    script += [(m, "exchange.position", {"session": name, "iteration": 0, "positions": HAND[m]}) for m in ALL]
    script += [
        (Keys.dso, "exchange.step", {"session": name, "iteration": 0, "rho": RHO}),
        (Keys.dso, "exchange.close", {"session": name, "iteration": 1}),
    ]
    script += [(m, "exchange.accept", accept_body([*HAND[m][:2], 0])) for m in ALL]
    script.append((Keys.dso, "exchange.clear", {"session": name}))
    txs = [signers[who.public].sign(kind, body, T0 + 1000 + i) for i, (who, kind, body) in enumerate(script)]
    assert all(r.ok for r in chain.submit_all(txs))
    chain.seal(T0 + 60_000)
    assert chain.dropped == []
    return f"{chain.state.root.hex()} {market.interval_record(chain.state, FIRST)!r}"


def test_the_same_transactions_on_two_chains_give_the_same_state_root() -> None:
    """Each chain in its own interpreter with another hash seed (review7 F10): set and dict iteration over
    str or bytes differs between them, so an order the contract took from one (not from a sort on keys)
    would give another root. Same seed in-process too."""
    here = Path(__file__).parent
    code = "import test_exchange_clear as t; print(t.scripted_root())"
    roots = set()
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        env["PYTHONPATH"] = os.pathsep.join([str(here), env.get("PYTHONPATH", "")])
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        roots.add(done.stdout.strip())
    roots.add(scripted_root())
    assert len(roots) == 1, roots
    assert "'session': 'day-1'" in roots.pop()  # the clear did write interval 100
