"""An MGMC trading for months plans each day on the scenario's one day (`interval_plan.profile_index`): chain
interval t is read from the model at profile index t mod n and planned to its day's end, while the chain's
calls keep t, so a schedule on day 1000 is the size of day 0's. Before (50d7dd7), day k was planned on the
scenario repeated k + 1 times: the same horizon, but profiles (k + 1) x n long, checked whole for every
schedule (ieee33's mg5: 5.2 ms at day 0, 36.8 ms and 9.6 MB of profiles at day 365).

The runs are P4's (`test_p4_days`): a real MarketAgent of mg1 on a real single-authority MGMC chain, each
interval stubbed; sizes and orders are asserted, never times.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from edge_helpers import stand_in_daemon
from test_p4_days import INTERVAL_S, N, NoReadings, days_chain, scenario_file, settings
from test_settlement import Node

from peergrid_controller.builder import MgState
from peergrid_controller.scenario import load_scenario
from peergrid_edge import agent_dispatch, guard, interval_offer
from peergrid_edge.config import MarketSettings
from peergrid_edge.interval_plan import day_end, profile_index
from peergrid_edge.resume import record_day, resumed_counterfactual, stamped
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.keys import Keypair

DAY_1000 = 1000 * N


def agent_of(node: Node, market: MarketSettings, me: Keypair) -> MarketAgent:
    """A MarketAgent of mg1 over `market` on `node`'s chain, its daemon a stand-in with a clock and the market
    section (what the dispatch's schedule is timed by)."""
    clock = SimpleNamespace(monotonic=time.monotonic, wall=time.time)
    daemon = stand_in_daemon(
        node.ledger, "mg1", commit_interval_s=1.0, store=NoReadings(), keypair=me, clock=clock
    )
    daemon.settings.market = market
    return MarketAgent(daemon, market)  # type: ignore[arg-type]


def test_a_schedule_on_day_1000_is_the_size_of_day_0s(tmp_path: Path) -> None:
    """The agent joined at chain interval 1000 n + 3 (and, for the comparison, at 3): each interval's offer is
    prepared for real (`interval_offer.prepare`: the MG it counts on, its strict guard's budget and alternative,
    the day's plan on the chain's price forecast, its curve and bounds) and dispatched into the daemon's schedule
    (`agent_dispatch.plan_schedule`). Day 1000's schedule, profiles, budget, plan and forecast are day 0's."""
    me, peer, authority, genesis = days_chain(tmp_path, "mgmc-p5")
    rows: dict[int, list[dict[str, Any]]] = {0: [], 1000: []}

    async def run_day(node: Node, start: int) -> MarketAgent:
        market = settings(tmp_path, time.time() + 0.3, first_interval=start + 3, intervals=2,
                          rationality="strict", forecast="market")  # fmt: skip
        agent = agent_of(node, market, me)

        async def interval(t: int) -> None:
            offer = interval_offer.prepare(agent, t)
            daemon: Any = agent.d  # the stand-in
            schedule, _ = agent_dispatch.plan_schedule(daemon, offer.mg, INTERVAL_S, t, offer.plan)
            forecast = guard.forecast_for(agent, t)
            assert offer.fallback is not None and forecast is not None
            rows[start // N].append(
                {"t": t - start, "start": offer.sched.start, "horizon": offer.sched.horizon,
                 "profiles": offer.sched.mg.intervals, "scenario": agent.scenario.intervals,
                 "feed_in": offer.feed_in, "retail": offer.retail, "budget_day": offer.budget.day,
                 "plan_cost": offer.plan.cost, "alternative": offer.fallback.value, "forecast": forecast,
                 "valid_for": round((schedule.valid_until - agent._start_of(t)) / INTERVAL_S, 6),
                 "last": agent._last_interval() - start}
            )  # fmt: skip

        async def cleared(t: int) -> None:
            return None

        agent.run_interval = interval  # type: ignore[method-assign]
        agent._previous_cleared = cleared  # type: ignore[method-assign]
        await asyncio.wait_for(agent.run(), 60)
        return agent

    async def main() -> MarketAgent:
        node = Node(tmp_path, genesis, authority)
        node.ledger.start()
        try:
            await node.agree(
                2, me, peer
            )  # the chain's latest price before each day's interval 3: the forecast
            await node.agree(DAY_1000 + 2, me, peer)
            await run_day(node, 0)
            return await run_day(node, DAY_1000)
        finally:
            node.ledger.close()

    late = asyncio.run(main())
    day0, day1000 = rows[0], rows[1000]
    assert [(r["t"], r["start"], r["horizon"], r["profiles"], r["scenario"]) for r in day0] == [
        (3, 3, N - 3, N, N),
        (4, 4, N - 4, N, N),
    ]
    assert [len(r["forecast"]) for r in day0] == [N - 3, N - 4] and day0[0]["last"] == 4
    assert day0[0]["valid_for"] == 2.0  # the end of t + 1: not the day's last interval
    # day 1000: the same sizes, the same model figures (profile t mod n, to its day's end at chain 1001 n)
    assert [(r["horizon"], r["profiles"]) for r in day1000] == [(N - 3, N), (N - 4, N)]  # the size of day 0's
    for late_row, row in zip(day1000, day0, strict=True):
        assert late_row.keys() == row.keys()
        for key, value in row.items():
            assert late_row[key] == pytest.approx(value), key
    assert late.scenario.intervals == N and late.mg.intervals == N and late.s.first_interval == DAY_1000 + 3
    assert day_end(DAY_1000 + 3, N) == DAY_1000 + N and profile_index(DAY_1000 + 3, N) == 3


def test_a_restart_on_day_1000_carries_the_counterfactual_over_that_days_profiles(tmp_path: Path) -> None:
    """`resume.resumed_counterfactual` from a record of interval 1000 n + 2 to 1000 n + 5 carries the
    conventional path through 1000 n + 3 and + 4 at profiles 3 and 4, as from 2 to 5 on day 0 (before, the model
    it carried on was the agent's repeated scenario: profiles 1000 n + 3 of one day long raised)."""
    mg = load_scenario(scenario_file(tmp_path)).microgrids[0]
    state = MgState((62.5,), (), (), ())
    carried = []
    for start in (0, DAY_1000):
        records = tmp_path / f"records-{start}.jsonl"
        day = record_day(1_800_000_000.0, start)
        records.write_text(
            json.dumps(stamped({"interval": start + 2, "conv_state": asdict(state)}, day)) + "\n"
        )
        carried.append(resumed_counterfactual(records, mg, 1.0, N, start + 5, day))
    assert carried[0] is not None and carried[1] == carried[0]


@pytest.mark.parametrize("bad", [0, -24])
def test_a_day_of_no_intervals_has_no_profile_index(bad: int) -> None:
    with pytest.raises(ValueError, match=f"a day of {bad} intervals has no profile for interval 5"):
        profile_index(5, bad)
