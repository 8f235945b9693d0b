"""An MGMC restarted before the new day's first record carries the conventional counterfactual as a running one
does (review R44, `market.days` on one chain). A running agent carries its battery state into the next day
(`agent_day.next_day` keeps `conv_state`); a restart before the new day's first record read the day's own lines
only and started it from the real battery (R44's /tmp/r44_f5.py: None at 24 and 25 although day 0's interval 23
recorded 12.5 kWh), so `cost_conventional` and the lab's p2p_not_dearer differed between a running and a
restarted MGMC for the same day. Now the restart starts where the day before's last record left it
(`resume.resumed_counterfactual`'s `day_before`): on the reader, and through a real MarketAgent (P4's run).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from test_p4_days import FIRST, N, days_chain, scenario_file, settings, traded_run
from test_settlement import Node

from peergrid_controller.builder import MgState
from peergrid_controller.scenario import load_scenario
from peergrid_edge.resume import initial_state, record_day, resumed_counterfactual, stamped

T0 = 1_800_000_000.0
DAY0, DAY1 = record_day(T0, FIRST), record_day(T0 + (N - FIRST) * 0.6, N)
AT_23 = MgState((12.5,), (), (), ())  # the counterfactual's battery where day 0's last record (23) left it


def conv_line(t: int, state: MgState, day: str) -> str:
    return json.dumps(stamped({"interval": t, "conv_state": asdict(state)}, day))


def test_a_restart_before_the_new_days_first_record_starts_where_the_day_before_ended(tmp_path: Path) -> None:
    """R44's rows: day 0's interval 23 recorded 12.5 kWh, nothing of day 1 recorded; a restart at 24 starts the
    counterfactual there, one at 25 carries it through 24 (as a restart within a day carries it)."""
    mg = load_scenario(scenario_file(tmp_path)).microgrids[0]
    records = tmp_path / "market.jsonl"
    records.write_text(
        conv_line(22, MgState((40.0,), (), (), ()), DAY0) + "\n" + conv_line(23, AT_23, DAY0) + "\n"
    )
    assert resumed_counterfactual(records, mg, 1.0, N, N, DAY1, DAY0) == AT_23
    carried = resumed_counterfactual(records, mg, 1.0, N, N + 1, DAY1, DAY0)
    assert carried is not None and carried == resumed_counterfactual(records, mg, 1.0, N, N + 1)  # from 23
    assert carried != AT_23  # 24 was carried, not skipped
    # the run's first day has no day before: the day's own lines only, as before (review18 K-1)
    assert resumed_counterfactual(records, mg, 1.0, N, N, DAY1) is None


def test_the_days_own_record_comes_before_the_day_befores_and_two_days_back_is_not_read(
    tmp_path: Path,
) -> None:
    mg = load_scenario(scenario_file(tmp_path)).microgrids[0]
    day2 = record_day(T0 + (2 * N - FIRST) * 0.6, 2 * N)
    own = MgState((3.0,), (), (), ())
    records = tmp_path / "market.jsonl"
    # written out of order too: a line of the day before after the day's own still loses to it
    records.write_text(conv_line(N, own, DAY1) + "\n" + conv_line(23, AT_23, DAY0) + "\n")
    assert resumed_counterfactual(records, mg, 1.0, N, N + 1, DAY1, DAY0) == own
    # an MGMC down all of day 1: day 0's end is not day 2's start, which starts afresh
    records.write_text(conv_line(23, AT_23, DAY0) + "\n")
    assert resumed_counterfactual(records, mg, 1.0, N, 2 * N, day2, DAY1) is None


def test_a_real_agent_restarted_at_the_new_days_first_interval_resumes_the_counterfactual_it_carried(
    tmp_path: Path,
) -> None:
    """P4's run (a real MarketAgent on a real chain, its intervals stubbed with a real MILP each): the first run
    trades 22 and 23 and stops while it waits for 24, holding the counterfactual it would carry into day 1; the
    restart joins 24 with nothing of day 1 recorded and starts from that same state. Before: from the battery
    it read (its own P2P state afresh)."""
    me, peer, authority, genesis = days_chain(tmp_path, "mgmc-e8-days")
    first_run: list[dict[str, Any]] = []
    second_run: list[dict[str, Any]] = []

    async def main() -> tuple[Any, Any]:
        node = Node(tmp_path, genesis, authority)
        node.ledger.start()
        try:
            t0 = time.time() + 0.5
            first = traded_run(node, settings(tmp_path, t0), me, peer, N, first_run)
            await asyncio.wait_for(first.run(), 60)  # stopped while it waits for interval 24
            second = traded_run(node, settings(tmp_path, t0), me, peer, N + 1, second_run)
            await asyncio.wait_for(second.run(), 60)  # runs 24, stopped while it waits for 25
            return first, second
        finally:
            node.ledger.close()

    first, second = asyncio.run(main())
    assert [r["t"] for r in first_run] == [22, 23] and [r["t"] for r in second_run] == [N]
    carried = first.conv_state  # what the running agent takes into day 1 (`next_day` keeps it)
    assert carried is not None and carried != initial_state(second.mg, second.d.states)  # the battery read
    assert second_run[0]["conv_at_start"] == carried
