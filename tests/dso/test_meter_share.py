"""The DSO shares a party's metered energy over its trades by what its counterparties' meters prove (review11
F2), on a real MGMC chain (tests/dso's `market`: `LocalChain`, genesis `settle_by_both`, sealed PCC readings)
through the DSO node's `DisputeSettler`, its settles sent to that chain.

R11's case: buyer b bought 500 Wh from s and 500 from c; s delivered 500 (its only trade), c nothing; b
imported 500. Every party states as its edge does (`pcc_readings.statement_wh`: b 250 on each, pro rata;
it sees only its own meter), so both trades are disputed. Before, the DSO vouched 250 on s -> b (b's pro-rata
share): s was paid for half of what three meters agree it delivered, and a buyer could arrange that with a
colluding seller that delivers nothing. Now s -> b settles 500 and c -> b 0, and the mirror (a seller whose
second buyer took nothing) likewise. A counterparty whose readings are not at the DSO is waited for until
the dispute's deadline, then taken at what is least in its favour (a seller delivered nothing, a buyer took
all it bought), so that withholding readings never buys back R11's outcome."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_dso.dispute_node import ReadingsNotNeeded
from peergrid_dso.dispute_shares import LEAST
from peergrid_dso.disputes import Vouched, read_nodes, resolve
from peergrid_edge.pcc_readings import statement_wh
from peergrid_ledger import query
from peergrid_ledger.contracts.market_state import compensation

from .test_disputes import CLOCK, PRICE, Market, T, chain_time, market, ramp, sealed_buckets
from .test_disputes_node import final_blocks, hand_over, settler_for

WAIT_MS = 120_000
RETAIL, FEED_IN = 300, 50


def edge_says(readings: list[tuple[float, float, float]], party: str, quantity: int, total: int) -> int:
    """What the party's edge states for a trade from its own sealed leaves (pro rata over its agreed total)."""
    leaves = [leaf for bucket in sealed_buckets(readings).values() for leaf in bucket]
    return statement_wh(leaves, CLOCK.window(T), party, quantity, total, CLOCK.max_gap_ms)


def balance(m: Market, mg: str) -> int:
    return query.balance(m.chain.state, m.anonyms[mg].public)


def r11(cover: tuple[int, int] | None = None, b_imports: float = 500.0) -> Market:
    readings = {
        "s": ramp(500.0, export=True),
        "c": ramp(0.0, export=True),
        "b": ramp(b_imports, export=False),
    }
    b_says = edge_says(readings["b"], "buyer", 500, 1000)
    statements = {("s", "b"): (b_says, 500), ("c", "b"): (b_says, 0)}
    return market(
        {("s", "b"): 500, ("c", "b"): 500}, statements, readings=readings, wait_ms=WAIT_MS, cover=cover
    )


def test_r11_the_seller_that_delivered_is_paid_for_all_of_it_on_the_chain() -> None:
    m = r11()
    assert edge_says(ramp(500.0, export=False), "buyer", 500, 1000) == 250  # b's honest pro-rata statement
    s_b, c_b = m.trade_id("s", "b"), m.trade_id("c", "b")
    assert {query.settlement(m.chain.state, t)["state"] for t in (s_b, c_b)} == {"disputed"}  # type: ignore[index]
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    for mg in ("s", "c", "b"):
        hand_over(m, settler, mg)
    before = {mg: balance(m, mg) for mg in ("s", "c", "b")}
    asyncio.run(settler.settle_due())
    assert sorted((body["trade"], body["delivered"]) for _, _, body, _ in adapter.sent) == sorted(
        [(s_b, 500), (c_b, 0)]
    )
    for tid, delivered in ((s_b, 500), (c_b, 0)):
        settled = query.settlement(m.chain.state, tid)
        assert settled is not None and settled["state"] == "settled"
        assert settled["settlement"]["delivered"] == delivered
    assert balance(m, "s") - before["s"] == 500 * PRICE == before["b"] - balance(m, "b")
    assert balance(m, "c") == before["c"]
    decision = settler.decision(s_b)
    assert decision is not None and decision["buyer"]["share_wh"] == 500
    assert decision["buyer"]["shared_by"] == "counterparties' meters"


def test_r11_mirror_the_buyer_that_took_is_charged_for_all_it_took() -> None:
    """s sold 500 to b and 500 to c and exported 500; b imported 500, c nothing. s's edge states 250 on each."""
    readings = {"s": ramp(500.0, export=True), "b": ramp(500.0, export=False), "c": ramp(0.0, export=False)}
    s_says = edge_says(readings["s"], "seller", 500, 1000)
    assert s_says == 250
    statements = {("s", "b"): (500, s_says), ("s", "c"): (0, s_says)}
    m = market({("s", "b"): 500, ("s", "c"): 500}, statements, readings=readings)
    found = {
        buyer: resolve(m.chain.state, m.trade_id("s", buyer), CLOCK, m.node_of(), m.sealed, chain_time(m))
        for buyer in ("b", "c")
    }
    assert isinstance(found["b"], Vouched) and isinstance(found["c"], Vouched)
    assert (found["b"].seller.share_wh, found["b"].delivered) == (500, 500)  # type: ignore[union-attr]
    assert (found["c"].seller.share_wh, found["c"].delivered) == (0, 0)  # type: ignore[union-attr]


def test_a_counterparty_not_metered_yet_is_waited_for_then_the_share_is_pro_rata() -> None:
    """c's readings are not at the DSO: s -> b waits (saying for whom and until when) rather than settling on
    whichever readings came first; when they come it settles 500. If they never come (c withholds them, as a
    seller colluding with b would), at the deadline c is taken to have delivered nothing of b's import: 500
    again, not the 250 of the agreed quantities that withholding would have bought the pair."""
    for c_comes in (True, False):
        m = r11()
        s_b = m.trade_id("s", "b")
        settler, adapter, _ = settler_for(m)
        seen = final_blocks(m, settler)
        hand_over(m, settler, "s")
        hand_over(m, settler, "b")
        asyncio.run(settler.settle_due())
        waiting = settler.decision(s_b)
        assert waiting is not None and waiting["outcome"] == "unresolved" and adapter.sent == []
        assert "the buyer's counterparty" in waiting["why"] and "not at the DSO" in waiting["why"]
        statements = query.settlement(m.chain.state, s_b)["statements"]  # type: ignore[index]
        assert waiting["until_ms"] == max(int(s["time"]) for s in statements.values()) + WAIT_MS
        if c_comes:
            hand_over(m, settler, "c")
        else:
            m.pass_time(waiting["until_ms"])
            final_blocks(m, settler, seen)
        asyncio.run(settler.settle_due())
        sent = {body["trade"]: body["delivered"] for _, _, body, _ in adapter.sent}
        assert sent[s_b] == 500
        done = settler.decision(s_b)
        assert done is not None and done["settled"]
        assert done["buyer"]["shared_by"] == ("counterparties' meters" if c_comes else LEAST)


def test_without_the_chains_time_a_missing_counterparty_is_not_waited_for() -> None:
    """Without `ChainTime` (as an MGMC checks its own statement) there is no deadline to wait for: the share is
    the metering rule's for what is metered, pro rata where a counterparty is not (b's 250, its statement)."""
    m = r11()
    sealed = {k: v for k, v in m.sealed.items() if k[0] != m.nodes["c"].public}
    decision = resolve(m.chain.state, m.trade_id("s", "b"), CLOCK, m.node_of(), sealed)
    assert isinstance(decision, Vouched) and decision.delivered == 250
    assert decision.buyer is not None and decision.buyer.shared_by == "agreed quantities"
    assert decision.seller is not None and decision.seller.shared_by == "counterparties' meters"
    assert decision.buyer.share_wh == edge_says(ramp(500.0, export=False), "buyer", 500, 1000)


def test_a_buyer_that_covered_the_missing_delivery_from_the_grid_is_compensated_by_the_seller_short() -> None:
    """Priced (market.tariff): b imported 1000, c's 500 from the grid at retail. b's statements (500 each)
    agree with s's, so only c -> b is disputed; b's share of it is the 500 its meter shows beyond what s
    proves, so c alone is short and pays b the excess at retail - price, as pro rata gave. (Shares purely
    in proportion to the proofs would have made b as short as c: no compensation.)"""
    m = r11(cover=(RETAIL, FEED_IN), b_imports=1000.0)
    s_b, c_b = m.trade_id("s", "b"), m.trade_id("c", "b")
    assert query.settlement(m.chain.state, s_b)["state"] == "settled"  # type: ignore[index]
    assert query.settlement(m.chain.state, c_b)["state"] == "disputed"  # type: ignore[index]
    # s -> b agreed: it takes its settled 500 of b's import on the parties' word, s's meter is not read (D10)
    assert m.nodes["s"].public not in read_nodes(m.chain.state, c_b, m.node_of())
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    for mg in ("c", "b"):
        hand_over(m, settler, mg)
    s_node = m.nodes["s"].public
    with pytest.raises(ReadingsNotNeeded):  # offered all the same, they are not kept
        settler.offer_readings(s_node, *next((k[1], v) for k, v in m.sealed.items() if k[0] == s_node))
    asyncio.run(settler.settle_due())
    [(_, _, body, _)] = adapter.sent
    assert body == {"trade": c_b, "delivered": 0, "seller_short": 500, "buyer_short": 0}
    settled = query.settlement(m.chain.state, c_b)
    assert settled is not None and settled["state"] == "settled"
    payer, owed = compensation(PRICE, 500, 0, RETAIL, FEED_IN)
    assert payer == "seller" and settled["settlement"]["compensation"]["amount"] == owed > 0


@settings(max_examples=12, deadline=None)
@given(
    quantities=st.lists(st.integers(0, 800), min_size=4, max_size=4).filter(any),
    energies=st.lists(st.integers(0, 2_000), min_size=4, max_size=4),
    in_full=st.booleans(),
)
def test_two_sellers_two_buyers_the_dso_never_vouches_more_than_a_meter_shows(
    quantities: list[int], energies: list[int], in_full: bool
) -> None:
    """s1, s2 sell to b1, b2 (some pairs may not trade), every trade disputed, every MG metered (exactly: readings
    on the window's boundaries). Whatever the meters show, what the DSO vouches is never above a trade's
    quantity, never adds up to more than any party's meter shows over its trades, does not depend on the order
    the DSO is handed nodes and readings in, and is each trade's quantity when every MG metered its whole
    agreed total (`in_full`)."""
    pairs = [("s1", "b1"), ("s1", "b2"), ("s2", "b1"), ("s2", "b2")]
    sales = {pair: q for pair, q in zip(pairs, quantities, strict=True) if q}
    mgs = ["s1", "s2", "b1", "b2"]
    if in_full:
        energies = [sum(q for pair, q in sales.items() if mg in pair) for mg in mgs]
    start, end = CLOCK.window(T)
    times = [start / 1000 - 5, start / 1000, end / 1000, end / 1000 + 5]

    def meter(wh: int, export: bool) -> list[tuple[float, float, float]]:
        moved = [7 + (wh if t >= end / 1000 else 0) for t in times]
        return [(t, c, 0) if export else (t, 0, c) for t, c in zip(times, moved, strict=True)]

    readings = {mg: meter(e, mg.startswith("s")) for mg, e in zip(mgs, energies, strict=True)}
    readings = {mg: r for mg, r in readings.items() if any(mg in pair for pair in sales)}
    m = market(sales, {pair: (0, q) for pair, q in sales.items()}, readings=readings)
    vouched: dict[tuple[str, str], int] = {}
    for pair in sales:
        tid = m.trade_id(*pair)
        decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
        assert isinstance(decision, Vouched), decision
        again = resolve(m.chain.state, tid, CLOCK, dict(reversed(m.node_of().items())),
                        dict(reversed(m.sealed.items())), chain_time(m))  # fmt: skip
        assert again == decision
        vouched[pair] = decision.delivered
        assert 0 <= decision.delivered <= sales[pair]
    for mg, energy in zip(mgs, energies, strict=True):
        assert sum(v for pair, v in vouched.items() if mg in pair) <= energy
    if in_full:
        assert vouched == sales


def exact(wh: int, export: bool) -> list[tuple[float, float, float]]:
    """A PCC meter read on interval T's boundaries (and once outside each): exactly `wh` over the window."""
    start, end = CLOCK.window(T)
    times = [start / 1000 - 5, start / 1000, end / 1000, end / 1000 + 5]
    moved = [7 + (wh if t >= end / 1000 else 0) for t in times]
    return [(t, c, 0) if export else (t, 0, c) for t, c in zip(times, moved, strict=True)]


@settings(max_examples=15, deadline=None)
@given(
    q=st.lists(st.integers(1, 800), min_size=2, max_size=2),
    wh=st.lists(st.integers(0, 1_500), min_size=3, max_size=3),
    buyer_withholds=st.booleans(),
)
def test_withholding_readings_never_lowers_what_a_withholder_or_its_partner_pays(
    q: list[int], wh: list[int], buyer_withholds: bool
) -> None:
    """Past the deadline, against the same trade metered: a buyer b that withholds its readings (s also sold
    to d) is never charged less on s -> b; a seller c that withholds (b also bought from s) never lowers what
    s is paid on s -> b. The statements do not bind (the seller asks its whole quantity)."""
    if buyer_withholds:  # s sells q[0] to b and q[1] to d
        sales, readings = {("s", "b"): q[0], ("s", "d"): q[1]}, {"s": exact(wh[0], True)}
        readings |= {"b": exact(wh[1], False), "d": exact(wh[2], False)}
        withholder = "b"
    else:  # b buys q[0] from s and q[1] from c
        sales, readings = {("s", "b"): q[0], ("c", "b"): q[1]}, {"b": exact(wh[0], False)}
        readings |= {"s": exact(wh[1], True), "c": exact(wh[2], True)}
        withholder = "c"
    m = market(sales, {("s", "b"): (0, q[0])}, readings=readings, wait_ms=WAIT_MS)
    m.pass_time(m.chain.tip.time + WAIT_MS)
    tid = m.trade_id("s", "b")
    metered = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    kept = {k: v for k, v in m.sealed.items() if k[0] != m.nodes[withholder].public}
    withheld = resolve(m.chain.state, tid, CLOCK, m.node_of(), kept, chain_time(m))
    assert isinstance(metered, Vouched) and isinstance(withheld, Vouched)
    assert withheld.delivered >= metered.delivered
    assert withheld.rule == ("seller metered only" if buyer_withholds else "both metered")
