"""The DSO node settles a trade that stood on one statement from the meters (review13 F4), on a real MGMC chain.

A lone statement settles the trade alone when its party repeats it after the contract's wait (`_lapse`),
naming the silent party's shortfall; an honest edge buyer is silent when its meter cannot prove the interval
(`pcc_readings.Unprovable`). The DSO node now meters such a trade like a dispute from `takeup.LONE_FROM` of
the wait on (the deadline rules from `LONE_RULE`), before the lapse can; a counterparty that joins in time
still settles it by the parties. Time is the chain's (blocks the test seals), never the wall clock."""

from __future__ import annotations

import asyncio

from peergrid_edge.pcc_readings import readings_needed
from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.takeup import LONE_FROM, LONE_RULE

from .test_disputes import END_MS, PRICE, Market, market, ramp
from .test_disputes_node import final_blocks, hand_over, settler_for

RETAIL, FEED_IN = 300, 50
WAIT_MS = 120_000


def lone(m: Market, who: str, delivered: int, short: int) -> tuple[bytes, int]:
    """`who`'s statement on the s -> b trade, alone, after the interval ended; (trade, its block time)."""
    tid = m.trade_id("s", "b")
    m.do(m.anonyms[who], "settle", {"trade": tid, "delivered": delivered, "short": short}, max(m.now, END_MS))
    return tid, m.chain.tip.time


def balance(m: Market, mg: str) -> int:
    return query.balance(m.chain.state, m.anonyms[mg].public)


def test_a_sellers_lone_lie_against_a_silent_buyer_settles_from_the_sellers_meter() -> None:
    """R13 F4's script: 400 Wh agreed, the seller's meter shows 100; the buyer (Unprovable) is silent; the seller
    states 100, short 0. Lapsed, the buyer would pay 300 Wh x (retail - price) compensation; the DSO settles
    100 from the seller's meter, equal shortfalls, no compensation, as had the seller stated honestly."""
    m = market({("s", "b"): 400}, {}, readings={"s": ramp(100.0, export=True)}, wait_ms=WAIT_MS,
               cover=(RETAIL, FEED_IN))  # fmt: skip
    tid, at = lone(m, "s", 100, 0)
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    hand_over(m, settler, "s")  # the seller's edge posts its readings for its own lone-statement trade
    before = balance(m, "s")
    act, rule = at + int(WAIT_MS * LONE_FROM), at + int(WAIT_MS * LONE_RULE)
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and "may still state" in settler.decision(tid)["why"]  # type: ignore[index]
    m.pass_time(act - 1)  # not before its part of the wait: the buyer may still state
    seen = final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert adapter.sent == []
    m.pass_time(act)  # metered now, but the buyer's readings are awaited until LONE_RULE
    seen = final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and "the buyer's metering" in settler.decision(tid)["why"]  # type: ignore[index]
    m.pass_time(rule)
    final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    [(_, kind, body, _)] = adapter.sent
    assert (kind, body) == (
        "settle",
        {"trade": tid, "delivered": 100, "seller_short": 300, "buyer_short": 300},
    )
    done = query.settlement(m.chain.state, tid)
    assert done is not None and done["settlement"]["basis"] == "dso"
    assert done["settlement"]["compensation"]["amount"] == 0
    assert balance(m, "s") - before == 100 * PRICE  # not 100 x PRICE + 300 x (RETAIL - PRICE) lapsed
    assert settler.decision(tid)["rule"] == "seller metered only"  # type: ignore[index]
    # the seller's repeat after the wait changes nothing: the trade is settled
    result = m.chain.sign_and_submit(m.anonyms["s"], "settle", {"trade": tid, "delivered": 100, "short": 0},
                                     at + WAIT_MS + 1)  # fmt: skip
    assert not result.ok and result.reason.value == "already-settled"


def test_a_buyers_lone_zero_against_a_downed_seller_settles_from_both_meters() -> None:
    """The mirror: the seller is down past the wait (its statement never comes, its sealed readings reach the
    DSO); the buyer states 0, short 0. Lapsed it would pay nothing and be paid 400 x (retail - price); the DSO
    settles the 400 both meters show, no compensation."""
    readings = {"s": ramp(400.0, export=True), "b": ramp(400.0, export=False)}
    m = market({("s", "b"): 400}, {}, readings=readings, wait_ms=WAIT_MS, cover=(RETAIL, FEED_IN))
    tid, at = lone(m, "b", 0, 0)
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    before = balance(m, "b")
    asyncio.run(settler.settle_due())
    assert adapter.sent == []
    m.pass_time(at + int(WAIT_MS * LONE_FROM))
    final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    [(_, _, body, _)] = adapter.sent
    assert body == {"trade": tid, "delivered": 400, "seller_short": 0, "buyer_short": 0}
    assert balance(m, "b") - before == -400 * PRICE
    assert query.settlement(m.chain.state, tid)["settlement"]["basis"] == "dso"  # type: ignore[index]


def test_a_lone_statement_the_other_party_joins_in_time_settles_by_the_parties() -> None:
    """The DSO does not pre-empt an agreement: the buyer states first, the seller agrees before LONE_FROM of the
    wait; the trade settles on their word and the DSO sends nothing, then or later."""
    readings = {"s": ramp(400.0, export=True), "b": ramp(400.0, export=False)}
    m = market({("s", "b"): 400}, {}, readings=readings, wait_ms=WAIT_MS, cover=(RETAIL, FEED_IN))
    tid, at = lone(m, "b", 400, 0)
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and tid in settler.pending
    m.do(
        m.anonyms["s"],
        "settle",
        {"trade": tid, "delivered": 400, "short": 0},
        at + int(WAIT_MS * LONE_FROM) - 1,
    )
    seen = final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    m.pass_time(at + WAIT_MS)
    final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and settler.pending == {} and settler.sealed == {}
    done = query.settlement(m.chain.state, tid)
    assert done is not None and done["state"] == "settled" and done["settlement"]["basis"] != "dso"


def test_on_a_sealed_chain_a_silent_party_that_committed_is_left_to_the_withheld_rule() -> None:
    """With sealed_statements a party that committed and keeps its reveal back is taken at its worst by the
    contract (`market_sealed.withheld`), which no metering improves on for the party that revealed: the DSO
    leaves that trade alone; the edge posts nothing for it either."""
    m = market({("s", "b"): 400}, {}, readings={"s": ramp(100.0, export=True)}, wait_ms=WAIT_MS,
               cover=(RETAIL, FEED_IN), params={"sealed_statements": 1})  # fmt: skip
    tid, salt = m.trade_id("s", "b"), bytes(32)
    for mg in ("s", "b"):
        seal = seal_of(m.chain.genesis.chain, tid, m.anonyms[mg].public, 100, 0, salt)
        m.do(m.anonyms[mg], "settle", {"trade": tid, "seal": seal}, max(m.now, END_MS))
    m.do(m.anonyms["s"], "settle", {"trade": tid, "delivered": 100, "short": 0, "salt": salt})
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "stated" and list(where["statements"]) == ["seller"]
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    m.pass_time(int(where["deadline"]) - 1)
    final_blocks(m, settler)
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and settler.pending == {}
    assert readings_needed(query.trades(m.chain.state, 9), m.anonyms["s"].public) == []


def test_on_a_sealed_chain_the_dso_meters_a_commitment_whose_counterparty_never_committed() -> None:
    """The lab's chains seal statements: the seller commits, the buyer (Unprovable) never does. After the
    commit deadline the seller's reveal and its repeat would lapse at once (buyer paying 300 Wh of
    compensation); the DSO meters the trade from LONE_FROM of the commit window instead: 100, no
    compensation, and the seller's late reveal is refused as settled."""
    m = market({("s", "b"): 400}, {}, readings={"s": ramp(100.0, export=True)}, wait_ms=WAIT_MS,
               cover=(RETAIL, FEED_IN), params={"sealed_statements": 1})  # fmt: skip
    tid, salt = m.trade_id("s", "b"), bytes(32)
    seal = seal_of(m.chain.genesis.chain, tid, m.anonyms["s"].public, 100, 0, salt)
    m.do(m.anonyms["s"], "settle", {"trade": tid, "seal": seal}, max(m.now, END_MS))
    at = m.chain.tip.time
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "open" and where["deadline"] == at + WAIT_MS
    assert readings_needed(query.trades(m.chain.state, 9), m.anonyms["s"].public) == [tid]
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    hand_over(m, settler, "s")
    m.pass_time(at + int(WAIT_MS * LONE_FROM) - 1)
    seen = final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert adapter.sent == []  # the buyer may still commit
    m.pass_time(at + int(WAIT_MS * LONE_RULE))
    final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 100, "seller_short": 300, "buyer_short": 300}
    ]
    done = query.settlement(m.chain.state, tid)
    assert done is not None and done["settlement"]["compensation"]["amount"] == 0
    late = m.chain.sign_and_submit(m.anonyms["s"], "settle", {"trade": tid, "delivered": 100, "short": 0,
                                                              "salt": salt}, at + WAIT_MS)  # fmt: skip
    assert not late.ok
