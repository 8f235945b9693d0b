"""A trade in an interval that started before the MGMC's first PCC reading (it started, or restarted, within
the interval): neither side states it.

At first neither stated it either, but each waited for a reading that could never come ("not metered yet"
to the day's end). Then a seller stated what its meter proved left, the counter from its first reading in
the window; but the DSO, which takes such a trade up (a dispute, or a lone word from `LONE_FROM`), meters
only by the ledger's `metering.metered`, boundaries bracketed, and settled it "seller not metered", 0 Wh
(E7: U6's restarted mg5, 44.5 kWh stated, 0 paid). The rule now (`pcc_readings.provable_wh`): the edge
states `metered`'s figure or nothing; read past the window's end with a boundary not bracketed, each side
says once why it states nothing (`Unprovable`), for good.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_edge_settle_both import both_chain, meter_leaves, run_chain, trades_of
from test_settlement import Node

from peergrid_edge.pcc_readings import MgMetering, Unprovable, provable_wh
from peergrid_edge.replicas import Submission
from peergrid_edge.settle_book import Settlements
from peergrid_edge.settlement import Settler
from peergrid_ledger import query
from peergrid_ledger.keys import Keypair
from peergrid_ledger.metering import Unmetered, metered

WINDOW = (60_000, 66_000)  # the interval's window (ms); the PCC meter is read every 2 s: gaps up to 6 s
GAP = 6_000
# export and import counters (Wh) polled every 2 s from 58 s on; an MGMC that started at 61 s has the
# readings from 62 s on only
POLLS = [(58_000, 1000.0, 50.0), (60_000, 1000.0, 50.0), (62_000, 1100.0, 60.0), (64_000, 1250.0, 70.0),
         (66_000, 1400.0, 80.0), (68_000, 1500.0, 90.0)]  # fmt: skip
LATE = [p for p in POLLS if p[0] > 61_000]


def test_a_side_that_started_late_states_nothing_the_ledger_does_not_meter() -> None:
    assert metered(meter_leaves(POLLS), WINDOW, "energy_wh", GAP) == 400  # read from before the start
    with pytest.raises(Unmetered, match="around 60000 ms"):
        metered(meter_leaves(LATE), WINDOW, "energy_wh", GAP)  # the start is not bracketed
    for party in ("seller", "buyer"):  # before (E7): the seller stated 300, from its first reading at 62 s
        with pytest.raises(Unprovable, match=f"as the {party}"):
            provable_wh(meter_leaves(LATE), WINDOW, party, GAP)
    # not read to its end yet: not metered yet (it waits), whichever side
    for party in ("seller", "buyer"):
        with pytest.raises(Unmetered, match="around 66000 ms") as raised:
            provable_wh(meter_leaves(LATE[:1]), WINDOW, party, GAP)
        assert not isinstance(raised.value, Unprovable)
    # read past its end with nothing inside the window (one reading before, one well after): nothing
    with pytest.raises(Unprovable, match="as the seller"):
        provable_wh(meter_leaves([(40_000, 1.0, 0.0), (90_000, 5.0, 0.0)]), WINDOW, "seller", GAP)
    # an outage at the end, read again after it: nothing either (before: the last reading in the window)
    ended = [p for p in POLLS if p[0] not in (66_000, 68_000)] + [(75_000, 1600.0, 95.0)]
    with pytest.raises(Unprovable, match="around 66000 ms"):
        provable_wh(meter_leaves(ended), WINDOW, "seller", GAP)
    # a counter that runs backwards is still refused as such
    with pytest.raises(Unmetered, match="runs backwards"):
        provable_wh(meter_leaves([*LATE[:2], (66_000, 900.0, 80.0)]), WINDOW, "seller", GAP)


@given(
    steps=st.lists(st.integers(0, 50_000), min_size=12, max_size=12),
    started=st.integers(0, 10),
    stopped=st.integers(1, 11),
    offset=st.integers(0, 1_999),
)
def test_what_a_seller_states_never_exceeds_what_left(
    steps: list[int], started: int, stopped: int, offset: int
) -> None:
    """Readings every 2 s (mWh counters, linear between polls: the truth is `metered` over all of them);
    the MGMC has those from poll `started` (it started late) to before poll `stopped` (then it was down) and
    the last poll, well after the window (it read again). What it states as the seller is the truth, and
    only where it read both boundaries."""
    at = [50_000 + offset + 2_000 * k for k in range(12)]
    counter = [sum(steps[: k + 1]) for k in range(12)]
    window = (at[0] + 4_000 + offset // 2, at[0] + 10_000 + offset // 2)
    polls = [(a, c / 1000, 0.0) for a, c in zip(at, counter, strict=True)]
    truth = metered(meter_leaves(polls), window, "energy_wh", GAP)
    kept = [*polls[started:stopped], polls[-1]]
    try:
        stated = provable_wh(meter_leaves(kept), window, "seller", GAP)
    except Unprovable:
        return  # a boundary it did not read: it states nothing
    assert stated == metered(meter_leaves(kept), window, "energy_wh", GAP) == truth


class Store:
    def __init__(self, leaves: list[bytes]) -> None:
        self._leaves = leaves

    def leaves(self, interval: int) -> list[bytes]:
        return self._leaves if interval == 1 else []  # readings from 62 s on: commitment interval [60, 120) s

    def is_sealed(self, interval: int) -> bool:
        return True


def late_metering(trades: Any, me: bytes, store: Store) -> MgMetering:
    return MgMetering(store, 2.0, 60.0, lambda t: WINDOW, trades, me, b"n" * 32, None)


def test_both_parties_started_late_neither_states_and_each_says_why_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Both MGMCs' first readings came after the interval's start: neither states (before E7 the seller
    stated its bound, which the DSO would have settled "seller not metered"), each says why once, and the
    trade is still open on the chain, for the day's end to give up."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sold = [(a, 10_000 + (a - 62_000) * 0.075, 0.0) for a, _, _ in LATE]
    bought = [(a, 0.0, 20_000 + (a - 62_000) * 0.1) for a, _, _ in LATE]

    def party(node: Node, who: Keypair, sent: list[int], readings: Any) -> Settler:
        metering = late_metering(lambda t: trades_of(node, t), who.public, Store(meter_leaves(readings)))

        async def submit(body: dict[str, Any]) -> Submission:
            sent.append(body["delivered"])
            return await node.submit(who, "settle", body)

        return Settler(
            submit, lambda tid: query.settlement(node.ledger.state("mgmc"), tid), time.time, asyncio.sleep,
            lambda: False, lambda doc: None, Settlements(0.2, 0.5), by_both=True, metering=metering.statement,
        )  # fmt: skip

    sent_s: list[int] = []
    sent_b: list[int] = []

    async def day(node: Node) -> dict[str, Any]:
        tid = await node.agree(1, seller, buyer)
        s, b = party(node, seller, sent_s, sold), party(node, buyer, sent_b, bought)
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await asyncio.gather(s.work_until(time.time() + 1.0), b.work_until(time.time() + 1.0))
        return query.settlement(node.ledger.state("mgmc"), tid)

    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        where = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "open" and sent_s == [] and sent_b == []
    warned = [r.getMessage() for r in caplog.records if "not stated: its PCC meter" in r.getMessage()]
    assert sorted("as the seller" in w for w in warned) == [False, True]  # once each
