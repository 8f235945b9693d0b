"""The DSO keeps a counterparty's readings for a dispute once a sibling trade becomes disputed after it (D10).

A dispute reads its parties' meters and those of the counterparties of their other disputed trades
(`disputes.read_nodes`, `metering.meters_read`); an agreed sibling's counterparty is not read. Which siblings
are disputed can change after the DSO took a dispute up: b disputes s -> b first, then c -> b. From then on
s -> b reads c's meter too (b's share of it goes by what c proves), so the settler must read its needs again
(`_retry_siblings`, on the `settle` that disputed c -> b): else c's readings, kept only while c -> b waits,
would be dropped when c -> b settles, and offered again for s -> b refused as needed by no dispute.
"""

from __future__ import annotations

import asyncio

import pytest

from peergrid_dso.dispute_node import ReadingsNotNeeded
from peergrid_ledger import query

from .test_disputes import CLOCK, T, market, ramp
from .test_disputes_node import final_blocks, hand_over, settler_for

SALES = {("s", "b"): 500, ("c", "b"): 500, ("c", "d"): 200}
READINGS = {
    "s": ramp(300.0, export=True),
    "c": ramp(700.0, export=True),
    "b": ramp(800.0, export=False),
    "d": ramp(200.0, export=False),
}


def test_a_sibling_disputed_later_has_its_counterpartys_readings_read_and_kept() -> None:
    m = market(SALES, {("s", "b"): (300, 500), ("c", "d"): (200, 200)}, readings=READINGS)
    s_b, c_b = m.trade_id("s", "b"), m.trade_id("c", "b")
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    asyncio.run(settler.settle_due())
    c_node, d_node = m.nodes["c"].public, m.nodes["d"].public
    assert {node for node, _ in settler.reads[s_b]} == {m.nodes["s"].public, m.nodes["b"].public}
    c_leaves = next((k[1], v) for k, v in m.sealed.items() if k[0] == c_node)
    with pytest.raises(ReadingsNotNeeded):  # c -> b not disputed: c's meter is not s -> b's business
        settler.offer_readings(c_node, *c_leaves)
    m.state("c", "b", 450, 500)  # now it is: b's share of s -> b goes by c's meter
    final_blocks(m, settler, seen)
    assert {node for node, _ in settler.reads[s_b]} == {m.nodes[mg].public for mg in ("s", "b", "c")}
    assert d_node not in {node for node, _ in settler.reads[s_b] | settler.reads.get(c_b, set())}
    for mg in ("s", "b", "c"):
        hand_over(m, settler, mg)
    with pytest.raises(ReadingsNotNeeded):  # c -> d agreed and settled: d's meter is read for no dispute
        settler.offer_readings(d_node, *next((k[1], v) for k, v in m.sealed.items() if k[0] == d_node))
    settler.done(c_b)  # c -> b needs the DSO no more (as once settled): s -> b still reads c's readings
    assert all((c_node, k) in settler.sealed for k in CLOCK.commitments(T) if (c_node, k) in m.sealed)
    asyncio.run(settler.settle_due())
    sent = {body["trade"]: body["delivered"] for _, _, body, _ in adapter.sent}
    assert sent[s_b] == 300  # b's 800 Wh shared by its sellers' meters: s proves 300, c 500
    assert query.settlement(m.chain.state, s_b)["state"] == "settled"  # type: ignore[index]
