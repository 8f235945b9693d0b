"""The trader dispatches an interval's agreed plan as soon as its injection is submitted, before the DSO's
verdict (L4: until the dispatch the DERs ran the previous interval's setpoints, and a battery's sale in the
first interval was 44-54 % delivered), and dispatches again only when the DSO's answer changed the plan.

On a real single-authority `EdgeLedger`, a buyer's interval 1 is traded by its forward trades (the day-ahead
session and forward stage run first, `test_edge_forward`); the DSO is a stand-in for `_await_dso` that sees
what was dispatched when the agent started waiting for it, and answers with no change or with an adjustment
(the injection limited: `meet_limit`'s re-plan). `_dispatch` is a stand-in for the actuator: a plan's
setpoints written once are confirmed, the same setpoints again write nothing (as `dispatch.decide` skips a
setpoint the device already reports).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_edge_dayahead_session import free_day, ledger_for, run_on
from test_edge_forward import FakeDso, session_then_forward, trading_agent, venue_keys

from peergrid_edge.config import ControlSettings
from peergrid_edge.dso_answers import DsoAnswers
from peergrid_edge.resume import PLAN_CONFIRMED
from peergrid_edge.trader import MarketAgent


def setpoints_of(plan: Any) -> tuple[float, ...]:
    """What the stand-in actuator would write for a plan (its first step's DER powers)."""
    return tuple(
        round(float(x[0]), 6)
        for x in (plan.battery_kw, plan.genset_kw, plan.pv_used_kw, plan.shed_kw, plan.dso_net_export)
    )


@pytest.mark.parametrize("adjusted", [False, True])
def test_the_agreed_plan_is_dispatched_before_the_dso_answers_and_again_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, adjusted: bool
) -> None:
    scenario = free_day(3, 4)
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    buyer = scenario.microgrids[2]
    agent = trading_agent(FakeDso(ledger), keys_[buyer.name], scenario, buyer, tmp_path / "buyer.jsonl")
    dispatched: list[tuple[str, Any]] = []  # (when, plan)
    phase = {"now": "before the DSO"}
    written: set[tuple[float, ...]] = set()

    async def dispatch(_t: int, plan: Any) -> int:
        dispatched.append((phase["now"], plan))
        setpoints = setpoints_of(plan)
        agent.dispatched = setpoints
        if setpoints in written:
            return 0  # the devices already report these: nothing written, nothing confirmed
        written.add(setpoints)
        return 3

    async def dso(t: int, sched: Any, _market: Any, answers: DsoAnswers) -> dict[str, Any]:
        assert [when for when, _ in dispatched] == ["before the DSO"], (
            "not dispatched before the DSO's verdict"
        )
        assert dispatched[0][1] is answers.plan  # the agreed plan, as planned with the trades
        if adjusted:  # the DSO limits its import by 5 kW: the MG re-plans within it
            limit = {"min_injection_w": round(answers.injection_kw * 1000) + 5000}
            answers.limit = limit
            adjustment = agent.meet_limit(t, sched, answers.p2p_net_kw, limit)
            answers.adjustments.append(adjustment)
            answers.plan, answers.injection_kw = adjustment.plan, adjustment.injection_kw
        phase["now"] = "after the verdict"
        return {"interval": t, "final": True, "secure": True}

    monkeypatch.setattr(agent, "_dispatch", dispatch)
    monkeypatch.setattr(agent, "_await_dso", dso)

    async def play() -> None:
        await session_then_forward(ledger, keys_, scenario)
        await agent.run_interval(1)

    run_on(ledger, play)
    (line,) = (tmp_path / "buyer.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["net_p2p_kwh"] < 0  # it bought forward in interval 1
    times = record["times"]  # when it dispatched, for the lab report's delivery section
    assert times["bargained"] <= times["dispatched"] <= times["dso_done"]
    if adjusted:
        # the adjusted plan is dispatched once the DSO answered: never left undispatched
        assert [when for when, _ in dispatched] == ["before the DSO", "after the verdict"]
        assert setpoints_of(dispatched[1][1]) != setpoints_of(dispatched[0][1])
        assert record["final_injection_kw"] >= record["injection_kw"] + 4.999
        assert record["dispatch_confirmed"] == 3  # the adjusted plan's own writes
    else:
        # unchanged: one dispatch, whose confirmed writes count (a re-dispatch would confirm 0)
        assert [when for when, _ in dispatched] == ["before the DSO"]
        assert record["dispatch_confirmed"] == 3
        assert record[PLAN_CONFIRMED] is True


class Daemon:
    """The parts of `EdgeDaemon` the agent's `_dispatch` uses: one battery (fresh, or stale), its actuator's
    counters, and a dispatch tick that does what `dispatch.decide` + `Actuator.perform` would: write (and
    confirm) the setpoint unless the battery already reports it; with `alarm`, the write is not confirmed. Its
    market section (interval 0 starting now, 6-s intervals) times the plan, which is followed while valid
    (`ScheduleHolder.plan_rules`, the agent alive)."""

    def __init__(self, reports_w: float, stale: bool = False, alarm: bool = False) -> None:
        control = ControlSettings(max_w=100_000.0)
        settings = SimpleNamespace(name="bat", nature="battery", control=control, stale_after=10.0)
        snapshot = SimpleNamespace(
            reading={"power_w": reports_w, "setpoint_w": reports_w, "rating_w": 100_000.0}
        )
        health = SimpleNamespace(quarantined=lambda _now: False)  # a quarantine counts as stale too (Q10)
        self.states = {"bat": SimpleNamespace(settings=settings, last_good=snapshot, health=health,
                                              is_stale=lambda _now: stale)}  # fmt: skip
        self.clock = SimpleNamespace(monotonic=lambda: 0.0, wall=time.time)
        market = SimpleNamespace(t0=time.time(), interval_s=6.0, first_interval=0, intervals=None)
        self.settings = SimpleNamespace(dispatch=SimpleNamespace(period_s=1.0), market=market)
        self.actuator = SimpleNamespace(confirmed_total=0, writes_total=0, alarms_total={})
        self.reports_w, self.alarm = reports_w, alarm
        self.schedule: Any = None
        self.schedules = SimpleNamespace(plan_rules=self.plan_rules, set_plan=self.set_plan)

    def plan_rules(self) -> bool:
        return bool(self.schedule.valid_at(self.clock.wall()))

    def set_plan(self, schedule: Any, _bridge_until: float, _working: Any) -> None:
        self.schedule = schedule  # dispatched in its slot: followed by its own times (no bridge needed)

    async def dispatch_once(self, _dt: float) -> None:
        wanted = self.schedule.setpoints.get("bat", {}).get("power_w")
        if wanted is None or abs(wanted - self.reports_w) <= 1.0:
            return  # a stale battery is given no setpoint (`planning`); one already reported: nothing written
        self.actuator.writes_total += 1
        if self.alarm:
            self.actuator.alarms_total["bat"] = 1
        else:
            self.actuator.confirmed_total += 1


@pytest.mark.parametrize(
    ("reports_w", "stale", "alarm", "held"),
    [
        (25_000.0, False, False, True),  # the setpoint the interval before left: nothing to write, held
        (0.0, False, False, True),  # written and read back
        (0.0, False, True, False),  # written, not confirmed: alarmed
        (25_000.0, True, False, False),  # the battery's readings are stale: nothing can be confirmed
    ],
)
def test_an_interval_planned_as_the_one_before_writes_nothing_and_is_still_confirmed(
    reports_w: float, stale: bool, alarm: bool, held: bool
) -> None:
    """L4: an unchanged plan confirms 0 writes, and PLAN_CONFIRMED (what a meterless MG states by) said
    False for it (in the lab every steady interval: mg1, mg3-mg6 at 37). Held in full: fresh devices, no alarm,
    each setpoint confirmed or already reported."""
    agent = object.__new__(MarketAgent)
    agent.d = Daemon(reports_w, stale, alarm)  # type: ignore[assignment]
    agent.s = agent.d.settings.market  # type: ignore[assignment]
    agent.mg = SimpleNamespace(pv=(), intervals=96)  # type: ignore[assignment]
    plan = SimpleNamespace(battery_kw=(25.0,), genset_kw=(0.0,), genset_on=(False,), pv_used_kw=(0.0,),
                           shed_kw=(0.0,))  # fmt: skip
    confirmed = asyncio.run(agent._dispatch(0, plan))
    # a stale battery gets no setpoint: `decide` never writes it, and its share would go undelivered (Q10)
    assert agent.dispatched == ({} if stale else {"bat": {"power_w": 25_000.0}})
    assert confirmed == (1 if reports_w != 25_000.0 and not alarm else 0)
    assert agent.held is held
