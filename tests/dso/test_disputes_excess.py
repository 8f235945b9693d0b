"""A party's agreed and disputed trades of one interval together never settle more than its meter shows
(review12 F2), on a real MGMC chain (tests/dso's `market`) through the resolver and the DSO node.

R12's case: s sold 500 Wh to b1 and 500 to b2 and exported 500; b1 imported 250, b2 500 (250 of it from the
grid). Every party states as its edge does (`pcc_readings.statement_wh`): s 250 on each (pro rata), b1 250,
b2 500. s -> b1 agrees and settles 250 on their word; s -> b2 is disputed. Shared by the meters over both of
s's trades, s's share of s -> b2 was 333 (b1's meter proves 250, b2's 500: 500 × 500 / 750), so s settled
250 + 333 = 583 Wh for an export of 500. Now the agreed trade's 250 comes off s's export first and the disputed
trade shares the rest: 250, and s's total is its 500. Where the dispute comes before its sibling settles, the
DSO waits for the sibling until the dispute's deadline, then counts it at the most its statements can still
settle it at (s's own 250)."""

from __future__ import annotations

import asyncio
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_dso.dispute_node import ReadingsNotNeeded
from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_ledger import query

from .test_disputes import CLOCK, Market, chain_time, market, ramp
from .test_disputes_node import final_blocks, hand_over, settler_for
from .test_meter_share import edge_says

WAIT_MS = 120_000
READINGS = {"s": ramp(500.0, export=True), "b1": ramp(250.0, export=False), "b2": ramp(500.0, export=False)}


def settled_wh(m: Market, mg: str, side: str) -> int:
    """What the MG's trades of interval T settled at in all, on its `side`."""
    me = m.anonyms[mg].public
    return sum(
        int(t["settlement"]["delivered"])
        for _, t in query.trades(m.chain.state, 9)
        if t[side] == me and t["settlement"] is not None
    )


def r12(statements: dict[tuple[str, str], tuple[int, int]] | None = None) -> Market:
    s_says = edge_says(READINGS["s"], "seller", 500, 1000)
    b1_says = edge_says(READINGS["b1"], "buyer", 500, 500)
    b2_says = edge_says(READINGS["b2"], "buyer", 500, 500)
    assert (s_says, b1_says, b2_says) == (250, 250, 500)  # what each edge states
    if statements is None:
        statements = {("s", "b1"): (b1_says, s_says), ("s", "b2"): (b2_says, s_says)}
    return market({("s", "b1"): 500, ("s", "b2"): 500}, statements, readings=READINGS, wait_ms=WAIT_MS)


def test_r12_f2_agreed_and_disputed_trades_settle_no_more_than_the_sellers_export() -> None:
    m = r12()
    s_b1, s_b2 = m.trade_id("s", "b1"), m.trade_id("s", "b2")
    assert query.settlement(m.chain.state, s_b1)["settlement"]["delivered"] == 250  # type: ignore[index]
    assert query.settlement(m.chain.state, s_b2)["state"] == "disputed"  # type: ignore[index]
    decision = resolve(m.chain.state, s_b2, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched) and decision.seller is not None and decision.buyer is not None
    assert (decision.seller.taken_wh, decision.seller.share_wh, decision.buyer.share_wh) == (250, 250, 500)
    assert decision.delivered == 250  # was 333: 583 Wh settled for s's 500
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    for mg in ("s", "b2"):  # not b1: s -> b1 agreed, so its meter is not read (D10)
        hand_over(m, settler, mg)
    asyncio.run(settler.settle_due())
    assert [(body["trade"], body["delivered"]) for _, _, body, _ in adapter.sent] == [(s_b2, 250)]
    assert settled_wh(m, "s", "seller") == 500
    shown = settler.decision(s_b2)
    assert shown is not None and shown["seller"]["taken_wh"] == 250


def test_a_dispute_before_its_sibling_settles_waits_for_it_then_fits_the_meter() -> None:
    """s -> b2 is disputed while s -> b1 carries only s's statement: the DSO waits (saying for which trade),
    and settles s -> b2 at 250 once b1 states and s -> b1 settles; if b1 never states, at the dispute's
    deadline s -> b1 counts at s's own statement (the most it can still settle at) and s -> b2 settles 250
    again, and the DSO settles s -> b1 (on one statement past its part of the wait) at what s's meter left,
    250: s stays at its meter's 500."""
    for b1_states in (True, False):
        m = r12({("s", "b2"): (500, 250)})
        s_b1, s_b2 = m.trade_id("s", "b1"), m.trade_id("s", "b2")
        m.do(m.anonyms["s"], "settle", {"trade": s_b1, "delivered": 250})
        settler, adapter, _ = settler_for(m)
        seen = final_blocks(m, settler)
        for mg in ("s", "b2"):  # not b1: s -> b1 is not disputed, its meter is not read (D10)
            hand_over(m, settler, mg)
        asyncio.run(settler.settle_due())
        waiting = settler.decision(s_b2)
        assert waiting is not None and waiting["outcome"] == "unresolved" and adapter.sent == []
        assert f"its trade {s_b1.hex()[:16]}… with the seller is not settled yet" in waiting["why"]
        if b1_states:
            m.do(m.anonyms["b1"], "settle", {"trade": s_b1, "delivered": 250})
        else:
            m.pass_time(waiting["until_ms"])
        seen = final_blocks(m, settler, seen)  # the sibling's settle (or the deadline) wakes the dispute
        asyncio.run(settler.settle_due())
        sent = sorted((body["trade"], body["delivered"]) for _, _, body, _ in adapter.sent)
        # b1 silent: s -> b1 stood on s's statement past its part of the wait, so the DSO meters it too
        # (review13 F4, `takeup.LONE_FROM`): from s's meter, what s -> b2 left, 250 - not b1's lapse
        assert sent == (sorted([(s_b2, 250)]) if b1_states else sorted([(s_b2, 250), (s_b1, 250)]))
        assert settled_wh(m, "s", "seller") == 500


def test_without_the_chains_time_an_unsettled_sibling_counts_at_once() -> None:
    """Without `ChainTime` there is no deadline to wait for: the sibling counts at the most its statements can
    still settle it at at once (s's 250; before any statement its whole 500)."""
    m = r12({("s", "b2"): (500, 250)})
    s_b1, s_b2 = m.trade_id("s", "b1"), m.trade_id("s", "b2")
    before = resolve(m.chain.state, s_b2, CLOCK, m.node_of(), m.sealed)
    assert isinstance(before, Vouched) and before.seller is not None
    assert (before.seller.taken_wh, before.delivered) == (500, 0)
    m.do(m.anonyms["s"], "settle", {"trade": s_b1, "delivered": 250})
    stated = resolve(m.chain.state, s_b2, CLOCK, m.node_of(), m.sealed)
    assert isinstance(stated, Vouched) and stated.seller is not None
    assert (stated.seller.taken_wh, stated.delivered) == (250, 250)
    waits = resolve(m.chain.state, s_b2, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(waits, Unresolved) and waits.until_ms is not None


def test_the_mirror_a_buyer_is_settled_for_no_more_than_it_imported() -> None:
    """b bought 500 from s1 and 500 from s2 and imported 500; s1 exported 250 (its only trade), s2 500. b's edge
    states 250 on each; s1 agrees at 250, s2 states 500: disputed. b's share of s2 -> b is the 250 its agreed
    trade left, not 333: b pays for 500 Wh, its import."""
    readings = {
        "b": ramp(500.0, export=False),
        "s1": ramp(250.0, export=True),
        "s2": ramp(500.0, export=True),
    }
    b_says = edge_says(readings["b"], "buyer", 500, 1000)
    m = market(
        {("s1", "b"): 500, ("s2", "b"): 500},
        {("s1", "b"): (b_says, 250), ("s2", "b"): (b_says, 500)},
        readings=readings,
        wait_ms=WAIT_MS,
    )
    decision = resolve(m.chain.state, m.trade_id("s2", "b"), CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched) and decision.buyer is not None and decision.seller is not None
    assert (decision.buyer.taken_wh, decision.buyer.share_wh, decision.seller.share_wh) == (250, 250, 500)
    assert decision.delivered == 250


SALES = {("s", "b1"): 400, ("s", "b2"): 500, ("s2", "b2"): 300, ("s", "b3"): 200}


@settings(max_examples=25, deadline=None)
@given(
    metered=st.fixed_dictionaries({mg: st.integers(0, 1_200) for mg in ("s", "s2", "b1", "b2", "b3")}),
    concede=st.sets(st.sampled_from(sorted(SALES))),
)
def test_a_partys_trades_never_settle_more_than_its_meter_shows(
    metered: dict[str, int], concede: set[tuple[str, str]]
) -> None:
    """Sellers s (to b1, b2, b3) and s2 (to b2) and the buyers meter any energies; every party states its
    edge's pro-rata share, except that on the trades in `concede` the side with the larger figure states the
    smaller one (never more than its meter: the trade agrees on it), so some trades agree and others are
    disputed. Past the deadline the DSO settles every dispute with all readings in: no trade settles above its
    quantity, and no party is settled in all for more than its meter shows (review12 F2)."""
    readings = {mg: ramp(float(wh), export=mg.startswith("s")) for mg, wh in metered.items()}
    totals = {mg: sum(q for pair, q in SALES.items() if mg in pair) for mg in metered}
    statements = {}
    for (seller, buyer), q in SALES.items():
        by_buyer = edge_says(readings[buyer], "buyer", q, totals[buyer])
        by_seller = edge_says(readings[seller], "seller", q, totals[seller])
        if (seller, buyer) in concede:
            by_buyer = by_seller = min(by_buyer, by_seller)
        statements[(seller, buyer)] = (by_buyer, by_seller)
    m = market(SALES, statements, readings=readings, wait_ms=WAIT_MS)
    m.pass_time(m.chain.tip.time + WAIT_MS)
    settler, _, _ = settler_for(m)
    final_blocks(m, settler)
    for (node, bucket), leaves in sorted(m.sealed.items()):  # each MG posts what a dispute reads (edge E9)
        with contextlib.suppress(ReadingsNotNeeded):
            settler.offer_readings(node, bucket, leaves)
    asyncio.run(settler.settle_due())
    trades = query.trades(m.chain.state, 9)
    assert all(t["settlement"] is not None for _, t in trades)  # every dispute settled
    assert all(0 <= t["settlement"]["delivered"] <= t["quantity"] for _, t in trades)
    for mg, wh in metered.items():
        assert settled_wh(m, mg, "seller" if mg.startswith("s") else "buyer") <= wh


def test_the_order_in_which_the_dso_settles_a_partys_disputes_changes_no_share() -> None:
    """s exported 900: s -> b3 agreed at s's pro-rata 300; s -> b1 and s -> b2 are disputed (b1 proves 600, b2
    100). Whichever the DSO settles first, each settles what it would have settled at alone (the settled one
    shares with the other, it does not leave it the whole rest), and s's total is at most its 900."""
    readings = {
        "s": ramp(900.0, export=True),
        "b1": ramp(600.0, export=False),
        "b2": ramp(100.0, export=False),
        "b3": ramp(300.0, export=False),
    }
    sales = {("s", "b1"): 600, ("s", "b2"): 600, ("s", "b3"): 600}
    s_says = edge_says(readings["s"], "seller", 600, 1800)
    assert s_says == 300
    statements = {("s", "b1"): (600, s_says), ("s", "b2"): (100, s_says), ("s", "b3"): (300, s_says)}
    found = {}
    for first, second in (("b1", "b2"), ("b2", "b1")):
        m = market(sales, statements, readings=readings, wait_ms=WAIT_MS)
        for buyer in (first, second):
            tid = m.trade_id("s", buyer)
            decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
            assert isinstance(decision, Vouched) and decision.seller is not None, decision
            assert decision.seller.taken_wh == 300
            m.do(m.dso, "settle", {"trade": tid, "delivered": decision.delivered})
            found[(first, buyer)] = decision.delivered
        assert settled_wh(m, "s", "seller") <= 900
    # s's 600 left shared by the proofs 600 : 100 (514, 85), each capped by its buyer's import
    assert found[("b1", "b1")] == found[("b2", "b1")] == 514
    assert found[("b1", "b2")] == found[("b2", "b2")] == 85
