"""From the controller's plan (aggregate kW per DER type) to per-device setpoints the dispatcher can write.

Promises: `schedule_from_plan(plan, step, views, ...)` splits interval `step` of a `peergrid_controller`
`Plan` over this MG's devices — battery power and genset output in proportion to each device's rating, PV
curtailment as a per-inverter export limit in proportion to rating (no limit below the rating when the plan uses
all available PV), genset start/stop for every genset, and load shedding by switching off sheddable loads, largest
sheddable part first, until the planned shed is covered. A device's rating that is not a finite number above zero
(a NaN or Infinity a device reported, a negative one) counts as no rating: it falls back to the configured
`max_w`, then to an equal share, so one bad reading never turns its siblings' shares into NaN. A stale device
(`DeviceView.stale`: no fresh reading, so `dispatch.decide` writes it nothing) gets no setpoint and no share:
the plan, a curtailment above all (the DSO's limit, or PV the plan does not use), is split over the devices it
can command, not left short by a stale inverter's share that is never written. Pure; reads only the attributes
it names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from peergrid_edge.dispatch import DeviceView, Schedule

KW = 1000.0


def _usable(watts: float | None) -> float | None:
    """A rating to weigh by: finite and above zero, else None."""
    return watts if watts is not None and math.isfinite(watts) and watts > 0.0 else None


def _rating(view: DeviceView) -> float | None:
    return _usable(view.reading.get("rating_w"))


def _share(total_w: float, views: list[DeviceView]) -> dict[str, float]:
    ratings = {v.name: _rating(v) or _usable(v.control.max_w) or 0.0 for v in views}
    top = max(ratings.values(), default=0.0)
    if top <= 0:
        return {v.name: total_w / len(views) for v in views} if views else {}
    # each rating as a fraction of the largest first: a rating near the float's limit overflowed
    # total_w * rating (and a sum of two such) to inf, a non-finite setpoint
    weights = {name: rating / top for name, rating in ratings.items()}
    whole = sum(weights.values())
    return {name: total_w * (weight / whole) for name, weight in weights.items()}


def schedule_from_plan(
    plan: Any,
    step: int,
    views: Mapping[str, DeviceView],
    interval: int,
    valid_from: float,
    valid_until: float,
    pv_available_kw: float | None = None,
) -> Schedule:
    by_nature: dict[str, list[DeviceView]] = {}
    for view in views.values():
        if not view.stale:  # never written (`dispatch.decide`): its share would go undelivered
            by_nature.setdefault(view.nature, []).append(view)
    setpoints: dict[str, dict[str, float]] = {}

    for name, watts in _share(plan.battery_kw[step] * KW, by_nature.get("battery", [])).items():
        setpoints.setdefault(name, {})["power_w"] = watts
    on = bool(plan.genset_on[step])
    for name, watts in _share(plan.genset_kw[step] * KW, by_nature.get("genset", [])).items():
        setpoints.setdefault(name, {}).update({"on": float(on), "output_w": watts})
    pvs = by_nature.get("pv", [])
    used_kw = plan.pv_used_kw[step]
    curtailed = pv_available_kw is not None and used_kw < pv_available_kw - 1e-6
    for name, watts in _share(used_kw * KW, pvs).items():
        rating = _rating(next(v for v in pvs if v.name == name)) or watts
        setpoints.setdefault(name, {})["limit_w"] = watts if curtailed else max(watts, rating)
    to_shed = plan.shed_kw[step] * KW
    sheddable = sorted(
        (v for v in by_nature.get("load", []) if v.control.sheddable),
        key=lambda v: -(v.reading.get("sheddable_w") or 0.0),
    )
    for view in sheddable:
        shed_here = to_shed > 1.0
        setpoints.setdefault(view.name, {})["connected"] = 0.0 if shed_here else 1.0
        if shed_here:
            to_shed -= view.reading.get("sheddable_w") or 0.0
    return Schedule(interval, valid_from, valid_until, setpoints)
