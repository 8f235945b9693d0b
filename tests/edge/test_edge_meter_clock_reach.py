"""review16 C1 from the edge to the DSO: the DSO counts a signing meter's readings at the meter's time and, for a
meter whose clock is off the MGMC's stamps, reads up to `CLOCK_REACH_COMMITS` commitment intervals beyond the
window's (dso-server `sealed_readings._read_for_clock`; the node keeps them: `MeterClock.reachable`). The
edge's poster (`dispute_readings.DisputeReadings.bodies`) posts that far further by its meter's own offsets
(`meter_signing.stamp_offsets`), so the dispute settles at what was delivered instead of waiting "not at the
DSO" until its deadline. The edge's follower (`MgMetering.follow`, as the trading agent runs it) posting over
real HTTP to the DSO server's disputes API over a `DisputeSettler` of a real MGMC chain (tests/dso's market,
the fixture of test_edge_counterparty_readings); the seller's meter polled every 10 s all along."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from dso.test_disputes import CLOCK, Market, T
from dso.test_disputes_node import served_disputes
from dso.test_disputes_readings import dispute
from dso.test_meter_clock_offset import meter_polls

from peergrid_edge.dispute_readings import DisputeReadings, readings_bodies
from peergrid_edge.pcc_readings import MgMetering
from peergrid_ledger import query
from peergrid_ledger.meter_signing import CLOCK_REACH_COMMITS
from peergrid_ledger.metering import commitment_intervals

WINDOW = CLOCK.window(T)  # [1010, 1070) s; its commitment intervals 16-18 (+- the 15-s max_gap)
BASE = list(commitment_intervals(WINDOW, CLOCK.commit_ms, CLOCK.max_gap_ms))


class Store:
    """One MG's edge store as the market sealed it (`MgMetering`'s reading side)."""

    def __init__(self, m: Market, mg: str) -> None:
        self.m, self.node = m, m.nodes[mg].public

    def leaves(self, interval: int) -> list[bytes]:
        return list(self.m.sealed.get((self.node, interval), []))

    def is_sealed(self, interval: int) -> bool:
        return (self.node, interval) in self.m.sealed


def posted(m: Market, mg: str) -> list[int]:
    """The commitment intervals `mg`'s poster posts for interval T's window."""
    store = Store(m, mg)
    poster = DisputeReadings(
        "http://127.0.0.1:1", store.node, lambda r: [(c, store.leaves(c)) for c in r if store.is_sealed(c)],
        CLOCK.commit_ms, CLOCK.max_gap_ms,
    )  # fmt: skip
    return [int(body["interval"]) for body in poster.bodies(WINDOW)]


@contextmanager
def dso_rounds(dso_round: Callable[[], None]) -> Iterator[None]:
    """The DSO node's rounds (`dso_round`, every 0.05 s) on a thread of their own while the body runs."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            dso_round()
            time.sleep(0.05)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.parametrize(("clock_off_s", "further"), [(100.0, [14, 15]), (-150.0, [19, 20])])
def test_the_edge_posts_what_the_dso_reads_for_its_meters_clock_and_the_dispute_settles_at_300(
    clock_off_s: float, further: list[int]
) -> None:
    """500 Wh agreed, disputed (buyer 300, seller 500), the seller's meter exported 300 and its clock is 100 s
    ahead (or 150 s behind): at the meter's time the window's own intervals leave a window end unmeasured. The
    seller's follower posts the intervals that far earlier (later) too, the buyer's its window; both followers
    end with the DSO's decision: settled by both meters at 300, the seller's tally every signed reading of
    the intervals posted. (Before, the seller posted 16-18 only and the dispute stayed unresolved "not at the
    DSO", both followers giving up at `until`.)"""
    m, tid, signing = dispute(meter_polls(clock_off_s))
    assert posted(m, "s") == sorted([*BASE, *further]) and posted(m, "b") == BASE
    with served_disputes(m) as (url, settler):
        settler.signing = signing

        def dso_round() -> None:  # the DSO node's own loop: look at the chain and settle what it can
            settler.look_everywhere()
            asyncio.run_coroutine_threadsafe(settler.settle_due(), settler.adapter.loop).result(10)

        async def both_follow() -> list[bool]:
            followers = [
                MgMetering(
                    Store(m, mg), 5.0, CLOCK.commit_ms / 1000, CLOCK.window, lambda t: query.trades(m.chain.state, t),
                    m.anonyms[mg].public, m.nodes[mg].public, url,
                ).follow(T, tid, 0.05, time.time() + 10, time.time, asyncio.sleep)
                for mg in ("s", "b")
            ]  # fmt: skip
            return list(await asyncio.gather(*followers))

        dso_round()
        with dso_rounds(dso_round):
            followed = asyncio.run(both_follow())
        decision = settler.decision(tid)
    assert followed == [True, True], decision
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "settled" and where["settlement"]["basis"] == "dso"
    assert where["settlement"]["delivered"] == 300
    assert decision is not None and decision["rule"] == "both metered"
    seller = m.nodes["s"].public
    signed = sum(len(m.sealed[(seller, c)]) for c in [*BASE, *further])
    assert decision["readings"]["seller"]["signed"] == signed


def test_a_meter_on_time_posts_the_windows_intervals_and_a_far_one_no_more_than_the_dso_reads() -> None:
    """A meter 14 s ahead (noted by the DSO, its window measured) and an MG whose meter does not sign post the
    window's intervals, the bodies byte for byte as before; a meter 240 s or a day ahead posts
    `CLOCK_REACH_COMMITS` intervals further and no more (what the DSO reads and its node takes)."""
    m, _, _ = dispute(meter_polls(14.0))
    store = Store(m, "s")
    before = readings_bodies(store.node, [(c, store.leaves(c)) for c in BASE if store.is_sealed(c)])
    poster = DisputeReadings(
        "http://127.0.0.1:1", store.node, lambda r: [(c, store.leaves(c)) for c in r if store.is_sealed(c)],
        CLOCK.commit_ms, CLOCK.max_gap_ms,
    )  # fmt: skip
    assert poster.bodies(WINDOW) == before and posted(m, "b") == BASE
    reach = list(range(BASE[0] - CLOCK_REACH_COMMITS, BASE[-1] + 1))  # 13 .. 18
    for clock_off_s in (240.0, 86_400.0):
        far, _, _ = dispute(meter_polls(clock_off_s, stamps=range(600, 1_271, 10)))
        assert posted(far, "s") == reach and set(reach) <= set(CLOCK.reachable(T))
