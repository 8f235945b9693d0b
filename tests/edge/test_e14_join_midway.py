"""E14: a fresh MGMC (no records) started within an interval joins the interval in hand (E12) and offers in it
only while the time left holds its bargaining's rounds (`interval_offer.late_rules`, `config.rounds_that_fit`);
else it offers nothing there and says why in one WARNING line.

Why it offered nothing in U7/E12 (the one 'offering nothing' line): on a settle_by_both chain its PCC meter did
not see the interval's start (the daemon polls from its own start, after the interval's), and the DSO settles
a side it cannot meter unmetered: a sale at 0 Wh (E7). That stays: no time left makes it meterable.

The runs are E12's (tests/edge/test_e12_days_start.py, P4's day): a real MarketAgent on a real single-authority
MGMC chain (50-ms blocks, no re-bargaining), the interval in hand planned for real (`interval_offer.prepare`:
the controller's MILP, the guard, the chain's rules); the bargaining and what follows are not run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from edge_helpers import stand_in_daemon
from test_edge_settle_both import both_chain, meter_leaves
from test_p4_days import N, NoReadings, days_chain, settings
from test_settlement import Node

from peergrid_edge import interval_offer
from peergrid_edge.config import rounds_that_fit
from peergrid_edge.pcc_readings import MgMetering
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.keys import Keypair, write_keyfile

LAST = N + 3  # the run: day 1's intervals 24 to 27, the clock in 27 when it starts


class MeterSince:
    """An edge store of PCC meter readings every 2 s from `first_s` (wall s) on, for any commitment interval."""

    def __init__(self, first_s: float) -> None:
        self.points = [(round((first_s + 2 * k) * 1000), 1000.0 + k, 50.0) for k in range(10)]

    def leaves(self, interval: int) -> list[bytes]:
        return meter_leaves(self.points)

    def is_sealed(self, interval: int) -> bool:
        return True


def join_in_hand(
    tmp_path: Path, interval_s: float, max_rounds: int, into_s: float, meter_late_s: float | None = None
) -> list[tuple[int, Any]]:
    """A first start `into_s` seconds into interval 27 (the run's last); the interval it runs, planned: (t,
    its offer's rules). `meter_late_s`: on a settle_by_both chain, with a PCC meter whose first reading came
    that long after 27's start (else no settle_by_both, no meter)."""
    tmp_path.mkdir(exist_ok=True)
    if meter_late_s is None:
        me, _peer, authority, genesis = days_chain(tmp_path, "mgmc-e14")
    else:
        me, peer, authority = (Keypair.generate() for _ in range(3))
        write_keyfile(tmp_path / "anonym.key", me)
        genesis = both_chain(me, peer, authority)
    offered: list[tuple[int, Any]] = []

    async def main() -> None:
        node = Node(tmp_path, genesis, authority)
        node.ledger.start()
        try:
            t0 = time.time() - 3 * interval_s - into_s
            market = settings(tmp_path, t0, first_interval=N, intervals=4, interval_s=interval_s,
                              max_rounds=max_rounds)  # fmt: skip
            daemon = stand_in_daemon(
                node.ledger, "mg1", commit_interval_s=6.0, store=NoReadings(), keypair=me
            )
            agent = MarketAgent(daemon, market)  # type: ignore[arg-type]

            async def interval(t: int) -> None:
                offered.append((t, interval_offer.prepare(agent, t).rules))
                daemon.stopping.set()  # the bargaining and the rest are not this test's

            async def cleared(t: int) -> None:
                return None

            agent.run_interval = interval  # type: ignore[method-assign]
            agent._previous_cleared = cleared  # type: ignore[method-assign]
            if meter_late_s is not None:
                window = lambda t: (round(agent._start_of(t) * 1000), round(agent._start_of(t + 1) * 1000))  # noqa: E731
                store = MeterSince(agent._start_of(LAST) + meter_late_s)
                metering = MgMetering(store, 2.0, 6.0, window, lambda t: [], me.public, me.public, None)
                agent._metering = lambda: metering  # type: ignore[method-assign]
            await asyncio.wait_for(agent.run(), 60)
        finally:
            node.ledger.close()

    asyncio.run(main())
    return offered


def late_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "offering nothing" in r.getMessage()]


def test_joined_with_time_for_its_rounds_it_plans_and_offers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """30-s intervals, 10 rounds: 1.33 s of rounds at 50-ms blocks; joined 0.5 s in, it offers on its rules."""
    caplog.set_level(logging.INFO, "peergrid.edge.trader")
    ((t, rules),) = join_in_hand(tmp_path, 30.0, 10, 0.5)
    assert t == LAST and rules.max_quantity_kwh == math.inf
    assert late_lines(caplog) == []
    (said,) = [r.getMessage() for r in caplog.records if "joins interval" in r.getMessage()]
    assert f"joins interval {LAST}" in said and "first start" in said


def test_joined_too_late_for_its_rounds_it_offers_nothing_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """3-s intervals, up to 50 rounds: 22 fit an interval (2.93 s of it at 50-ms blocks); joined 0.5 s in, the
    2.5 s left hold at most 18. Before: it offered on its rules (inf) and would bargain past the end."""
    caplog.set_level(logging.INFO, "peergrid.edge.trader")
    ((t, rules),) = join_in_hand(tmp_path, 3.0, 50, 0.5)
    assert t == LAST and rules.max_quantity_kwh == 0.0
    (said,) = late_lines(caplog)
    assert said.startswith(f"interval {LAST}: offering nothing: this MG joined it after its start")
    assert "not the 22 it may take (1 bargaining(s), two 50-ms blocks a round" in said
    assert "offers from the next interval" in said


def test_a_start_its_meter_did_not_see_offers_nothing_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The U7/E12 case, why it offered nothing: settle_by_both, and its PCC meter's first reading came after the
    interval started (the daemon started within it): offering nothing for the meter (E7), with time enough for
    its rounds or not, one line each, never the late one beside it."""
    caplog.set_level(logging.INFO, "peergrid.edge.trader")
    ((t, rules),) = join_in_hand(tmp_path / "in-time", 30.0, 10, 0.5, meter_late_s=0.2)
    assert t == LAST and rules.max_quantity_kwh == 0.0
    (said,) = late_lines(caplog)
    assert "PCC meter did not see the interval's start" in said and "first reading after it" in said
    caplog.clear()
    ((t, rules),) = join_in_hand(tmp_path / "late", 3.0, 50, 0.5, meter_late_s=0.2)
    assert t == LAST and rules.max_quantity_kwh == 0.0
    (said,) = late_lines(caplog)
    assert "PCC meter did not see the interval's start" in said


@pytest.mark.parametrize(
    ("left_s", "late"),
    [(2.94, False), (2.93, True), (0.0, True), (-1.0, True)],
)
def test_the_time_left_against_the_rounds_of_a_whole_interval(left_s: float, late: bool) -> None:
    """3 s at 50-ms blocks, one bargaining: 22 rounds fit (config.rounds_that_fit), 2.933 s needed."""
    assert rounds_that_fit(3.0, 50, 1) == 22
    why = interval_offer.too_late(left_s, 3.0, 50, 1, 50)
    assert (why is not None) == late
    if late:
        assert f"the {max(0.0, left_s):.1f} s left of its 3 s hold" in why  # type: ignore[operator]


def test_fewer_rounds_configured_need_less_time_and_none_fitting_asks_none() -> None:
    assert (
        interval_offer.too_late(4.27, 900.0, 200, 4, 2) is None
    )  # 2 rounds of 4 bargainings at 200-ms blocks: 4.267 s
    assert interval_offer.too_late(4.26, 900.0, 200, 4, 2) is not None
    assert (
        interval_offer.too_late(0.0, 1.0, 600, 4, 2) is None
    )  # no round fits a whole interval: a late join is no worse


def test_only_a_join_within_the_interval_s_slot_is_held_to_the_time_left() -> None:
    """A first start joins the interval in hand (or a later one); a restart with records may join a past one and
    walk on (P4, E12): that stays as it was, as do the intervals it comes to after."""
    agent: Any = SimpleNamespace(_start_of=lambda t: 100.0 + 10 * t)
    for at, joined in ((105.0, 0), (100.0, None), (99.0, None), (110.0, None), (125.0, None)):
        interval_offer.note_join(agent, 0, at)
        assert agent.joined_late == joined
