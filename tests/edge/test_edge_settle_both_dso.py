"""A disputed trade settled by the DSO from the readings the MGMCs post: the edge's `DisputeReadings` posts each
party's sealed PCC readings over real HTTP to the DSO server's disputes API (the real FastAPI routes and
`DisputeSettler`, served by uvicorn on loopback), whose settle then lands on the MGMC chain. The parties'
statements differ (a forced meter disagreement: the buyer states 300 Wh, the seller 500 Wh), and what each
edge would have stated from its own leaves (`pcc_readings.statement_wh`) is exactly the share the DSO finds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dso.test_disputes import CLOCK, Market, market, ramp
from dso.test_disputes_node import served_disputes

from peergrid_edge.dispute_readings import DisputeReadings
from peergrid_edge.pcc_readings import statement_wh
from peergrid_ledger import query


@pytest.fixture
def dso_api() -> Iterator[tuple[str, Market, Any]]:
    """The DSO server's disputes API on a loopback port over a settler of a disputed 500-Wh trade."""
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)})
    m.commit("s", ramp(480.0, export=True))
    m.commit("b", ramp(455.0, export=False))
    with served_disputes(m) as (url, settler):
        yield url, m, settler


def edge_poster(url: str, m: Market, mg: str) -> DisputeReadings:
    """One MGMC's poster over its sealed readings (what its edge store holds, `m.sealed`)."""
    node = m.nodes[mg].public
    return DisputeReadings(
        url, node, lambda r: [(c, m.sealed[(node, c)]) for c in r if (node, c) in m.sealed],
        CLOCK.commit_ms, CLOCK.max_gap_ms,
    )  # fmt: skip


def test_the_dso_settles_a_forced_disagreement_from_the_readings_the_edges_post(
    dso_api: tuple[str, Market, Any],
) -> None:
    url, m, settler = dso_api
    tid = m.trade_id("s", "b")
    assert query.settlement(m.chain.state, tid)["state"] == "disputed"
    window = CLOCK.window(9)

    def settle_now() -> None:
        settler.look_everywhere()
        asyncio.run_coroutine_threadsafe(settler.settle_due(), settler.adapter.loop).result(10)

    settle_now()  # the DSO sees the dispute, but holds no readings: unresolved, saying they are missing
    seller, buyer = edge_poster(url, m, "s"), edge_poster(url, m, "b")
    decision = asyncio.run(seller.decision(tid))
    assert (
        decision is not None and not decision.get("resolved", False) and "not at the DSO" in decision["why"]
    )

    async def both_post() -> list[int]:
        return [await seller.post(window), await buyer.post(window)]

    accepted = asyncio.run(both_post())
    assert accepted == [
        sum(1 for (node, _) in m.sealed if node == m.nodes[mg].public) for mg in ("s", "b")
    ]  # every sealed commitment interval around the window, each kept whole
    settle_now()
    where = query.settlement(m.chain.state, tid)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "dso"
    assert where["settlement"]["delivered"] == 455  # what both meters confirm
    shown = asyncio.run(buyer.decision(tid))
    assert shown is not None and shown["outcome"] == "settled"
    # each edge, from the same leaves, would have stated exactly the DSO's share of its side
    leaves = {
        mg: [x for (n, _), v in m.sealed.items() if n == m.nodes[mg].public for x in v] for mg in ("s", "b")
    }
    assert (
        statement_wh(leaves["s"], window, "seller", 500, 500, CLOCK.max_gap_ms) == shown["seller"]["share_wh"]
    )
    assert (
        statement_wh(leaves["b"], window, "buyer", 500, 500, CLOCK.max_gap_ms) == shown["buyer"]["share_wh"]
    )


def test_follow_posts_again_until_the_dso_decided_with_them(dso_api: tuple[str, Market, Any]) -> None:
    url, m, settler = dso_api
    tid = m.trade_id("s", "b")
    window = CLOCK.window(9)
    seller, buyer = edge_poster(url, m, "s"), edge_poster(url, m, "b")

    def dso_rounds() -> None:  # the DSO node's own loop: look at the chain and settle what it can, repeatedly
        for _ in range(100):
            settler.look_everywhere()
            asyncio.run_coroutine_threadsafe(settler.settle_due(), settler.adapter.loop).result(10)
            if query.settlement(m.chain.state, tid)["state"] == "settled":
                return
            time.sleep(0.05)

    rounds = threading.Thread(target=dso_rounds)
    rounds.start()

    async def follow_both() -> list[bool]:
        return list(
            await asyncio.gather(
                seller.follow(tid, window, 0.0, 0.05, time.time() + 10, time.time, asyncio.sleep),
                buyer.follow(tid, window, 0.0, 0.05, time.time() + 10, time.time, asyncio.sleep),
            )
        )

    assert asyncio.run(follow_both()) == [True, True]
    rounds.join(10)
    assert query.settlement(m.chain.state, tid)["settlement"]["delivered"] == 455
