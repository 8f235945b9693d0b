"""E12 (drill U7's findings 11 and 12): a pilot MGMC's records and start across the days of one chain
(`market.days` null).

11: a settlement line of an earlier day's trade (given up in the next day's idles, or at a restart's day's end)
carried the day the agent was on then (interval 23 of day 0 stamped .../24), and a restart wrote the same line
again. A record line carries its own interval's day (`MarketAgent._record`, `Calendar.stamp_of`), and a
settlement ending the record file holds already is not written again (`resume.ending_of`).
12: a first start (no record file yet) whose epoch is hours past joined the day's first interval and walked
each past one; it joins from the interval in hand on the clock (`Calendar.resume_from`'s `first_start`), and a
restart with records still looks from the day's first (P4, R44: it settles what it holds).

The runs are P4's (tests/edge/test_p4_days.py): a real MarketAgent on a real single-authority MGMC chain, a
24-interval day; each interval is stubbed (it only notes its number).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import stand_in_daemon
from test_edge_settle_both import both_chain
from test_edge_settle_restart import record
from test_p4_days import INTERVAL_S, N, NoReadings, days_chain, settings
from test_settlement import Node

from peergrid_edge.resume import record_day
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.keys import Keypair, write_keyfile


def stubbed_agent(node: Node, me: Keypair, market: Any, ran: list[int]) -> MarketAgent:
    """A MarketAgent of mg1 whose intervals only note their number, with no DSO to wait for."""
    daemon = stand_in_daemon(node.ledger, "mg1", commit_interval_s=6.0, store=NoReadings(), keypair=me)
    agent = MarketAgent(daemon, market)  # type: ignore[arg-type]

    async def interval(t: int) -> None:
        ran.append(t)

    async def cleared(t: int) -> None:
        return None

    agent.run_interval = interval  # type: ignore[method-assign]
    agent._previous_cleared = cleared  # type: ignore[method-assign]
    return agent


def test_a_sale_of_day_zero_given_up_on_day_one_is_stamped_day_zero_once_across_a_restart(
    tmp_path: Path,
) -> None:
    """A meterless seller whose sales of 23 (day 0's last) and 24 (day 1's first) its records do not confirm
    (dispatch verdict false): neither side states, and each run gives them up at its day's end. Before: 23's
    line was stamped day 1 (`1.../24`), and the restart wrote both lines again."""
    me, buyer, authority = (Keypair.generate() for _ in range(3))
    write_keyfile(tmp_path / "anonym.key", me)
    records = tmp_path / "market.jsonl"
    t0 = time.time() - 2 * INTERVAL_S  # the run's first interval, 23, two slots ago: the clock is in 25
    day0, day1 = record_day(t0, 23), record_day(t0 + INTERVAL_S, N)
    records.write_text(record(23, False, day0) + "\n" + record(24, False, day1) + "\n")
    sold: list[bytes] = []

    async def main() -> None:
        node = Node(tmp_path, both_chain(me, buyer, authority), authority)
        node.ledger.start()
        try:
            sold.extend([await node.agree(23, me, buyer), await node.agree(24, me, buyer)])
            for _ in range(2):  # a start on day 1, then a restart after the run's last interval
                market = settings(tmp_path, t0, first_interval=23, intervals=3)
                await asyncio.wait_for(stubbed_agent(node, me, market, []).run(), 60)
        finally:
            node.ledger.close()

    asyncio.run(main())
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    endings = [
        (doc["interval"], doc["day"], doc["settlement"]["trade"]) for doc in lines if "settlement" in doc
    ]
    assert sorted(endings) == [(23, day0, sold[0].hex()), (24, day1, sold[1].hex())]
    # before: [(23, day1, ...), (23, day1, ...), (24, day1, ...), (24, day1, ...)]
    assert all(doc["settlement"]["reason"].startswith("the trading day ended") for doc in lines[2:])


def run_from(tmp_path: Path, t0: float, interval_s: float) -> list[int]:
    """The intervals an agent of day 1 (24 to 29, `interval_s` slots from `t0`) runs on a chain of its own."""
    me, _peer, authority, genesis = days_chain(tmp_path, "mgmc-e12")
    ran: list[int] = []

    async def main() -> None:
        node = Node(tmp_path, genesis, authority)
        node.ledger.start()
        try:
            market = settings(tmp_path, t0, first_interval=N, intervals=6, interval_s=interval_s)
            await asyncio.wait_for(stubbed_agent(node, me, market, ran).run(), 60)
        finally:
            node.ledger.close()

    asyncio.run(main())
    return ran


def test_a_first_start_past_its_epoch_joins_the_interval_in_hand(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No record file: the MGMC never traded, so the day's past intervals hold nothing of its to settle."""
    interval_s = 3.0  # room for the replica's catch-up under load: it must start before 29 ends
    t0 = time.time() - 3 * interval_s - 0.5  # the clock is in 27, half a second in
    caplog.set_level(logging.INFO, "peergrid.edge.trader")
    ran = run_from(tmp_path, t0, interval_s)
    assert ran and ran[0] >= N + 3 and ran == list(range(ran[0], N + 6))  # before: [24, 25, ..., 29]
    (said,) = [r.getMessage() for r in caplog.records if "joins interval" in r.getMessage()]
    assert f"joins interval {ran[0]}" in said and "first start" in said


def test_a_restart_with_records_still_looks_from_the_days_first_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """P4/R44: a restart with records joins the first interval of the day nobody started trading in."""
    interval_s = 0.3
    t0 = time.time() - 3 * interval_s - 0.1  # the clock is in 27
    (tmp_path / "market.jsonl").write_text(record(N, True, record_day(t0, N)) + "\n")
    caplog.set_level(logging.INFO, "peergrid.edge.trader")
    assert run_from(tmp_path, t0, interval_s) == list(range(N, N + 6))
    (said,) = [r.getMessage() for r in caplog.records if "joins interval" in r.getMessage()]
    assert f"joins interval {N}" in said and "restart" in said
