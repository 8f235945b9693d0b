"""The trading agent's dispatch of an interval's plan to its own DERs, and whether the plan was held in full.

Promises: `plan_schedule` turns the controller's plan for interval t into the daemon's schedule over the
controllable devices it sees now (valid four intervals and 30 s, the PV setpoints capped at the scenario's
available PV); set as the agent's plan (`EdgeDaemon.set_schedule`), it is followed for that long or until the
next plan, whatever `dispatch.schedule_timeout_s` (an MQTT controller's silence allowed, not this agent's:
its liveness is its task's, `schedule_holder`), so its validity is how long a live agent that sends no new
plan is followed before the safe state; `dispatch_held` runs one dispatch tick and says how many writes the
actuator confirmed and whether the plan was held in full: every controllable device fresh, no new alarm, and
its writes confirmed or none needed (the devices already report the setpoints: an interval planned as the
one before writes nothing). Writes only this MG's devices, through the daemon's actuator (read-back confirmed there). Split
from trader.py, whose `MarketAgent._dispatch` calls both and keeps what they return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from peergrid_controller.model import Microgrid
from peergrid_edge.actuation import view_of
from peergrid_edge.dispatch import DeviceView, Schedule
from peergrid_edge.planning import schedule_from_plan

if TYPE_CHECKING:
    from peergrid_edge.daemon import EdgeDaemon


def plan_schedule(
    daemon: EdgeDaemon, mg: Microgrid, interval_s: float, t: int, plan: Any
) -> tuple[Schedule, Mapping[str, DeviceView]]:
    """Interval t's plan as the daemon's schedule, and the controllable devices' views it was made for."""
    now, wall = daemon.clock.monotonic(), daemon.clock.wall()
    views = {n: v for n, s in daemon.states.items() if (v := view_of(s, now)) is not None}
    available = sum(p.available_kw[t] for p in mg.pv)
    return schedule_from_plan(plan, 0, views, t, wall, wall + 4 * interval_s + 30, available), views


async def dispatch_held(daemon: EdgeDaemon, views: Mapping[str, DeviceView]) -> tuple[int, bool]:
    """One dispatch tick of the schedule set: (the writes the actuator confirmed, the plan held in full)."""
    actuator = daemon.actuator
    before, writes, alarms = (
        actuator.confirmed_total,
        actuator.writes_total,
        sum(actuator.alarms_total.values()),
    )
    await daemon.dispatch_once(daemon.settings.dispatch.period_s)
    confirmed = int(actuator.confirmed_total - before)
    fresh = bool(views) and not any(v.stale for v in views.values())
    held = (
        fresh
        and sum(actuator.alarms_total.values()) == alarms
        and (confirmed > 0 or actuator.writes_total == writes)
    )
    return confirmed, held
