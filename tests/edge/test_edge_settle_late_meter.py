"""A trade in an interval that started before the MGMC's first PCC reading (it started, or restarted, within
the interval): what each side states.

Before, neither could ever state it: the counter at the interval's start is unknown, so `metered` said "not
metered yet" for ever and each side retried until the day's end (the lab's first interval, where every
MGMC started late, was never settled). The rule (`pcc_readings.provable_wh`): where the window is read past
its end but a boundary is not bracketed, a seller states what its meter proves left — the counter from its
first reading in the window to its end — which never exceeds what left, since the counter never runs
backwards; a buyer can prove only a lower bound of what arrived, and stating it would pay less than it got,
so it states nothing and says why; the seller's lone statement settles the trade after the chain's wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_edge_settle_both import WAIT_MS, both_chain, meter_leaves, run_chain, settle_within, trades_of
from test_settlement import Node

from peergrid_edge.pcc_readings import MgMetering, Unprovable, provable_wh, statement_wh
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


def test_a_seller_that_started_late_states_what_its_meter_proves_left_and_a_buyer_nothing() -> None:
    assert metered(meter_leaves(POLLS), WINDOW, "energy_wh", GAP) == 400  # read from before the start
    with pytest.raises(Unmetered, match="around 60000 ms"):
        metered(meter_leaves(LATE), WINDOW, "energy_wh", GAP)  # the start is not bracketed
    # the seller: from its first reading in the window (62 s, 1100 Wh) to the end (1400 Wh), below the 400
    assert provable_wh(meter_leaves(LATE), WINDOW, "seller", GAP) == 300
    assert statement_wh(meter_leaves(LATE), WINDOW, "seller", 200, 400, GAP) == 150  # its share, pro rata
    with pytest.raises(Unprovable, match="as the buyer"):
        provable_wh(meter_leaves(LATE), WINDOW, "buyer", GAP)
    # not read to its end yet: not metered yet (it waits), whichever side
    for party in ("seller", "buyer"):
        with pytest.raises(Unmetered, match="around 66000 ms") as raised:
            provable_wh(meter_leaves(LATE[:1]), WINDOW, party, GAP)
        assert not isinstance(raised.value, Unprovable)
    # read past its end with nothing inside the window (one reading before, one well after): nothing provable
    with pytest.raises(Unprovable, match="no reading within the window"):
        provable_wh(meter_leaves([(40_000, 1.0, 0.0), (90_000, 5.0, 0.0)]), WINDOW, "seller", GAP)
    # an outage at the end, read again after it: the seller's last reading in the window bounds it
    ended = [p for p in POLLS if p[0] not in (66_000, 68_000)] + [(75_000, 1600.0, 95.0)]
    assert provable_wh(meter_leaves(ended), WINDOW, "seller", GAP) == 250  # 1000 -> 1250
    # a counter that runs backwards is still refused, not bounded
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
    the last poll, well after the window (it read again). Whatever it states as the seller is at most the
    truth, and the truth where it read both boundaries."""
    at = [50_000 + offset + 2_000 * k for k in range(12)]
    counter = [sum(steps[: k + 1]) for k in range(12)]
    window = (at[0] + 4_000 + offset // 2, at[0] + 10_000 + offset // 2)
    polls = [(a, c / 1000, 0.0) for a, c in zip(at, counter, strict=True)]
    truth = metered(meter_leaves(polls), window, "energy_wh", GAP)
    kept = [*polls[started:stopped], polls[-1]]
    try:
        stated = provable_wh(meter_leaves(kept), window, "seller", GAP)
    except Unprovable:
        return  # nothing in the window: it states nothing
    assert 0 <= stated <= truth
    try:
        assert stated == metered(meter_leaves(kept), window, "energy_wh", GAP) == truth
    except Unmetered:
        pass  # a boundary it did not read: a bound, not the measurement


class Store:
    def __init__(self, leaves: list[bytes]) -> None:
        self._leaves = leaves

    def leaves(self, interval: int) -> list[bytes]:
        return self._leaves if interval == 1 else []  # readings from 62 s on: commitment interval [60, 120) s

    def is_sealed(self, interval: int) -> bool:
        return True


def late_metering(trades: Any, me: bytes, store: Store) -> MgMetering:
    return MgMetering(store, 2.0, 60.0, lambda t: WINDOW, trades, me, b"n" * 32, None)


def test_both_parties_started_late_the_sellers_bound_settles_after_the_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Both MGMCs' first readings came after the interval's start (the lab's first interval): the seller
    states its bound, the buyer nothing (saying why, once), and the chain settles on the seller's statement
    after the wait; the buyer's settler reads it settled."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    # by their meters from 62 s to the window's end: the seller exported 300 Wh (10,000 -> 10,300), the buyer
    # imported 400; the trade is KWH (3000 Wh), each MG's only one
    sold = [(a, 10_000 + (a - 62_000) * 0.075, 0.0) for a, _, _ in LATE]
    bought = [(a, 0.0, 20_000 + (a - 62_000) * 0.1) for a, _, _ in LATE]

    def party(
        node: Node, who: Keypair, sent: list[int], records: list[dict[str, Any]], readings: Any
    ) -> Settler:
        metering = late_metering(lambda t: trades_of(node, t), who.public, Store(meter_leaves(readings)))

        async def submit(body: dict[str, Any]) -> Submission:
            sent.append(body["delivered"])
            return await node.submit(who, "settle", body)

        return Settler(
            submit, lambda tid: query.settlement(node.ledger.state("mgmc"), tid), time.time, asyncio.sleep,
            lambda: False, records.append, Settlements(0.2, 0.5), by_both=True, metering=metering.statement,
        )  # fmt: skip

    sent_s: list[int] = []
    sent_b: list[int] = []
    records_b: list[dict[str, Any]] = []

    async def day(node: Node) -> dict[str, Any]:
        tid = await node.agree(1, seller, buyer)
        s = party(node, seller, sent_s, [], sold)
        b = party(node, buyer, sent_b, records_b, bought)
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        stated = time.time()
        await asyncio.gather(
            settle_within(s, 10),
            settle_within(b, 10),
        )
        assert not s.book.pending and not b.book.pending
        assert time.time() - stated >= WAIT_MS / 1000 - 0.3  # the buyer's window ran out first
        return query.settlement(node.ledger.state("mgmc"), tid)

    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        where = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "lapsed"
    assert where["settlement"]["delivered"] == 300 and sent_s == [
        300,
        300,
    ]  # stated, and again at the deadline
    assert sent_b == []  # the buyer never stated
    warned = [r.getMessage() for r in caplog.records if "not stated: its PCC meter" in r.getMessage()]
    assert len(warned) == 1 and "as the buyer" in warned[0]
    assert records_b[-1]["settlement"]["settled"] and records_b[-1]["settlement"]["party"] == "buyer"


def test_the_bound_is_exact_arithmetic() -> None:
    # counters in whole mWh (the leaves' milli), the end interpolated exactly: 1001 -> 2000 + 1/3 of 600 mWh
    leaves = meter_leaves([(61_500, 1.001, 0.0), (65_000, 2.0, 0.0), (68_000, 2.6, 0.0)])
    assert provable_wh(leaves, WINDOW, "seller", GAP) == Fraction(1199, 1000)
