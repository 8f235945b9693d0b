"""An MGMC trades day after day on the same chain (`market.days`, `agent_day.Calendar`): interval numbers go on
past the scenario's n (the chain's interval clock is epoch + k x interval for any k), interval t is planned on
the scenario's profile t mod n to the end of its day (on the scenario's one day, never repeated), its records
carry its day's stamp (`resume.record_day`), its guard's budget starts afresh each day, and a restart on the
second day joins that day and resumes that day's budget and counterfactual, not the first day's. Before, the
agent's loop ended with the scenario's last interval: a pilot traded one day and stopped (ansible/README.md
step 6).

The run: a real MarketAgent on a real single-authority MGMC chain, a 24-interval day (hourly), from interval 22
of day 0 for six intervals (22-23 of day 0, 24-27 of day 1); each interval (stubbed: no peers, no DSO) plans
for real (`MarketAgent._schedule`, the controller's MILP), starts and charges the guard's budget as the trader
does, and trades on the chain under the agent's anonym (an offer, the counterparty's bid, the close).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import stand_in_daemon
from pydantic import ValidationError
from test_settlement import Node

from peergrid_controller.builder import MgState
from peergrid_controller.scenario import load_scenario
from peergrid_edge.agent_day import Calendar
from peergrid_edge.chain_bargaining import position
from peergrid_edge.config import MarketSettings
from peergrid_edge.interval_plan import day_end, profile_index
from peergrid_edge.resume import record_day
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair, write_keyfile

SCENARIO = """\
name: p4-days
feeder: ieee33
start: "2026-06-21T00:00:00Z"
speed: 1
profiles:
  sunny:
    irradiance: [[0, 0], [6, 0], [12, 950], [18, 0], [24, 0]]
    temperature: [[0, 14], [14, 28], [24, 14]]
    load: [[0, 0.6], [12, 0.8], [24, 0.6]]
market:
  interval_minutes: 60
  retail: [[0, 0.10], [1, 0.12], [2, 0.20], [22, 0.25], [23, 0.30], [24, 0.30]]
microgrids:
  - name: mg1
    bus: 18
    profile: sunny
    devices:
      - {name: pv1, kind: pv, params: {rating_w: 50000}}
      - {name: bess1, kind: battery, params: {capacity_wh: 100000, max_charge_w: 30000, max_discharge_w: 30000,
                                              soc_pct: 50}}
      - {name: load, kind: load, params: {critical_w: 20000, sheddable_w: 10000}}
  - name: mg2
    bus: 22
    profile: sunny
    devices:
      - {name: load, kind: load, params: {critical_w: 40000, sheddable_w: 10000}}
"""
N = 24  # intervals a day
FIRST, COUNT, INTERVAL_S = 22, 6, 0.6
PRICE, WH = 150, 2000


def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    return path


def settings(tmp_path: Path, t0: float, **fields: Any) -> MarketSettings:
    named: dict[str, Any] = {"first_interval": FIRST, "intervals": COUNT, "days": None, "interval_s": INTERVAL_S,
                             **fields}  # fmt: skip
    return MarketSettings(scenario=scenario_file(tmp_path), anonym_key_file=tmp_path / "anonym.key", t0=t0,
                          phase_timeout_s=0.1, record_file=tmp_path / "market.jsonl", **named)  # fmt: skip


class NoReadings:
    def leaves(self, interval: int) -> list[bytes]:
        return []

    def is_sealed(self, interval: int) -> bool:
        return False


def days_chain(tmp_path: Path, chain: str) -> tuple[Keypair, Keypair, Keypair, Genesis]:
    """A single-authority MGMC chain of two anonyms (this MG's, its key written to tmp_path/anonym.key, and a
    peer's): the keys (me, peer, authority) and its genesis."""
    me, peer, authority = (Keypair.generate() for _ in range(3))
    write_keyfile(tmp_path / "anonym.key", me)
    genesis = Genesis(
        chain=chain, time=0, authorities=(authority.public,),
        accounts=(Account(authority.public, ("mgmc",)), Account(me.public, ("anonym",)),
                  Account(peer.public, ("anonym",))),
        contracts=("market",), params=Params(credit_limit=10**12),
    )  # fmt: skip
    return me, peer, authority, genesis


def traded_run(
    node: Node,
    market: MarketSettings,
    me: Keypair,
    peer: Keypair,
    stop_at: int | None,
    seen: list[dict[str, Any]],
) -> MarketAgent:
    """A MarketAgent of mg1 over `market`, each interval stubbed as the module says (one row in `seen` each);
    `stop_at`: the daemon stops while the agent waits for that interval."""
    daemon = stand_in_daemon(node.ledger, "mg1", commit_interval_s=1.0, store=NoReadings(), keypair=me)
    agent = MarketAgent(daemon, market)  # type: ignore[arg-type]

    async def cleared(t: int) -> None:
        if t == stop_at:
            agent.d.stopping.set()

    async def interval(t: int) -> None:
        assert agent.state is not None
        conv_at_start = agent.conv_state
        budget = agent.budget or agent._start_budget(t, agent.resumed)
        spent_before = budget.spent
        sched, _plan = agent._schedule(t, None)  # the controller's MILP from t to the end of t's day
        offer = {"interval": t, "round": 1, "price": PRICE, "quantity": WH, "clean": True}
        assert (await node.submit(me, "offer", offer)).landed
        bid = {"interval": t, "round": 1, "demands": [{"seller": me.public, "quantity": WH}]}
        assert (await node.submit(peer, "bid", bid)).landed
        assert (await node.submit(me, "trade", {"interval": t})).landed
        mine, net_kwh, money = position(agent.ledger.state("mgmc"), t, me.public)
        sched.dispatch(0.0)  # a stub: the trade is not delivered, only booked
        cost, agent.state = sched.first_interval_cost_and_state()
        budget.charge(cost - money)
        agent.conv_state = agent.state
        seen.append({"t": t, "day": agent.day, "first": agent.s.first_interval, "horizon": sched.horizon,
                     "start": sched.start, "retail": sched.mg.tariff.retail[sched.start],
                     "profiles": sched.mg.intervals, "trades": len(mine), "net_kwh": net_kwh,
                     "budget": budget, "spent_before": spent_before, "conv_at_start": conv_at_start})  # fmt: skip
        agent._record({"interval": t, "mg": "mg1", "trades": len(mine), "cost_p2p": cost - money,
                       "budget_day": budget.day, "budget_left": budget.left,
                       "conv_state": asdict(agent.conv_state)})  # fmt: skip

    agent._previous_cleared = cleared  # type: ignore[method-assign]
    agent.run_interval = interval  # type: ignore[method-assign]
    return agent


def test_the_agent_trades_into_the_next_day_and_a_restart_there_resumes_that_day(tmp_path: Path) -> None:
    me, peer, authority, genesis = days_chain(tmp_path, "mgmc-days")
    base = load_scenario(scenario_file(tmp_path)).microgrids[0]
    first_run: list[dict[str, Any]] = []
    second_run: list[dict[str, Any]] = []

    async def main() -> tuple[float, MarketAgent, MarketAgent]:
        node = Node(tmp_path, genesis, authority)
        node.ledger.start()
        try:
            t0 = time.time() + 0.5
            first = traded_run(node, settings(tmp_path, t0), me, peer, 26, first_run)
            await asyncio.wait_for(first.run(), 60)  # stopped while it waits for interval 26
            second = traded_run(node, settings(tmp_path, t0), me, peer, None, second_run)
            await asyncio.wait_for(second.run(), 60)
            return t0, first, second
        finally:
            node.ledger.close()

    t0, first, second = asyncio.run(main())
    day0, day1 = record_day(t0, FIRST), record_day(t0 + (N - FIRST) * INTERVAL_S, N)
    assert first.day == day1 and first.s.first_interval == N  # on day 1 when it stopped
    assert [(r["t"], r["day"], r["first"]) for r in first_run] == [
        (22, day0, 22),
        (23, day0, 22),
        (24, day1, 24),
        (25, day1, 24),
    ]
    # interval t is planned on the scenario's profile t mod n, from t to the end of t's day, on the one day
    for r in first_run + second_run:
        assert r["start"] == r["t"] % N and r["retail"] == base.tariff.retail[r["t"] % N]
        assert r["horizon"] == (r["t"] // N + 1) * N - r["t"] and r["profiles"] == N
    # it trades in day 1 on the same chain, under the same anonym
    assert [(r["t"], r["trades"], r["net_kwh"]) for r in first_run[2:] + second_run] == [
        (t, 1, WH / 1000)
        for t in (24, 25, 26, 27)  # sold
    ]
    # the guard's budget is the day's: started afresh at 24, nothing of day 0 spent in it
    b22, b24, b25 = first_run[0]["budget"], first_run[2]["budget"], first_run[3]["budget"]
    assert b24 is not b22 and b25 is b24
    # the restart at 26 joins day 1 (its stamp and first interval) and resumes day 1's budget and spend from its
    # records, not day 0's, and the counterfactual where interval 25's record left it
    assert [(r["t"], r["day"], r["first"]) for r in second_run] == [(26, day1, 24), (27, day1, 24)]
    resumed = second_run[0]["budget"]
    lines = [json.loads(line) for line in (tmp_path / "market.jsonl").read_text().splitlines()]
    of_day1 = [doc for doc in lines if doc.get("day") == day1 and doc["interval"] in (24, 25)]
    assert resumed.day == pytest.approx(b24.day) and resumed.day == of_day1[0]["budget_day"]
    assert second_run[0]["spent_before"] == pytest.approx(sum(doc["cost_p2p"] for doc in of_day1))
    assert first_run[2]["spent_before"] == 0.0  # day 1's first interval: nothing of day 0's spend
    assert second_run[0]["conv_at_start"] == MgState(
        **{k: tuple(v) for k, v in of_day1[-1]["conv_state"].items()}
    )
    assert second.phase == "finished" and second.s.first_interval == N  # the run's last interval: 27


def test_the_calendar_maps_chain_intervals_onto_the_scenarios_day(tmp_path: Path) -> None:
    day = load_scenario(scenario_file(tmp_path))
    s = settings(tmp_path, 1_800_000_000.0, intervals=None)
    calendar = Calendar(s, day)
    assert calendar.settings_of(0) is s and calendar.last() is None  # day after day
    assert calendar.day_for(5) == 0 and calendar.day_for(22) == 0 and calendar.day_for(24 * 40 + 3) == 40
    later = calendar.settings_of(3)
    assert (later.first_interval, later.t0) == (72, s.t0 + (72 - FIRST) * INTERVAL_S)
    assert later.intervals is None and later.days is None
    # day 3's chain intervals 72-95 read the one day's profiles 0-23, each planned to chain interval 96
    assert [(profile_index(t, N), day_end(t, N)) for t in (72, 80, 95, 96)] == [
        (0, 96),
        (8, 96),
        (23, 96),
        (0, 120),
    ]
    # the run's bounds: `days` from the first interval's day, `intervals` counted across days
    assert Calendar(settings(tmp_path, 0.0, intervals=None, days=2), day).last() == 2 * N - 1
    assert Calendar(settings(tmp_path, 0.0, days=None), day).last() == FIRST + COUNT - 1
    assert Calendar(settings(tmp_path, 0.0), day).settings_of(1).intervals == FIRST + COUNT - N
    one = Calendar(
        settings(tmp_path, 0.0, intervals=None, days=1), day
    )  # the default: the one day, as before
    assert one.last() == N - 1 and one.day_for(N + 5) == 0


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"days": 0}, "greater than or equal to 1"),
        ({"days": None, "dayahead": True}, "needs market.dayahead off"),
        ({"days": 3, "dayahead": True}, "needs market.dayahead off"),
    ],
)
def test_days_the_agent_cannot_run_are_refused(tmp_path: Path, fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        settings(tmp_path, 0.0, **fields)
    assert settings(tmp_path, 0.0, dayahead=True, days=1).days == 1  # one day with the day-ahead, as before


def test_a_restart_early_in_day_two_states_the_sale_its_day_one_records_confirm(tmp_path: Path) -> None:
    """A meterless seller restarted at interval 25 (day 1), whose sale of interval 23 (day 0's last) its last
    run dispatched (its day-0 verdict line) but did not state; the buyer stays silent. The restart picks up the
    day before's unsettled trades with that day's verdicts (`pick_up`'s `day_before`): it states the agreed
    quantity and the chain settles it. Before, it picked up day 1's intervals only (24 on) and left the sale to
    the buyer's word."""
    from test_edge_settle_both import both_chain
    from test_edge_settle_restart import record
    from test_settlement import KWH

    from peergrid_ledger import query

    me, buyer, authority = (Keypair.generate() for _ in range(3))
    write_keyfile(tmp_path / "anonym.key", me)
    records = tmp_path / "market.jsonl"
    ran: list[int] = []

    async def main() -> tuple[MarketAgent, dict[str, Any] | None]:
        node = Node(tmp_path, both_chain(me, buyer, authority), authority)
        node.ledger.start()
        try:
            sold = await node.agree(23, me, buyer)
            await node.agree(24, me, buyer)  # day 1 started: the restart joins 25
            t0 = time.time() - 2 * INTERVAL_S  # the run's first interval, 23, two slots ago
            records.write_text(record(23, True, record_day(t0, 23)) + "\n")  # day 0's, as its last run wrote
            daemon = stand_in_daemon(
                node.ledger, "mg1", commit_interval_s=6.0, store=NoReadings(), keypair=me
            )
            agent = MarketAgent(daemon, settings(tmp_path, t0, first_interval=23, intervals=3))  # type: ignore[arg-type]

            async def interval(t: int) -> None:
                ran.append(t)

            async def cleared(t: int) -> None:
                return None

            agent.run_interval = interval  # type: ignore[method-assign]
            agent._previous_cleared = cleared  # type: ignore[method-assign]
            await asyncio.wait_for(agent.run(), 60)
            return agent, query.settlement(node.ledger.state("mgmc"), sold)
        finally:
            node.ledger.close()

    agent, standing = asyncio.run(main())
    assert ran == [25] and agent.s.first_interval == N and agent.recalled == {23: True}
    ended = [json.loads(line) for line in records.read_text().splitlines()][1:]
    (statement,) = [doc for doc in ended if doc.get("interval") == 23]
    assert statement["settlement"]["party"] == "seller" and statement["settlement"]["delivered"] == KWH
    assert standing is not None and standing["state"] == "settled"
