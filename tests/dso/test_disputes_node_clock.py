"""review16 C1 at the DSO node: since 3a06c32 a decision reads up to `CLOCK_REACH_COMMITS` commitment intervals
beyond a window's for a signing meter whose clock is off the MGMC's stamps (`sealed_readings._read_for_clock`),
so the node keeps the readings of every commitment interval a decision may read (`MeterClock.reachable`), not
only the window's own (`dispute_node.DisputeSettler._readings_of`); anything further is still refused as
needed by no dispute. On a real MGMC chain (tests/dso's market), the seller's meter 100 s ahead, its leaves
handed over one commitment interval at a time through `offer_readings`, as the REST API does."""

from __future__ import annotations

import asyncio
import math

from peergrid_dso.dispute_node import ReadingsNotNeeded
from peergrid_ledger.meter_signing import CLOCK_REACH_COMMITS

from .test_disputes import CLOCK, T
from .test_disputes_node import final_blocks, settler_for
from .test_disputes_readings import dispute
from .test_meter_clock_offset import BASE, meter_polls

REACH = range(BASE[0] - CLOCK_REACH_COMMITS, BASE[-1] + CLOCK_REACH_COMMITS + 1)  # 13 .. 21


def test_the_node_takes_the_readings_a_meter_clock_ahead_needs_and_settles_at_300() -> None:
    """The seller's meter 100 s ahead, polled every 10 s from 310 s before the window to 320 s after it
    (commitment intervals 11 .. 23 sealed). The window's own intervals (16-18) leave its start unmeasured at
    the meter's time; the DSO reads 14 and 15 for the clock. Every interval in the reachable range is taken
    (before, 13-15 and 19-21 were refused `ReadingsNotNeeded` and the dispute stayed "not at the DSO" until
    its deadline); 11, 12, 22 and 23 are still refused. Settled by both meters at the 300 Wh delivered, and
    every reading kept for it dropped once it is settled."""
    assert list(REACH) == list(CLOCK.reachable(T))
    m, tid, signing = dispute(meter_polls(100.0, stamps=range(700, 1_391, 10)))
    settler, adapter, _ = settler_for(m)
    settler.signing = signing
    held, m.sealed = dict(m.sealed), {}  # the DSO holds no readings yet
    final_blocks(m, settler)
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and settler.pending == {tid: math.inf}
    seller = m.nodes["s"].public
    assert sorted(k for node, k in held if node == seller) == list(range(11, 24))
    taken, refused = [], []
    for (node, bucket), leaves in sorted(held.items()):
        try:
            assert settler.offer_readings(node, bucket, leaves) == len(leaves)
            taken.append((node, bucket))
        except ReadingsNotNeeded as exc:
            assert "no pending dispute reads" in str(exc)
            refused.append((node, bucket))
    assert sorted(k for node, k in taken if node == seller) == list(REACH)
    assert sorted(k for node, k in refused if node == seller) == [11, 12, 22, 23]
    assert all(node == seller for node, _ in refused)  # the buyer's sealed intervals are all in range
    asyncio.run(settler.settle_due())
    [(_, kind, body, _)] = adapter.sent
    assert (kind, body) == ("settle", {"trade": tid, "delivered": 300})
    done = settler.decision(tid)
    assert done is not None and done["outcome"] == "settled" and done["rule"] == "both metered"
    assert "counted at the meter's time" in done["readings"]["seller"]["off_clock"]
    assert settler.pending == {} and settler.sealed == {}


def test_a_measured_window_still_reads_nothing_more_though_the_node_takes_the_range() -> None:
    """A meter 14 s ahead measures the window from its own intervals: the node takes the range all the same
    (it cannot tell before the decision what the decision reads), and the decision is the window's alone:
    settled at 300 on the 18 readings of intervals 16-18, as before the range was kept."""
    m, tid, signing = dispute(meter_polls(14.0))
    settler, adapter, _ = settler_for(m)
    settler.signing = signing
    held, m.sealed = dict(m.sealed), {}
    final_blocks(m, settler)
    asyncio.run(settler.settle_due())
    for (node, bucket), leaves in sorted(held.items()):
        assert bucket in REACH and settler.offer_readings(node, bucket, leaves) == len(leaves)
    asyncio.run(settler.settle_due())
    [(_, _, body, _)] = adapter.sent
    assert body == {"trade": tid, "delivered": 300}
    done = settler.decision(tid)
    assert done is not None and done["readings"]["seller"]["signed"] == 18
