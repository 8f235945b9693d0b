"""Genesis `cap_on_fills`: a buyer's maximum quantity caps what the closing allocates it, not its requests.

A chain without the parameter (every genesis written before it) keeps its rules and its genesis bytes; with
it, a buyer may ask several sellers more than its maximum in all and keeps its rationed grants, in its own
effective-price order (clean premium counted), up to its maximum and never beyond; everything else (floors,
caps, clean-only, offered quantities, settlement once) is checked as before. State-transition properties over
generated bargaining sequences (offers, bids on them, moves, a closing, settlements) on both kinds of chain,
with a seeded count that they do trade.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, make_genesis, reason, submit_checked

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, GenesisError, Params
from peergrid_ledger.results import Reason

RULES = {  # p1, p2 sell; p3, p4 buy: small maxima so that they bind
    Keys.p1.public: {"floor_price": 200, "cap_price": 0, "max_quantity": 3000, "clean_only": False},
    Keys.p2.public: {"floor_price": 100, "cap_price": 0, "max_quantity": 3000, "clean_only": False},
    Keys.p3.public: {"floor_price": 0, "cap_price": 300, "max_quantity": 2000, "clean_only": False},
    Keys.p4.public: {"floor_price": 0, "cap_price": 260, "max_quantity": 1500, "clean_only": True},
}
PREMIUM = 40
WHO = {1: Keys.p1, 2: Keys.p2, 3: Keys.p3, 4: Keys.p4}


def chain(cap_on_fills: int) -> LocalChain:
    accounts = (
        Account(Keys.dso.public, ("dso",)),
        *(
            Account(
                k.public,
                ("anonym",),
                f"p{n}",
                balance=10**7,
                rules={**RULES[k.public], "clean_premium": PREMIUM},
            )
            for n, k in WHO.items()
        ),
    )
    params = Params(credit_limit=10**6, cap_on_fills=cap_on_fills)
    return LocalChain(make_genesis(accounts=accounts, params=params), Keys.authority)


def offer(price: int, quantity: int, clean: bool = True, round_: int = 0) -> dict[str, Any]:
    return {"interval": 1, "round": round_, "price": price, "quantity": quantity, "clean": clean}


def bid(*demands: tuple[bytes, int], round_: int = 0) -> dict[str, Any]:
    return {"interval": 1, "round": round_, "demands": [{"seller": s, "quantity": q} for s, q in demands]}


def received(c: LocalChain, buyer: bytes) -> int:
    return sum(t["quantity"] for _, t in query.trades(c.state, 1) if t["buyer"] == buyer)


def close(c: LocalChain) -> dict[tuple[bytes, bytes], int]:
    """p3 closes interval 1, the block is sealed; the agreed quantities by (seller, buyer)."""
    assert c.sign_and_submit(Keys.p3, "trade", {"interval": 1}).ok
    c.seal()
    return {(t["seller"], t["buyer"]): t["quantity"] for _, t in query.trades(c.state, 1)}


def test_without_the_parameter_the_sum_of_requests_is_capped_as_before() -> None:
    c = chain(0)
    assert c.sign_and_submit(Keys.p1, "offer", offer(250, 1000)).ok
    assert c.sign_and_submit(Keys.p2, "offer", offer(260, 3000)).ok
    over = bid((Keys.p1.public, 1000), (Keys.p2.public, 1001))
    assert reason(c.sign_and_submit(Keys.p3, "bid", over)) is Reason.RULE_VIOLATION


def test_a_buyer_asks_beyond_its_maximum_and_is_filled_in_price_order_up_to_it() -> None:
    c = chain(1)
    assert c.sign_and_submit(Keys.p1, "offer", offer(250, 1000)).ok  # cheaper, rationed below
    assert c.sign_and_submit(Keys.p2, "offer", offer(260, 3000)).ok
    assert c.sign_and_submit(Keys.p3, "bid", bid((Keys.p1.public, 1000), (Keys.p2.public, 2000))).ok
    assert c.sign_and_submit(Keys.p4, "bid", bid((Keys.p1.public, 1000))).ok
    got = close(c)
    # p1 (250) first: 2000 asked of 1000, half each; then p2 (260): p3's room is 2000 - 500
    assert got == {
        (Keys.p1.public, Keys.p3.public): 500,
        (Keys.p1.public, Keys.p4.public): 500,
        (Keys.p2.public, Keys.p3.public): 1500,
    }
    assert received(c, Keys.p3.public) == 2000  # its maximum, with 1000 of its requests rationed away


def test_a_premium_buyer_keeps_its_grants_in_its_own_effective_price_order() -> None:
    # review4 F2: p3 (max 2000, premium 40) ranks clean p1 (250: 210 to it) before dirty p2 (230); p1 is
    # rationed by half (p4 asks it all). Served by raw price, p2 first, p3 received 1500 + 333
    c = chain(1)
    assert c.sign_and_submit(Keys.p1, "offer", offer(250, 1000)).ok
    assert c.sign_and_submit(Keys.p2, "offer", offer(230, 3000, clean=False)).ok
    assert c.sign_and_submit(Keys.p3, "bid", bid((Keys.p1.public, 1000), (Keys.p2.public, 1500))).ok
    assert c.sign_and_submit(Keys.p4, "bid", bid((Keys.p1.public, 1000))).ok
    got = close(c)
    assert got == {
        (Keys.p1.public, Keys.p3.public): 500,
        (Keys.p1.public, Keys.p4.public): 500,
        (Keys.p2.public, Keys.p3.public): 1500,
    }
    assert received(c, Keys.p3.public) == 2000


def test_a_cut_falls_on_the_dearest_offers_to_that_buyer_and_ties_share_it() -> None:
    c = chain(1)
    assert c.sign_and_submit(Keys.p1, "offer", offer(250, 3000)).ok  # clean: 210 to p3
    assert c.sign_and_submit(Keys.p2, "offer", offer(210, 3000, clean=False)).ok  # 210 to p3 as well
    assert c.sign_and_submit(Keys.p3, "bid", bid((Keys.p1.public, 3000), (Keys.p2.public, 1000))).ok
    got = close(c)  # p3 the only buyer
    assert got == {  # its 2000 split 3:1, keys play no part
        (Keys.p1.public, Keys.p3.public): 1500,
        (Keys.p2.public, Keys.p3.public): 500,
    }


def test_a_bid_naming_more_sellers_than_the_contract_takes_is_refused() -> None:
    from peergrid_ledger.contracts.market import MAX_DEMANDS

    c = chain(1)
    assert c.sign_and_submit(Keys.p1, "offer", offer(250, 1000)).ok
    too_many = bid(*[(Keys.p1.public, 1)] * (MAX_DEMANDS + 1))
    result = c.sign_and_submit(Keys.p3, "bid", too_many)
    assert reason(result) is Reason.MALFORMED and f"more than {MAX_DEMANDS}" in str(result)


def test_what_a_cut_frees_goes_to_the_sellers_other_rationed_buyers() -> None:
    c = chain(1)
    assert c.sign_and_submit(Keys.p1, "offer", offer(250, 3000)).ok
    assert c.sign_and_submit(Keys.p3, "bid", bid((Keys.p1.public, 3000))).ok  # p3 keeps 2000 at most
    assert c.sign_and_submit(Keys.p4, "bid", bid((Keys.p1.public, 3000))).ok  # p4 at most 1500
    close(c)
    # rationed 1500 each; nobody is cut, nothing moves
    assert received(c, Keys.p3.public) == 1500 and received(c, Keys.p4.public) == 1500
    c = chain(1)
    assert c.sign_and_submit(Keys.p1, "offer", offer(250, 2000)).ok
    assert c.sign_and_submit(Keys.p2, "offer", offer(240, 1500)).ok
    assert c.sign_and_submit(Keys.p3, "bid", bid((Keys.p1.public, 2000), (Keys.p2.public, 1500))).ok
    assert c.sign_and_submit(Keys.p4, "bid", bid((Keys.p1.public, 2000))).ok
    got = close(c)
    # p1 rationed 1000 each; p3 takes 1500 from p2 (200 to it, before p1's 210), so keeps 500 at p1: the
    # 500 it cannot take go to p4 (room 1500 - 1000), not back to p1 unsold
    assert got == {
        (Keys.p1.public, Keys.p3.public): 500,
        (Keys.p1.public, Keys.p4.public): 1500,
        (Keys.p2.public, Keys.p3.public): 1500,
    }


def test_every_other_rule_still_refuses_the_move() -> None:
    c = chain(1)
    assert c.sign_and_submit(Keys.p1, "offer", offer(250, 1000, clean=False)).ok
    assert c.sign_and_submit(Keys.p2, "offer", offer(330, 3000)).ok  # clean: p3's cap 300 + premium 40
    below_floor = {"interval": 1, "round": 1, "price": 199, "quantity": 1000}
    above_maximum = {"interval": 1, "round": 1, "price": 330, "quantity": 3001}
    assert reason(c.sign_and_submit(Keys.p1, "move", below_floor)) is Reason.RULE_VIOLATION
    assert reason(c.sign_and_submit(Keys.p2, "move", above_maximum)) is Reason.RULE_VIOLATION
    # more than offered; beyond the cap (p4: 260 + 40 < 330); clean-only (p4) taking non-clean energy
    assert reason(c.sign_and_submit(Keys.p3, "bid", bid((Keys.p1.public, 1001)))) is Reason.RULE_VIOLATION
    assert reason(c.sign_and_submit(Keys.p4, "bid", bid((Keys.p2.public, 10)))) is Reason.RULE_VIOLATION
    assert reason(c.sign_and_submit(Keys.p4, "bid", bid((Keys.p1.public, 10)))) is Reason.RULE_VIOLATION
    assert c.sign_and_submit(Keys.p3, "bid", bid((Keys.p1.public, 1000), (Keys.p2.public, 3000))).ok


def test_the_parameter_keeps_older_genesis_bytes_and_is_checked() -> None:
    old = make_genesis()
    assert "cap_on_fills" not in old.to_value()["params"]  # the default is not encoded: old hashes stand
    assert b"cap_on_fills" not in old.encode()
    new = make_genesis(params=Params(credit_limit=0, cap_on_fills=1))
    assert new.to_value()["params"]["cap_on_fills"] == 1
    assert new.hash != old.hash
    assert Genesis.decode(new.encode()).params.cap_on_fills == 1
    assert Genesis.decode(old.encode()).params.cap_on_fills == 0
    with pytest.raises(GenesisError, match="expected 0 or 1"):
        Params(cap_on_fills=2)
    with pytest.raises(GenesisError, match="expected 0 or 1"):
        Params.from_value({"cap_on_fills": 3})
    with pytest.raises(GenesisError, match="is the default"):
        Params.from_value({"cap_on_fills": 0})


Step = tuple[str, int, int, list[tuple[int, int]], bool]  # kind, who, price (or trade index), demands, clean


@st.composite
def sequences(draw: st.DrawFn) -> list[Step]:
    """One interval's bargaining as the market runs it (review4 F4: independent random steps almost never
    traded): sellers p1, p2 offer (prices around the floors and caps, quantities up to a little past the
    maxima), buyers p3, p4 bid on those offers for a drawn share of what each offers (25 to 102 %, so many
    bids go past their maximum and some past an offer), later rounds move either side (a seller may
    withdraw), then someone closes the interval and trades are settled. Moves a rule refuses stay in."""
    seq: list[Step] = []
    offered: dict[int, int] = {}

    def sell(kind: str, n: int, least: int) -> None:
        quantity = draw(st.one_of(st.integers(least, 3200), st.integers(1500, 3000)))
        price = draw(st.integers(200, 300))
        price += {18: -8, 19: 15}.get(
            draw(st.integers(0, 19)), 0
        )  # now and then below p1's floor or above caps
        seq.append((kind, n, price, [(0, quantity)], draw(st.integers(0, 3)) < 3))
        offered[n] = quantity

    def buy(kind: str, n: int) -> None:
        sellers = [s for s in draw(st.permutations([1, 2])) if draw(st.integers(0, 3)) < 3] or [1]
        if draw(st.integers(0, 11)) == 11:
            sellers.append(n)  # itself: refused
        shares = [draw(st.integers(25, 102)) for _ in sellers]
        demands = [
            (s, max(1, offered.get(s, 1000) * pct // 100)) for s, pct in zip(sellers, shares, strict=True)
        ]
        seq.append((kind, n, 0, demands, False))

    for n in draw(st.permutations([1, 2])):
        if draw(st.integers(0, 9)) < 9:  # now and then a seller stays out
            sell("offer", n, 1)
    for n in draw(st.permutations([3, 4])):
        buy("bid", n)
    for _ in range(draw(st.integers(0, 4))):
        n = draw(st.integers(1, 4))
        if n <= 2:
            sell("move-offer", n, 0)
        else:
            buy("move-bid", n)
    closer = draw(st.sampled_from(sorted(offered) or [1]))
    if draw(st.integers(0, 9)) == 9:
        closer = draw(st.integers(3, 4))  # a buyer closes (refused if its bid was)
    seq.append(("trade", closer, 0, [(0, 1)], False))
    for _ in range(draw(st.integers(0, 3))):
        who, index, delivered = draw(st.integers(1, 4)), draw(st.integers(0, 7)), draw(st.integers(0, 2500))
        seq.append(("settle", who, index, [(0, delivered)], False))
    return seq


def run(c: LocalChain, seq: list[Step]) -> list[bool]:
    """Submit the sequence (interval 1); what each step's verdict was. Rejections must change nothing."""
    rounds: dict[int, int] = {}
    verdicts = []
    for kind, n, price, demands, clean in seq:
        key, r = WHO[n], rounds.get(n, 0) + 1
        quantity = demands[0][1]
        if kind == "offer":
            body: dict[str, Any] = offer(price, quantity, clean)
        elif kind == "move-offer":
            body = {"interval": 1, "round": r, "price": price, "quantity": quantity}
        elif kind in ("bid", "move-bid"):
            sellers = {WHO[s].public: q for s, q in demands}
            body = bid(*sorted(sellers.items()), round_=r if kind == "move-bid" else 0)
        elif kind == "trade":
            body = {"interval": 1}
        else:
            trades = query.trades(c.view, 1)
            if not trades:
                verdicts.append(False)
                continue
            tid, agreed = trades[price % len(trades)]
            body = {"trade": tid, "delivered": min(quantity, agreed["quantity"])}
        ok = submit_checked(c, key, kind.split("-")[0], body)
        if ok:
            rounds[n] = r
        verdicts.append(ok)
    c.seal()
    return verdicts


def binding(c: LocalChain) -> bool:
    """Whether the interval traded with some buyer asking more in all than its maximum (the cap decides)."""
    if not query.trades(c.state, 1):
        return False
    for k in (Keys.p3, Keys.p4):
        standing = query.bid(c.state, 1, k.public)
        asked = sum(d["quantity"] for d in standing["demands"]) if standing else 0
        if asked > query.rules(c.state, k.public, 1)["max_quantity"]:
            return True
    return False


@given(sequences())
@settings(max_examples=120, deadline=None)
def test_random_sequences_never_break_a_rule_and_settle_each_trade_once(seq: list[Step]) -> None:
    c = chain(1)
    total = sum(query.balance(c.state, k.public) for k in WHO.values())
    run(c, seq)
    event("traded" if query.trades(c.state, 1) else "no trade")
    event("a buyer asked past its maximum" if binding(c) else "no cap binding")
    assert sum(query.balance(c.state, k.public) for k in WHO.values()) == total  # money conserved
    trades = [t for _, t in query.trades(c.state, 1)]
    for t in trades:
        seller_rules = query.rules(c.state, t["seller"], 1)
        buyer_rules = query.rules(c.state, t["buyer"], 1)
        standing = query.offer(c.state, 1, t["seller"])
        assert standing is not None and t["price"] == standing["price"]
        assert t["price"] >= seller_rules["floor_price"]  # never below the seller's floor
        assert t["price"] <= buyer_rules["cap_price"] + (buyer_rules["clean_premium"] if t["clean"] else 0)
        assert t["clean"] or not buyer_rules["clean_only"]
        if t["settlement"] is not None:
            assert t["settlement"]["delivered"] <= t["quantity"]
    for k in WHO.values():
        rules = query.rules(c.state, k.public, 1)
        assert received(c, k.public) <= rules["max_quantity"]  # a buyer never receives above its maximum
        standing = query.offer(c.state, 1, k.public)
        sold = sum(t["quantity"] for t in trades if t["seller"] == k.public)
        assert sold <= (standing["quantity"] if standing else 0)  # nor a seller above its offer
    # every trade settles once: settle what is open, then a second settlement is refused and moves nothing
    keys = {k.public: k for k in WHO.values()}
    for tid, t in query.trades(c.view, 1):
        if t["settlement"] is None:
            assert c.sign_and_submit(keys[t["buyer"]], "settle", {"trade": tid, "delivered": 0}).ok
        balances = {k: query.balance(c.view, k) for k in keys}
        again = c.sign_and_submit(keys[t["seller"]], "settle", {"trade": tid, "delivered": 0})
        assert reason(again) is Reason.ALREADY_SETTLED
        assert {k: query.balance(c.view, k) for k in keys} == balances


@given(sequences())
@settings(max_examples=120, deadline=None)
def test_where_no_bid_exceeds_its_maximum_both_rules_agree_trade_for_trade(seq: list[Step]) -> None:
    old, new = chain(0), chain(1)
    verdicts_old, verdicts_new = run(old, seq), run(new, seq)
    if verdicts_old != verdicts_new:
        event("histories part")
        return  # the new chain accepted a bid over a maximum: the two histories part there
    event("compared with trades" if query.trades(old.state, 1) else "compared, no trade")
    assert query.trades(old.state, 1) == query.trades(new.state, 1)


def test_the_sequences_exercise_the_properties_above() -> None:
    # a generator that stops producing trades makes the properties above hold vacuously (review4 F4: the
    # first one gave 0 trades in 600 examples). derandomize seeds the batch, but hypothesis also mixes in
    # constants from the modules loaded before it, so the counts move with what else ran: measured 113-115
    # of 150 traded, 29-56 with a buyer asking past its maximum, 52-67 settled, 57-76 compared both rules
    # with trades. The bounds sit well below the lowest of those
    seen: Counter[str] = Counter()

    @given(sequences())
    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    def probe(seq: list[Step]) -> None:
        old, new = chain(0), chain(1)
        same = run(old, seq) == run(new, seq)
        seen["runs"] += 1
        seen["traded"] += bool(query.trades(new.state, 1))
        seen["binding"] += binding(new)
        seen["settled"] += any(t["settlement"] for _, t in query.trades(new.state, 1))
        seen["compared with trades"] += same and bool(query.trades(old.state, 1))

    probe()
    runs = seen["runs"]
    assert seen["traded"] >= 0.5 * runs, seen
    assert seen["binding"] >= 0.1 * runs, seen
    assert seen["settled"] >= 0.2 * runs, seen
    assert seen["compared with trades"] >= 0.2 * runs, seen
