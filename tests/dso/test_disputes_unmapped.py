"""review14 K1, the DSO's side: a trade whose party the DSO cannot map to a node key (not an anonym it enrolled:
an MGMC trading under its node key, or an anonym missing from the DSO's config) was `Unresolved` for ever, with
no deadline rule: a node-key buyer disputed every purchase and its seller was never paid, a node-key seller's
vouch or lone statement lapsed on its own word. The contract now lets only anonyms trade on a settle_by_both
chain (C5); the DSO does not rely on it: a party missing from its `nodes` map (here an anonym left out of its
config, the case the contract cannot rule out) is handled the same way. Now such a party is an unmetered side under the deadline rules
(a seller settled at 0, a buyer "seller metered only") and the DSO node logs the trade once, as an error,
naming the key. On a real MGMC chain (`LocalChain`) through the DSO node's settler; time is the chain's."""

from __future__ import annotations

import asyncio
import logging

import pytest

from peergrid_dso.dispute_shares import NOT_ENROLLED
from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_ledger import query
from peergrid_ledger.takeup import LONE_RULE, VOUCH_RULE

from .test_disputes import (
    CLOCK,
    END_MS,
    PRICE,
    chain_time,
    market,
    ramp,
)
from .test_disputes_node import final_blocks, hand_over, settler_for

WAIT_MS = 120_000
RETAIL, FEED_IN = 300, 50


def test_a_buyer_the_dso_cannot_map_disputing_a_purchase_is_settled_on_the_sellers_meter_at_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """K1 (b): the honest seller delivered 400 (its meter), the buyer states 0 and is not among the DSO's
    anonyms (the contract now lets only anonyms trade on a settle_by_both chain, so this is an anonym missing
    from the DSO's config; the DSO does not rely on the contract's rule). The DSO waits for the buyer's side
    until the dispute's deadline (as for one withholding its readings), then settles 400 by "seller metered
    only"; the seller is paid, and the trade is logged once, naming the buyer's key."""
    m = market({("s", "b"): 400}, {("s", "b"): (0, 400)}, wait_ms=WAIT_MS,
               readings={"s": ramp(400.0, export=True), "b": ramp(400.0, export=False)})  # fmt: skip
    tid = m.trade_id("s", "b")
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "disputed"
    deadline = max(int(s["time"]) for s in where["statements"].values()) + WAIT_MS
    settler, adapter, _ = settler_for(m)
    del settler.nodes[m.anonyms["b"].public]
    before = query.balance(m.chain.state, m.anonyms["s"].public)
    with caplog.at_level(logging.ERROR, logger="peergrid_dso.dispute_node"):
        seen = final_blocks(m, settler)
        hand_over(m, settler, "s")
        asyncio.run(settler.settle_due())
        waiting = settler.decision(tid)
        assert adapter.sent == [] and waiting is not None and waiting["until_ms"] == deadline
        assert f"the buyer's metering: {NOT_ENROLLED}" in waiting["why"]
        m.pass_time(deadline - 1)
        seen = final_blocks(m, settler, seen)
        asyncio.run(settler.settle_due())
        assert adapter.sent == []
        m.pass_time(deadline)
        final_blocks(m, settler, seen)
        settler.look_everywhere()  # taken up again: still logged once
        asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [{"trade": tid, "delivered": 400}]
    done = query.settlement(m.chain.state, tid)
    assert done is not None and done["settlement"]["basis"] == "dso"
    assert query.balance(m.chain.state, m.anonyms["s"].public) - before == 400 * PRICE
    assert settler.decision(tid)["rule"] == "seller metered only"  # type: ignore[index]
    logged = [r.getMessage() for r in caplog.records if tid.hex() in r.getMessage()]
    assert len(logged) == 1 and m.anonyms["b"].public.hex() in logged[0] and "buyer" in logged[0]


def test_a_seller_the_dso_cannot_map_is_settled_at_zero_from_its_part_of_the_vouch_window() -> None:
    """K1 (a): on a seller_vouched chain the seller states the agreed 400 (its meter shows 250) and agrees with
    the honest buyer; the DSO has no node key for it. It waits until VOUCH_RULE of the window, then settles 0
    with the whole quantity the seller's shortfall, before the parties' repeat could pay 400."""
    m = market({("s", "b"): 400}, {("s", "b"): (400, 400)}, wait_ms=WAIT_MS, cover=(RETAIL, FEED_IN),
               readings={"s": ramp(250.0, export=True), "b": ramp(400.0, export=False)},
               params={"seller_vouched": 1})  # fmt: skip
    tid = m.trade_id("s", "b")
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "vouching"
    nodes = {m.anonyms["b"].public: m.nodes["b"].public}  # s is not among the DSO's anonyms
    start = max(int(s["time"]) for s in where["statements"].values())
    rule = start + int((where["vouch"]["until"] - start) * VOUCH_RULE)
    early = resolve(m.chain.state, tid, CLOCK, nodes, m.sealed, chain_time(m))
    assert isinstance(early, Unresolved) and early.until_ms == rule and NOT_ENROLLED in early.why
    settler, adapter, _ = settler_for(m)
    settler.nodes = dict(nodes)
    m.pass_time(rule)
    final_blocks(m, settler)
    hand_over(m, settler, "b")  # the buyer's edge posts for its vouching purchase (D2)
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 0, "seller_short": 400, "buyer_short": 0}
    ]
    done = query.settlement(m.chain.state, tid)
    assert (
        done is not None
        and done["settlement"]["basis"] == "dso"
        and m.chain.tip.time < where["vouch"]["until"]
    )


def test_a_lone_statement_of_a_seller_the_dso_cannot_map_settles_at_zero_before_it_lapses() -> None:
    """K1 (c): the seller states 400 alone (its meter shows 100), the buyer is silent. Without a node key the
    seller cannot be metered: at LONE_RULE of the wait the DSO settles 0 ("seller not metered"), before the
    seller's repeat could lapse on its own word."""
    m = market({("s", "b"): 400}, {}, readings={"s": ramp(100.0, export=True)}, wait_ms=WAIT_MS)
    tid = m.trade_id("s", "b")
    m.do(m.anonyms["s"], "settle", {"trade": tid, "delivered": 400}, max(m.now, END_MS))
    at = m.chain.tip.time
    nodes = {m.anonyms["b"].public: m.nodes["b"].public}
    m.pass_time(at + int(WAIT_MS * LONE_RULE))
    decision = resolve(m.chain.state, tid, CLOCK, nodes, m.sealed, chain_time(m))
    assert isinstance(decision, Vouched) and (decision.delivered, decision.rule) == (0, "seller not metered")
    assert decision.unmetered["seller"] == NOT_ENROLLED
    settler, adapter, _ = settler_for(m)
    settler.nodes = dict(nodes)
    final_blocks(m, settler)
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [{"trade": tid, "delivered": 0}]
    assert query.settlement(m.chain.state, tid)["settlement"]["basis"] == "dso"  # type: ignore[index]


def test_a_counterparty_the_dso_cannot_map_is_waited_for_then_taken_least_in_its_favour() -> None:
    """A metered buyer's import shared over two disputed purchases, one seller unmapped: before the deadline
    the share waits for it; after, that seller delivered nothing of the buyer's import (`LEAST`)."""
    readings = {"s1": ramp(300.0, export=True), "s2": ramp(0.0, export=True), "b": ramp(300.0, export=False)}
    m = market({("s1", "b"): 300, ("s2", "b"): 300}, {("s1", "b"): (100, 300), ("s2", "b"): (100, 300)},
               readings=readings, wait_ms=WAIT_MS)  # fmt: skip
    tid = m.trade_id("s1", "b")
    nodes = {a: n for a, n in m.node_of().items() if a != m.anonyms["s2"].public}
    early = resolve(m.chain.state, tid, CLOCK, nodes, m.sealed, chain_time(m))
    assert isinstance(early, Unresolved) and early.until_ms is not None and NOT_ENROLLED in early.why
    m.pass_time(early.until_ms)
    late = resolve(m.chain.state, tid, CLOCK, nodes, m.sealed, chain_time(m))
    assert isinstance(late, Vouched) and late.delivered == 300 and late.rule == "both metered"
