"""The contract and the DSO node on one `seller_vouched` chain (review14 K3 (1), K7): each decision the DSO node
(`DisputeSettler.settle_due` over the chain's blocks, the MGs' sealed readings handed over) sends is one the
contract takes. K3: a buyer that committed and was down past the reveal window is settled from the seller's
meter, min(its share, the quantity), not at the whole quantity (R14's k3 case); a seller that did is paid
min(its share, the quantity), not 0 with the whole quantity its shortfall (nor, review15 M4, capped by the
buyer's statement: test_settle_vouched_review15.py). K7: with only the absolute
`settle_tolerance_wh`, an agreement that leaves part of the gap unowned is vouched with that part named the
seller's; the held (0, 0) repeated is refused, as the contract's rule says the larger shortfall is the gap.
Fixtures: tests/dso (the DSO's chain market and settler).
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from dso.test_disputes import END_MS, PRICE, Market, market, ramp
from dso.test_disputes_node import final_blocks, hand_over, settler_for
from ledger_fixtures import reason

from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.results import Reason

WAIT = 120_000  # ms: settle_wait_ms, the lab's three 40-s windows' order of magnitude
RETAIL, FEED_IN = 300, 50
SEALED_VOUCHED = {"seller_vouched": 1, "sealed_statements": 1}


def _salt(m: Market, mg: str, tid: bytes) -> bytes:
    return hashlib.sha256(b"salt/" + m.anonyms[mg].public + tid).digest()


def crashed_buyer(seller_says: int, priced: bool) -> tuple[Market, bytes]:
    """R14 k3: s metered 100 of 400 Wh, b took 400. Both commit after the interval; s reveals `seller_says`, b
    is down past the reveal window; at the deadline s's edge repeats its lone statement."""
    readings = {"s": ramp(100.0, export=True), "b": ramp(400.0, export=False)}
    cover = (RETAIL, FEED_IN) if priced else None
    m = market({("s", "b"): 400}, {}, readings=readings, wait_ms=WAIT, cover=cover, params=SEALED_VOUCHED)
    tid, chain = m.trade_id("s", "b"), m.chain.genesis.chain
    s, b = m.anonyms["s"], m.anonyms["b"]
    m.do(
        s,
        "settle",
        {"trade": tid, "seal": seal_of(chain, tid, s.public, seller_says, 0, _salt(m, "s", tid))},
        END_MS,
    )
    m.do(b, "settle", {"trade": tid, "seal": seal_of(chain, tid, b.public, 400, 0, _salt(m, "b", tid))})
    m.do(s, "settle", {"trade": tid, "delivered": seller_says, "salt": _salt(m, "s", tid)})
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "stated"
    m.pass_time(int(where["deadline"]))
    m.do(s, "settle", {"trade": tid, "delivered": seller_says})
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "vouching" and where["vouch"]["basis"] == "withheld"
    assert where["vouch"]["delivered"] == 400
    return m, tid


@pytest.mark.parametrize("seller_says", [100, 400])
@pytest.mark.parametrize("priced", [False, True], ids=["unpriced", "priced"])
def test_r14_k3_a_crashed_buyer_is_settled_from_the_sellers_meter(seller_says: int, priced: bool) -> None:
    """The buyer's edge, back up, posts its readings for the vouch (D2: its meter names its own shortfall on a
    priced trade: it took 400, none)."""
    m, tid = crashed_buyer(seller_says, priced)
    before = query.balance(m.chain.state, m.anonyms["s"].public)
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    shorts = {"seller_short": 300, "buyer_short": 0} if priced else {}
    assert [body for _, _, body, _ in adapter.sent] == [{"trade": tid, "delivered": 100, **shorts}]
    done = query.settlement(m.chain.state, tid)
    assert done is not None and done["state"] == "settled"
    assert (done["settlement"]["basis"], done["settlement"]["delivered"]) == ("dso", 100)
    paid = query.balance(m.chain.state, m.anonyms["s"].public) - before
    # the seller is paid its 100 Wh; priced, it compensates the buyer for the 300 it did not deliver
    assert paid == 100 * PRICE - (300 * (RETAIL - PRICE) if priced else 0)


def test_a_crashed_buyer_that_never_posts_its_readings_owns_the_whole_gap_from_vouch_rule() -> None:
    """Priced, the buyer stays down: the DSO waits for its readings until `takeup.VOUCH_RULE` of the vouch's
    window, then names it the whole gap, as a dispute names a side it could have metered and did not (D2): the
    seller's 100 of 400 paid, no compensation either way (with the buyer's meter, 30,000 to the buyer)."""
    m, tid = crashed_buyer(100, True)
    before = query.balance(m.chain.state, m.anonyms["s"].public)
    settler, adapter, _ = settler_for(m)
    since = final_blocks(m, settler)
    hand_over(m, settler, "s")
    asyncio.run(settler.settle_due())
    waiting = settler.decision(tid)
    assert adapter.sent == [] and waiting is not None and "the buyer's metering" in waiting["why"]
    until = int(waiting["until_ms"])
    assert until < int(query.settlement(m.chain.state, tid)["vouch"]["until"])  # type: ignore[index]
    m.pass_time(until)
    final_blocks(m, settler, since)
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 100, "seller_short": 300, "buyer_short": 300}
    ]
    shown = settler.decision(tid)
    assert shown is not None and shown["buyer"] is None and "buyer" in shown["unmetered"]
    assert query.balance(m.chain.state, m.anonyms["s"].public) - before == 100 * PRICE


def crashed_seller() -> tuple[Market, bytes]:
    """The mirror: s metered 250 of 400 Wh, b states 300 short 0 (priced). Both commit, b reveals, s is down
    past the reveal window; at the deadline b's edge repeats its lone statement."""
    readings = {"s": ramp(250.0, export=True), "b": ramp(300.0, export=False)}
    m = market({("s", "b"): 400}, {}, readings=readings, wait_ms=WAIT, cover=(RETAIL, FEED_IN),
               params=SEALED_VOUCHED)  # fmt: skip
    tid, chain = m.trade_id("s", "b"), m.chain.genesis.chain
    s, b = m.anonyms["s"], m.anonyms["b"]
    m.do(
        b, "settle", {"trade": tid, "seal": seal_of(chain, tid, b.public, 300, 0, _salt(m, "b", tid))}, END_MS
    )
    m.do(s, "settle", {"trade": tid, "seal": seal_of(chain, tid, s.public, 400, 0, _salt(m, "s", tid))})
    m.do(b, "settle", {"trade": tid, "delivered": 300, "short": 0, "salt": _salt(m, "b", tid)})
    m.pass_time(int(query.settlement(m.chain.state, tid)["deadline"]))  # type: ignore[index]
    m.do(b, "settle", {"trade": tid, "delivered": 300, "short": 0})
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "vouching" and where["vouch"]["release"]["delivered"] == 0
    assert (
        where["vouch"]["delivered"] == 400
    )  # held at the quantity: the seller's meter decides (review15 M4)
    return m, tid


def test_r14_k3_a_crashed_seller_is_paid_from_its_meter() -> None:
    """Metered as a dispute in which the seller said nothing (review15 M4): both meters, min(250, 300); the
    buyer's meter shows it took 300 of 400 (its 'short 0' is not used), so the seller owes compensation on
    the 50 Wh of its 150 short that the buyer's own 100 does not cover."""
    m, tid = crashed_seller()
    before = query.balance(m.chain.state, m.anonyms["s"].public)
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    asyncio.run(settler.settle_due())
    waiting = settler.decision(tid)
    assert adapter.sent == [] and waiting is not None and waiting["outcome"] == "unresolved"
    assert "buyer's metering" in waiting["why"]  # the buyer's readings are waited for, until VOUCH_RULE
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 250, "seller_short": 150, "buyer_short": 100}
    ]
    done = query.settlement(m.chain.state, tid)
    assert done is not None and (done["settlement"]["basis"], done["settlement"]["delivered"]) == ("dso", 250)
    paid = query.balance(m.chain.state, m.anonyms["s"].public) - before
    assert paid == 250 * PRICE - 50 * (RETAIL - PRICE)  # before: 0 delivered and 400 x (retail - price) owed


def test_r14_k3_a_crashed_seller_whose_buyer_never_posts_is_paid_from_its_meter_at_the_deadline() -> None:
    """The buyer's readings never reach the DSO: it waits for them until `takeup.VOUCH_RULE` of the vouch's
    window (a quarter of it before the buyer's repeat could pay the release), then settles on the seller's
    meter alone ('seller metered only': min(250, the quantity)), the buyer unmetered owning the whole gap, so
    no compensation either way: the crashed seller is still paid its metered 250, before the release."""
    m, tid = crashed_seller()
    before = query.balance(m.chain.state, m.anonyms["s"].public)
    settler, adapter, _ = settler_for(m)
    since = final_blocks(m, settler)
    hand_over(m, settler, "s")
    asyncio.run(settler.settle_due())
    waiting = settler.decision(tid)
    assert adapter.sent == [] and waiting is not None and waiting["outcome"] == "unresolved"
    where = query.settlement(m.chain.state, tid)
    assert where is not None
    until, vouch_ends = int(waiting["until_ms"]), int(where["vouch"]["until"])
    assert m.now < until < vouch_ends
    m.pass_time(until - 1)  # not yet: still waiting for the buyer's readings
    since = final_blocks(m, settler, since)
    asyncio.run(settler.settle_due())
    assert adapter.sent == []
    m.pass_time(until)
    final_blocks(m, settler, since)
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 250, "seller_short": 150, "buyer_short": 150}
    ]
    shown = settler.decision(tid)
    assert shown is not None and shown["rule"] == "seller metered only" and "buyer" in shown["unmetered"]
    paid = query.balance(m.chain.state, m.anonyms["s"].public) - before
    assert paid == 250 * PRICE


def vouched_with_a_gap() -> tuple[Market, bytes]:
    """R14 k7: settle_tolerance_wh 20 and no permille, priced, the seller's meter shows 400; the buyer states
    400 short 0, the seller 390 short 0: 10 Wh owned by nobody, within the tolerance: vouching."""
    readings = {"s": ramp(400.0, export=True), "b": ramp(400.0, export=False)}
    m = market({("s", "b"): 400}, {}, tolerance=20, readings=readings, wait_ms=WAIT, cover=(RETAIL, FEED_IN),
               params={"seller_vouched": 1})  # fmt: skip
    tid = m.trade_id("s", "b")
    m.do(m.anonyms["b"], "settle", {"trade": tid, "delivered": 400, "short": 0}, END_MS)
    m.do(m.anonyms["s"], "settle", {"trade": tid, "delivered": 390, "short": 0})
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "vouching"
    assert (where["vouch"]["delivered"], where["vouch"]["seller_short"], where["vouch"]["buyer_short"]) == (
        390,
        0,
        0,
    )
    return m, tid


def test_r14_k7_the_dsos_vouch_names_the_unowned_gap_the_sellers_and_the_contract_takes_it() -> None:
    m, tid = vouched_with_a_gap()
    # the held figures repeated by the DSO are refused for good: the larger shortfall must be the gap
    refused = m.chain.sign_and_submit(
        m.dso, "settle", {"trade": tid, "delivered": 390, "seller_short": 0, "buyer_short": 0}, m.now
    )
    assert reason(refused) is Reason.INVALID and "the larger shortfall is 10 Wh" in str(refused)
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 390, "seller_short": 10, "buyer_short": 0}
    ]
    done = query.settlement(m.chain.state, tid)
    assert done is not None and done["settlement"]["basis"] == "dso"
    assert done["settlement"]["compensation"]["payer"] == "seller"
    assert done["settlement"]["compensation"]["seller_short"] == 10
