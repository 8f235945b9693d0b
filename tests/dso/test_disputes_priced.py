"""The DSO settles a disputed trade whose parties it priced (`market.tariff`) naming both sides' shortfalls
(review11 F1): on a real MGMC chain (`LocalChain`, genesis `settle_by_both`, the tariff sent from the DSO key),
the DSO node's settle carries `seller_short` and `buyer_short` from what it metered, the chain accepts it and
pays the compensation `market_state.compensation` computes, and no money is made or lost. Under the deadline
rules the side that could not be metered owns the rest of the gap. An unpriced trade keeps the old body. A
refusal no retry can cure is recorded once as failed, never retried in a loop.
Property (hypothesis): for every metered/unmetered combination the larger shortfall is agreed − delivered,
a metered side's is agreed − its share, an unmetered side's the whole gap, and the chain accepts the settle."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_dso.dispute_node import DisputeSettler
from peergrid_dso.disputes import Vouched, resolve, to_json
from peergrid_dso.node_chains import Submitted
from peergrid_ledger import query
from peergrid_ledger.contracts.market_state import compensation
from peergrid_ledger.keys import Keypair

from .test_disputes import CLOCK, PRICE, Market, chain_time, market, ramp
from .test_disputes_node import MarketAdapter, final_blocks, hand_over, settler_for

RETAIL, FEED_IN = 300, 50
WAIT_MS = 120_000


def money(m: Market) -> int:
    """Every account's balance on the chain, summed: a settlement moves money, never makes or loses it."""
    accounts = [m.dso, *m.anonyms.values(), *m.nodes.values()]
    return sum(query.balance(m.chain.state, k.public) for k in accounts)


def test_a_priced_trade_delivered_short_is_settled_by_the_dso_with_the_contracts_compensation() -> None:
    """Seller metered 480 of 500 out, buyer 455 in: the DSO settles 455 naming seller_short 20, buyer_short 45;
    the buyer, short more, pays the seller the excess 25 Wh at price − feed-in, as the contract computes."""
    readings = {"s": ramp(480.0, export=True), "b": ramp(455.0, export=False)}
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)}, readings=readings, cover=(RETAIL, FEED_IN))
    tid = m.trade_id("s", "b")
    assert query.settlement(m.chain.state, tid)["state"] == "disputed"  # type: ignore[index]
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    before, balances = money(m), {mg: query.balance(m.chain.state, m.anonyms[mg].public) for mg in ("s", "b")}
    asyncio.run(settler.settle_due())
    [(sender, kind, body, _)] = adapter.sent
    assert (sender, kind) == (m.dso.public, "settle")
    assert body == {"trade": tid, "delivered": 455, "seller_short": 20, "buyer_short": 45}
    settled = query.settlement(m.chain.state, tid)
    assert settled is not None and settled["state"] == "settled"
    payer, owed = compensation(PRICE, 20, 45, RETAIL, FEED_IN)
    assert (payer, owed) == ("buyer", 25 * (PRICE - FEED_IN))
    assert settled["settlement"]["compensation"] == {
        "payer": "buyer",
        "amount": owed,
        "seller_short": 20,
        "buyer_short": 45,
    }
    assert settled["settlement"]["basis"] == "dso" and settled["settlement"]["delivered"] == 455
    after = {mg: query.balance(m.chain.state, m.anonyms[mg].public) for mg in ("s", "b")}
    assert after["b"] - balances["b"] == -(455 * PRICE + owed)
    assert after["s"] - balances["s"] == 455 * PRICE + owed
    assert money(m) == before
    done = settler.decision(tid)
    assert done is not None and done["outcome"] == "settled"
    assert (done["seller_short"], done["buyer_short"]) == (20, 45)


def test_both_honest_and_both_short_by_the_same_settle_with_no_compensation() -> None:
    """review11 F1(a): both meters show 480 of 500 and both state 480 as the edge does (no `short`): the 20 Wh
    nobody owns dispute the trade; the DSO names 20 on each side and the chain settles it (before: refused
    `invalid` at every pass)."""
    readings = {"s": ramp(480.0, export=True), "b": ramp(480.0, export=False)}
    m = market({("s", "b"): 500}, {("s", "b"): (480, 480)}, readings=readings, cover=(RETAIL, FEED_IN))
    tid = m.trade_id("s", "b")
    assert query.settlement(m.chain.state, tid)["state"] == "disputed"  # type: ignore[index]
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    before = money(m)
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 480, "seller_short": 20, "buyer_short": 20}
    ]
    settled = query.settlement(m.chain.state, tid)
    assert settled is not None and settled["state"] == "settled"
    assert settled["settlement"]["compensation"]["amount"] == 0
    assert money(m) == before and settler.pending == {}


def test_an_unpriced_trade_keeps_the_old_body() -> None:
    readings = {"s": ramp(480.0, export=True), "b": ramp(455.0, export=False)}
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)}, readings=readings)
    tid = m.trade_id("s", "b")
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched) and decision.shorts is None
    assert "seller_short" not in to_json(decision) and "buyer_short" not in to_json(decision)
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [{"trade": tid, "delivered": 455}]
    settled = query.settlement(m.chain.state, tid)
    assert settled is not None and "compensation" not in settled["settlement"]


def test_a_buyer_that_withholds_its_readings_owns_the_rest_of_the_gap_at_the_deadline() -> None:
    """The seller metered 400 out of 500 and stated 400; the buyer states 0 and withholds its readings. At the
    deadline the DSO settles the seller's 400 naming seller_short 100 (its meter) and buyer_short 100 (the
    gap): equal, no compensation. Had the seller stated 380 (less than its meter), the buyer owns the 120 gap
    and pays the 20 Wh excess: withholding never makes the buyer's side better than the seller's word."""
    for by_seller, shorts in ((400, (100, 100)), (380, (100, 120))):
        readings = {"s": ramp(400.0, export=True), "b": ramp(400.0, export=False)}
        m = market({("s", "b"): 500}, {("s", "b"): (0, by_seller)}, readings=readings, wait_ms=WAIT_MS,
                   cover=(RETAIL, FEED_IN))  # fmt: skip
        tid = m.trade_id("s", "b")
        settler, adapter, _ = settler_for(m)
        seen = final_blocks(m, settler)
        hand_over(m, settler, "s")
        asyncio.run(settler.settle_due())
        assert adapter.sent == [] and settler.deadlines[tid] is not None
        m.pass_time(settler.deadlines[tid])
        final_blocks(m, settler, seen)
        before = money(m)
        asyncio.run(settler.settle_due())
        [(_, _, body, _)] = adapter.sent
        assert body == {
            "trade": tid,
            "delivered": by_seller,
            "seller_short": shorts[0],
            "buyer_short": shorts[1],
        }
        settled = query.settlement(m.chain.state, tid)
        assert settled is not None and settled["state"] == "settled"
        payer, owed = compensation(PRICE, *shorts, RETAIL, FEED_IN)
        assert settled["settlement"]["compensation"] == {"payer": payer, "amount": owed, "seller_short": shorts[0],
                                                         "buyer_short": shorts[1]}  # fmt: skip
        assert money(m) == before
        assert owed == (0 if shorts[0] == shorts[1] else (shorts[1] - shorts[0]) * (PRICE - FEED_IN))
        assert settler.decision(tid)["rule"] == "seller metered only"  # type: ignore[index]


@settings(max_examples=20, deadline=None)
@given(
    seller_wh=st.integers(0, 700),
    buyer_wh=st.integers(0, 700),
    by_seller=st.integers(0, 500),
    by_buyer=st.integers(0, 500),
    give=st.sampled_from([(True, True), (True, False), (False, True), (False, False)]),
)
def test_the_shortfalls_follow_the_rule_and_the_chain_takes_them_for_every_deadline_case(
    seller_wh: int, buyer_wh: int, by_seller: int, by_buyer: int, give: tuple[bool, bool]
) -> None:
    if by_seller == by_buyer:
        by_buyer = (by_buyer + 1) % 501  # they must disagree for a dispute
    readings = {"s": ramp(float(seller_wh), export=True), "b": ramp(float(buyer_wh), export=False)}
    m = market({("s", "b"): 500}, {("s", "b"): (by_buyer, by_seller)}, readings=readings, wait_ms=WAIT_MS,
               cover=(RETAIL, FEED_IN))  # fmt: skip
    tid = m.trade_id("s", "b")
    for mg, given_ in zip(("s", "b"), give, strict=True):
        if not given_:
            m.sealed = {k: v for k, v in m.sealed.items() if k[0] != m.nodes[mg].public}
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "disputed"
    m.pass_time(max(int(s["time"]) for s in where["statements"].values()) + WAIT_MS)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched) and decision.shorts is not None
    gap = 500 - decision.delivered
    shares = {"s": min(500, seller_wh), "b": min(500, buyer_wh)}
    model = tuple(500 - shares[mg] if given_ else gap for mg, given_ in zip(("s", "b"), give, strict=True))
    assert decision.shorts == model and max(decision.shorts) == gap
    assert all(0 <= short <= 500 for short in decision.shorts)
    before = money(m)
    body: dict[str, Any] = {"trade": tid, "delivered": decision.delivered}
    body["seller_short"], body["buyer_short"] = decision.shorts
    m.do(m.dso, "settle", body)  # asserts the chain accepts it
    settled = query.settlement(m.chain.state, tid)
    assert settled is not None
    payer, owed = compensation(PRICE, *decision.shorts, RETAIL, FEED_IN)
    assert settled["settlement"]["compensation"] == {
        "payer": payer,
        "amount": owed,
        "seller_short": decision.shorts[0],
        "buyer_short": decision.shorts[1],
    }
    assert money(m) == before


class OldBody(MarketAdapter):
    """The adapter over the market's chain, sending the DSO's settle as the node did before (no shortfalls):
    the real chain refuses it `invalid` on a priced trade delivered short, and would at every retry."""

    async def submit(
        self, key: Keypair, kind: str, body: dict[str, Any], timeout: float = 8.0, precheck: bool = False
    ) -> Submitted:
        old = {k: v for k, v in body.items() if k not in ("seller_short", "buyer_short")}
        return await super().submit(key, kind, old, timeout, precheck)


def test_a_refusal_no_retry_cures_is_recorded_once_as_failed_and_never_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """review11 F1: 20 passes used to send 20 settles refused `invalid`. Now one is sent, the refusal is logged
    once as an error with the chain's reason, the dispute is recorded failed and leaves the pending ones; a
    later pass, or a look through the whole state, does not take it up again this run."""
    readings = {"s": ramp(480.0, export=True), "b": ramp(480.0, export=False)}
    m = market({("s", "b"): 500}, {("s", "b"): (480, 480)}, readings=readings, cover=(RETAIL, FEED_IN))
    tid = m.trade_id("s", "b")
    adapter, clock = OldBody(m), settler_for(m)[2]
    settler = DisputeSettler(adapter, m.dso, CLOCK, m.node_of(), retry_s=30.0, now=clock)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    with caplog.at_level(logging.INFO, logger="peergrid_dso.dispute_node"):
        for _ in range(20):
            clock.s += 3600
            asyncio.run(settler.settle_due())
        settler.look_everywhere()
        asyncio.run(settler.settle_due())
    assert len(adapter.sent) == 1
    failed = settler.decision(tid)
    assert failed is not None and failed["outcome"] == "failed" and not failed["settled"]
    assert failed["detail"].startswith("invalid: ") and "the larger shortfall is 20 Wh" in failed["detail"]
    assert [d["outcome"] for d in settler.history] == ["failed"]
    assert settler.pending == {} and settler.sealed == {} and settler.failed == {tid}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "refuses the DSO's settle for good" in errors[0].getMessage()
    assert "invalid: " in errors[0].getMessage()
    assert query.settlement(m.chain.state, tid)["state"] == "disputed"  # type: ignore[index]
