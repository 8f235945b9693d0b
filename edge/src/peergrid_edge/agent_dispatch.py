"""The trading agent's dispatch of an interval's plan to its own DERs, and whether the plan was held in full.

Promises: `plan_schedule` turns the controller's plan for interval t into the daemon's schedule over the
controllable devices it sees now (the PV setpoints capped at the scenario's available PV), valid until
`plan_valid_until`: the end of interval t + 1 (the next interval's bargaining and DSO verdict covered, until
whose dispatch the DERs run t's setpoints), the day's last interval only until its own end, so by the clock no
plan drives the DERs more than one interval past its own when the day ended or the next interval failed before
its dispatch (review17 S-A; before, four intervals and 30 s whatever came after). `set_plan` hands it to the
daemon's holder with its bridge (`bridge_until`: four intervals and 30 s from its dispatch, d926202's bound)
and the agent's word on which interval it works on: past its `valid_until` the plan is followed while the agent
still works on t or t + 1, never once it moved past t + 1 or its day ended (`schedule_holder`). So an agent
behind its slots (it starts each interval when the one before ended; at 30 MGMCs an interval's work outlasted
two slots) is followed from plan to plan with no safe-state gap, also where it first falls behind (E22: ~1 s of
safe state in slot 38 of a 2.5-s lab, plan 37 run out at the end of 38 before 38's late dispatch), and the
day's last interval dispatched after its end until the agent is done with it. The plan is followed so whatever
`dispatch.schedule_timeout_s` (an MQTT controller's silence allowed, not this agent's: its liveness is its
task's, `schedule_holder`); after it a live controller's schedule, else the safe state. `dispatch_held` runs one
dispatch tick and says how many writes the actuator confirmed and whether the plan was held in full: the tick
followed it (not a plan past its end), every controllable device fresh, no new alarm, and its writes confirmed
or none needed (the devices already report the setpoints: an interval planned as the one before writes
nothing). Writes only this MG's devices, through the daemon's actuator (read-back confirmed there). Split
from trader.py, whose `MarketAgent._dispatch` calls them and keeps what they return.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from peergrid_controller.model import Microgrid
from peergrid_edge.actuation import view_of
from peergrid_edge.config import MarketSettings, slot_start
from peergrid_edge.dispatch import DeviceView, Schedule
from peergrid_edge.interval_plan import day_end, profile_index
from peergrid_edge.planning import schedule_from_plan

if TYPE_CHECKING:
    from peergrid_edge.daemon import EdgeDaemon


# a plan past its slots is followed at most this long from its dispatch while the agent works on its interval or
# the next (d926202's bound, which an agent 2 slots behind at 30 MGMCs needed), in intervals + s
BEHIND_INTERVALS, BEHIND_S = 4, 30.0


def plan_valid_until(market: MarketSettings, day_end: int, t: int) -> float:
    """Until when chain interval t's plan is followed by the clock alone with no newer plan: the end of t + 1,
    the day's last interval's own end. `day_end`: the chain interval after the last of t's day
    (`interval_plan.day_end`; the agent's `_last_interval`, with `market.intervals`)."""
    last = day_end - 1
    if market.intervals is not None:
        last = min(last, market.first_interval + market.intervals - 1)
    return slot_start(market, t + 1) if t >= last else slot_start(market, t + 2)


def bridge_until(market: MarketSettings, wall: float) -> float:
    """How long a plan dispatched at `wall` may be followed past its `plan_valid_until` while the agent still
    works on its interval or the next: four intervals and 30 s from its dispatch (a live agent stuck on them
    is not followed for ever)."""
    return wall + BEHIND_INTERVALS * market.interval_s + BEHIND_S


def plan_schedule(
    daemon: EdgeDaemon, mg: Microgrid, interval_s: float, t: int, plan: Any
) -> tuple[Schedule, Mapping[str, DeviceView]]:
    """Chain interval t's plan as the daemon's schedule, and the controllable devices' views it was made for; the
    PV available is `mg`'s forecast at t's profile index (`interval_plan.profile_index`)."""
    market = daemon.settings.market
    if market is None or market.interval_s != interval_s:
        raise ValueError("the agent's plan is timed by the daemon's market section (its interval_s)")
    now, wall = daemon.clock.monotonic(), daemon.clock.wall()
    views = {n: v for n, s in daemon.states.items() if (v := view_of(s, now)) is not None}
    available = sum(p.available_kw[profile_index(t, mg.intervals)] for p in mg.pv)
    until = plan_valid_until(market, day_end(t, mg.intervals), t)
    return schedule_from_plan(plan, 0, views, t, wall, until, available), views


def set_plan(daemon: EdgeDaemon, schedule: Schedule, working: Callable[[], int | None]) -> None:
    """`schedule` (`plan_schedule`'s) as the agent's plan in the daemon's holder, bridged from its dispatch (its
    `valid_from`) while `working()`, the interval the agent is on, is its interval or the next."""
    market = daemon.settings.market
    assert market is not None  # `plan_schedule` made it by the market section
    daemon.schedules.set_plan(schedule, bridge_until(market, schedule.valid_from), working)


async def dispatch_held(daemon: EdgeDaemon, views: Mapping[str, DeviceView]) -> tuple[int, bool]:
    """One dispatch tick of the schedule set: (the writes the actuator confirmed, the plan held in full)."""
    actuator = daemon.actuator
    before, writes, alarms = (
        actuator.confirmed_total,
        actuator.writes_total,
        sum(actuator.alarms_total.values()),
    )
    followed = daemon.schedules.plan_rules()  # a plan past its end is not followed: safe or the controller's
    await daemon.dispatch_once(daemon.settings.dispatch.period_s)
    confirmed = int(actuator.confirmed_total - before)
    fresh = bool(views) and not any(v.stale for v in views.values())
    held = (
        followed
        and fresh
        and sum(actuator.alarms_total.values()) == alarms
        and (confirmed > 0 or actuator.writes_total == writes)
    )
    return confirmed, held
