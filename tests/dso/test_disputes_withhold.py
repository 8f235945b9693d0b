"""review12 F1: a seller that withholds its sealed readings from the DSO never ends better off than metered.

Past a dispute's deadline a seller the DSO could have metered but did not (readings withheld, missing, sealed
late, ...) settles at delivered 0 and owns the whole quantity as its shortfall; before, "buyer metered only"
paid it the buyer's share and named both sides the same gap (no compensation). The real DisputeSettler over
the real chain (tests/dso harness). Price 200, retail 300, feed-in 50."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from peergrid_dso.disputes import Vouched, resolve
from peergrid_ledger import query

from .test_disputes import CLOCK, END_MS, chain_time, market, ramp
from .test_disputes_node import final_blocks, hand_over, settler_for
from .test_disputes_time import deadline, disputed

RETAIL, FEED_IN, WAIT = 300, 50, 120_000


def settle(
    exported: float,
    imported: float,
    seller_says: tuple[int, int],
    hands_over: set[str],
    meterless: frozenset[str] = frozenset(),
    buyer_says: tuple[int, int] | None = None,
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """One 500 Wh trade disputed and settled by the DSO (past the deadline when it must wait): the seller's
    balance change, the DSO's decision and the settlement. The buyer states as the edge does (its metered
    import, the rest its own short) unless `buyer_says` (a meterless buyer's confirmed dispatch)."""
    readings = {"s": ramp(exported, export=True), "b": ramp(imported, export=False)}
    m = market({("s", "b"): 500}, {}, readings=readings, wait_ms=WAIT, cover=(RETAIL, FEED_IN))
    tid = m.trade_id("s", "b")
    before = query.balance(m.chain.state, m.anonyms["s"].public)
    bought, short = buyer_says or (min(500, int(imported)), 500 - min(500, int(imported)))
    m.do(m.anonyms["b"], "settle", {"trade": tid, "delivered": bought, "short": short}, max(m.now, END_MS))
    m.do(m.anonyms["s"], "settle", {"trade": tid, "delivered": seller_says[0], "short": seller_says[1]})
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "disputed"
    settler, adapter, _ = settler_for(m)
    settler.meterless = frozenset(m.anonyms[mg].public for mg in meterless)
    seen = final_blocks(m, settler)
    for mg in sorted(hands_over):
        hand_over(m, settler, mg)
    asyncio.run(settler.settle_due())
    if not adapter.sent:
        m.pass_time(settler.deadlines[tid])
        final_blocks(m, settler, seen)
        asyncio.run(settler.settle_due())
    decision = settler.decision(tid)
    done = query.settlement(m.chain.state, tid)
    assert decision is not None and decision["settled"], decision
    assert done is not None and done["state"] == "settled"
    return query.balance(m.chain.state, m.anonyms["s"].public) - before, decision, done["settlement"]


def test_a_seller_that_withholds_its_readings_is_settled_at_zero_and_pays_for_the_whole_quantity() -> None:
    """R12's case: exported 300 of 500, the buyer imported 400. Metered the seller nets 300 x 200 - 100 x
    (300 - 200) = +50,000; withholding it stated (500, 0) and used to net +80,000. Now 0 delivered, it owns
    all 500 as its shortfall, the buyer its own 100: it pays 400 x 100 = 40,000."""
    metered, honest, _ = settle(300.0, 400.0, (300, 200), {"s", "b"})
    assert honest["rule"] == "both metered" and metered == 50_000
    withheld, decision, done = settle(300.0, 400.0, (500, 0), {"b"})
    assert decision["rule"] == "seller not metered" and decision["delivered"] == 0
    assert (decision["seller_short"], decision["buyer_short"]) == (500, 100)
    assert done["delivered"] == 0 and done["compensation"]["payer"] == "seller"
    assert done["compensation"]["amount"] == 400 * (RETAIL - 200)
    assert withheld == -40_000 < metered


def test_a_seller_that_withholds_against_a_buyer_that_withholds_too_is_paid_nothing() -> None:
    """Neither metered, the seller not meterless: nothing proven delivered; the buyer, unmetered, owns the
    whole gap too: equal shortfalls, no compensation (the DSO proves neither side at fault)."""
    gain, decision, done = settle(300.0, 400.0, (500, 0), set())
    assert decision["rule"] == "seller not metered" and done["delivered"] == 0
    assert (decision["seller_short"], decision["buyer_short"]) == (500, 500)
    assert done["compensation"]["amount"] == 0 and gain == 0


@settings(max_examples=12, deadline=None)
@given(
    exported=st.integers(0, 500),
    imported=st.integers(0, 500),
    says=st.integers(0, 500),
)
def test_withholding_never_pays_a_seller_more_than_being_metered(
    exported: int, imported: int, says: int
) -> None:
    """Whatever it exported, its buyer imported and it states (its own short the rest), a seller that hands its
    readings over ends no worse than one that withholds them."""
    assume(exported != imported and says != imported)  # statements that agree settle without the DSO
    metered, _, _ = settle(float(exported), float(imported), (exported, 500 - exported), {"s", "b"})
    withheld, decision, _ = settle(float(exported), float(imported), (says, 500 - says), {"b"})
    assert decision["rule"] == "seller not metered" and withheld <= metered


def test_a_meterless_seller_keeps_the_buyer_metered_rule() -> None:
    """A seller the DSO's config names meterless has no readings to withhold: past the deadline it is settled
    on the buyer's metered share (capped by both statements), as before F1's fix."""
    _, decision, done = settle(300.0, 400.0, (450, 50), {"b"}, meterless=frozenset({"s"}))
    assert decision["rule"] == "buyer metered only" and done["delivered"] == 400
    # ... and its readings would not count even if it had some: never metered, it cannot pick when they do
    _, again, _ = settle(300.0, 400.0, (450, 50), {"s", "b"}, meterless=frozenset({"s"}))
    assert again["rule"] == "buyer metered only" and again["delivered"] == 400


def test_without_the_chains_time_an_unmetered_seller_leaves_the_trade_unresolved() -> None:
    """The deadline rule needs the chain's time: without it nothing is settled at 0."""
    readings = {"s": ramp(300.0, export=True), "b": ramp(400.0, export=False)}
    m = market({("s", "b"): 500}, {}, readings=readings, wait_ms=WAIT, cover=(RETAIL, FEED_IN))
    tid = m.trade_id("s", "b")
    m.do(m.anonyms["b"], "settle", {"trade": tid, "delivered": 400, "short": 100}, max(m.now, END_MS))
    m.do(m.anonyms["s"], "settle", {"trade": tid, "delivered": 500, "short": 0})
    sealed = {k: v for k, v in m.sealed.items() if k[0] != m.nodes["s"].public}
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), sealed)
    assert not isinstance(decision, Vouched) and "seller's metering" in decision.why


@settings(max_examples=25, deadline=None)
@given(
    seller_wh=st.integers(0, 700),
    buyer_wh=st.integers(0, 700),
    by_seller=st.integers(0, 500),
    by_buyer=st.integers(0, 500),
    give=st.sampled_from([(True, True), (True, False), (False, True), (False, False)]),
    meterless_seller=st.booleans(),
)
def test_the_deadline_rule_is_the_model(
    seller_wh: int,
    buyer_wh: int,
    by_seller: int,
    by_buyer: int,
    give: tuple[bool, bool],
    meterless_seller: bool,
) -> None:
    """The deadline's rules as a model: a seller not metered is 0 unless meterless (then the buyer's rule or
    the lower statement; a meterless seller's readings never count, given or not)."""
    if by_seller == by_buyer:
        by_buyer = (by_buyer + 1) % 501  # they must disagree for a dispute
    readings = {"s": ramp(float(seller_wh), export=True), "b": ramp(float(buyer_wh), export=False)}
    m = disputed(readings, by_buyer, by_seller)
    for mg, given_ in zip(("s", "b"), give, strict=True):
        if not given_:
            m.sealed = {k: v for k, v in m.sealed.items() if k[0] != m.nodes[mg].public}
    m.pass_time(deadline(m))
    meterless = {m.anonyms["s"].public} if meterless_seller else set()
    decision = resolve(
        m.chain.state, m.trade_id("s", "b"), CLOCK, m.node_of(), m.sealed, chain_time(m), meterless
    )
    assert isinstance(decision, Vouched)
    s_share, b_share = min(500, seller_wh), min(500, buyer_wh)
    seller_metered, buyer_metered = give[0] and not meterless_seller, give[1]
    if seller_metered:
        model = min(s_share, b_share) if buyer_metered else min(s_share, by_seller)
    elif not meterless_seller:
        model = 0
    else:
        model = min(b_share, by_buyer, by_seller) if buyer_metered else min(by_seller, by_buyer)
    assert decision.delivered == model
