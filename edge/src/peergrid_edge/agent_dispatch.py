"""The trading agent's dispatch of an interval's plan to its own DERs, and whether the plan was held in full.

Promises: `plan_schedule` turns the controller's plan for interval t into the daemon's schedule over the
controllable devices it sees now (the PV setpoints capped at the scenario's available PV), valid until
`plan_valid_until`: the end of interval t + 1 (the next interval's bargaining and DSO verdict covered, until
whose dispatch the DERs run t's setpoints), the day's last interval only until its own end, so no plan drives
the DERs more than one interval past its own when the day ended or the next interval failed before its dispatch
(review17 S-A; before, four intervals and 30 s whatever came after). An agent behind its slots (t dispatched
after t's slot ended: it starts each interval when the one before ended, at 30 MGMCs an interval's work outlasted
two slots, d926202) keeps four intervals and 30 s from the dispatch, so its plan still bridges to its next one.
Set as the agent's plan (`EdgeDaemon.set_schedule`), it is followed until then or the next plan, whatever
`dispatch.schedule_timeout_s` (an MQTT controller's silence allowed, not this agent's: its liveness is its
task's, `schedule_holder`); after it a live controller's schedule, else the safe state. `dispatch_held` runs one
dispatch tick and says how many writes the actuator confirmed and whether the plan was held in full: the tick
followed it (not a plan past its end), every controllable device fresh, no new alarm, and its writes confirmed
or none needed (the devices already report the setpoints: an interval planned as the one before writes
nothing). Writes only this MG's devices, through the daemon's actuator (read-back confirmed there). Split
from trader.py, whose `MarketAgent._dispatch` calls both and keeps what they return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from peergrid_controller.model import Microgrid
from peergrid_edge.actuation import view_of
from peergrid_edge.config import MarketSettings
from peergrid_edge.dispatch import DeviceView, Schedule
from peergrid_edge.planning import schedule_from_plan

if TYPE_CHECKING:
    from peergrid_edge.daemon import EdgeDaemon


# an agent behind its slots: its plan is followed this long from its dispatch (d926202's bound), in intervals + s
BEHIND_INTERVALS, BEHIND_S = 4, 30.0


def plan_valid_until(market: MarketSettings, intervals: int, t: int, wall: float) -> float:
    """Until when interval t's plan, dispatched at `wall`, is followed with no newer plan: the end of t + 1, the
    day's last interval's own end; dispatched after t's slot ended (the agent behind its slots), four intervals
    and 30 s from `wall` (never for the day's last). `intervals`: the scenario's (the agent's `_last_interval`)."""

    def start(k: int) -> float:  # the wall time interval k's slot starts (the agent's `_start_of`)
        return market.t0 + (k - market.first_interval) * market.interval_s

    last = intervals - 1
    if market.intervals is not None:
        last = min(last, market.first_interval + market.intervals - 1)
    if t >= last:
        return start(t + 1)
    if wall < start(t + 1):
        return start(t + 2)
    return wall + BEHIND_INTERVALS * market.interval_s + BEHIND_S


def plan_schedule(
    daemon: EdgeDaemon, mg: Microgrid, interval_s: float, t: int, plan: Any
) -> tuple[Schedule, Mapping[str, DeviceView]]:
    """Interval t's plan as the daemon's schedule, and the controllable devices' views it was made for."""
    market = daemon.settings.market
    if market is None or market.interval_s != interval_s:
        raise ValueError("the agent's plan is timed by the daemon's market section (its interval_s)")
    now, wall = daemon.clock.monotonic(), daemon.clock.wall()
    views = {n: v for n, s in daemon.states.items() if (v := view_of(s, now)) is not None}
    available = sum(p.available_kw[t] for p in mg.pv)
    until = plan_valid_until(market, mg.intervals, t, wall)
    return schedule_from_plan(plan, 0, views, t, wall, until, available), views


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
