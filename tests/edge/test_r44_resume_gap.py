"""R44: a restarted agent looks for the interval it joins from the day the wall clock is in
(`agent_day.Calendar.resume_from`), not from the configured first interval. An interval of an earlier day in
which no MGMC took part (every one down at once) stays neither closed nor joined for good; before, every
restart of a day-after-day agent (`market.days` null) joined it and ran every interval since, each long past.

The run is P4's (tests/edge/test_p4_days.py): a real MarketAgent on a real single-authority MGMC chain, a
24-interval day from interval 22 for six intervals, each interval stubbed to trade on the chain; here interval
23 (day 0's last) is left untraded, the agent stops while it waits for 26 (day 1) and is restarted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from test_p4_days import FIRST, INTERVAL_S, N, days_chain, scenario_file, settings, traded_run
from test_settlement import Node

from peergrid_controller.scenario import load_scenario
from peergrid_edge.agent_day import Calendar
from peergrid_edge.trader import MarketAgent

UNTRADED = 23  # day 0's last interval: nobody took part in it


def test_a_restart_on_day_one_does_not_go_back_to_an_untraded_interval_of_day_zero(tmp_path: Path) -> None:
    me, peer, authority, genesis = days_chain(tmp_path, "mgmc-r44")
    runs: list[list[int]] = [[], []]

    def agent_of(node: Node, t0: float, stop_at: int | None, run: list[int]) -> MarketAgent:
        agent = traded_run(node, settings(tmp_path, t0), me, peer, stop_at, [])
        traded = agent.run_interval

        async def run_interval(t: int) -> None:
            run.append(t)
            if t != UNTRADED:
                await traded(t)

        agent.run_interval = run_interval  # type: ignore[method-assign]
        return agent

    async def main() -> None:
        node = Node(tmp_path, genesis, authority)
        node.ledger.start()
        try:
            t0 = time.time() + 0.5
            await asyncio.wait_for(agent_of(node, t0, 26, runs[0]).run(), 60)  # stopped waiting for 26
            await asyncio.wait_for(agent_of(node, t0, None, runs[1]).run(), 60)
        finally:
            node.ledger.close()

    asyncio.run(main())
    assert runs[0] == [22, 23, 24, 25]
    assert runs[1] == [26, 27]  # before: [23, 24, 25, 26, 27], day 0's untraded 23 and all since again


def test_the_look_starts_at_the_day_now_is_in_within_the_runs_bounds(tmp_path: Path) -> None:
    day = load_scenario(scenario_file(tmp_path))
    t0 = 1_800_000_000.0
    at = lambda t: t0 + (t - FIRST) * INTERVAL_S + INTERVAL_S / 2  # noqa: E731  # wall second inside slot t
    forever = Calendar(settings(tmp_path, t0, intervals=None), day)
    assert forever.resume_from(t0 - 100.0) == FIRST  # before the run: its first interval
    assert forever.resume_from(at(23)) == FIRST  # the first day
    assert forever.resume_from(at(N + 5)) == N and forever.resume_from(at(400 * N + 7)) == 400 * N
    ended = Calendar(settings(tmp_path, t0), day)  # 22 to 27: a restart after the run looks past its last
    assert ended.resume_from(at(5 * N)) == FIRST + 6
    one = Calendar(settings(tmp_path, t0, intervals=None, days=1), day)  # the default one day, as before
    assert one.resume_from(at(FIRST)) == FIRST and one.resume_from(at(3 * N)) == N
