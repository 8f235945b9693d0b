"""The setpoints the edge writes carry the MG's P2P commitment: for every MG of the lab's scenario, an interval
planned with an agreed trade fixed (`interval_plan.deliver`, as the trader does) becomes per-device setpoints
(`planning.schedule_from_plan`) that put the PCC where the plan puts it (P2P + DSO net export), for sales and
purchases alike. Ruled out as the cause of the lab's short deliveries (/work/notes/l4_lab_delivery.md: there the
DERs followed these setpoints; what fell short was the part of the slot before the dispatch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from peergrid_controller.model import Microgrid
from peergrid_controller.scenario import load_scenario
from peergrid_controller.schedule import MgSchedule, Plan
from peergrid_edge.config import ControlSettings
from peergrid_edge.dispatch import DeviceView, Schedule
from peergrid_edge.interval_plan import deliver
from peergrid_edge.planning import schedule_from_plan

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
MARKET = load_scenario(SCENARIO)
FIRST = 36


def views(mg: Microgrid, t: int) -> dict[str, DeviceView]:
    """What the edge sees of the MG's devices (ratings only: that is all the split reads)."""
    out = [
        DeviceView(b.name, "battery", ControlSettings(), {"rating_w": b.max_discharge_kw * 1000})
        for b in mg.batteries
    ]
    out += [
        DeviceView(p.name, "pv", ControlSettings(), {"rating_w": max(p.available_kw) * 1000}) for p in mg.pv
    ]
    out += [
        DeviceView(g.name, "genset", ControlSettings(), {"rating_w": g.max_kw * 1000}) for g in mg.gensets
    ]
    out += [
        DeviceView(
            ld.name, "load", ControlSettings(sheddable=True), {"sheddable_w": ld.sheddable_kw[t] * 1000}
        )
        for ld in mg.loads
    ]
    return {v.name: v for v in out}


def pcc_kw(mg: Microgrid, t: int, schedule: Schedule) -> float:
    """The MG's net export (kW) if every device does what its setpoints say: PV up to its limit and what the sun
    gives, batteries and gensets at their setpoints, loads less the ones switched off."""
    sp = schedule.setpoints
    watts = sum(min(sp[p.name]["limit_w"], p.available_kw[t] * 1000) for p in mg.pv)
    watts += sum(sp[b.name]["power_w"] for b in mg.batteries)
    watts += sum(sp[g.name]["output_w"] * sp[g.name]["on"] for g in mg.gensets)
    for ld in mg.loads:
        served = ld.critical_kw[t] + (ld.sheddable_kw[t] if sp[ld.name].get("connected", 1.0) else 0.0)
        watts -= served * 1000
    return watts / 1000


def planned(mg: Microgrid, t: int, agreed_kw: float) -> tuple[Plan, float]:
    sched = MgSchedule(mg, MARKET.interval_hours, start=t)
    sched.solve()
    return deliver(t, sched, agreed_kw)


@pytest.mark.parametrize("name", [mg.name for mg in MARKET.microgrids])
@pytest.mark.parametrize("t", [FIRST, FIRST + 1])
def test_the_setpoints_put_the_pcc_where_the_plan_with_its_trade_does(name: str, t: int) -> None:
    mg = next(m for m in MARKET.microgrids if m.name == name)
    base, _ = planned(mg, t, 0.0)
    injection = base.p2p_net_export[0] + base.dso_net_export[0]
    # none, half its own export (a seller) or import (a buyer), and, where it has batteries, a sale beyond
    # what it exports unplanned (the batteries must discharge for it: the lab's mg5 and mg2)
    more = injection + 0.5 * sum(b.max_discharge_kw for b in mg.batteries)
    for agreed in (0.0, injection / 2, *([more] if mg.batteries else [])):
        plan, delivered = planned(mg, t, agreed)
        assert delivered == pytest.approx(agreed, abs=1e-3) or agreed == more  # the trade is in the plan ...
        assert plan.p2p_net_export[0] == pytest.approx(delivered, abs=1e-3)  # ... or the most it can deliver
        if plan.shed_kw[0] > 1e-6:
            continue  # shedding switches whole loads (a coarser step than the plan's): not this test's point
        schedule = schedule_from_plan(
            plan, 0, views(mg, t), t, 0.0, 60.0, sum(p.available_kw[t] for p in mg.pv)
        )
        want = plan.p2p_net_export[0] + plan.dso_net_export[0]
        assert pcc_kw(mg, t, schedule) == pytest.approx(want, abs=0.01), (name, t, agreed, plan)


def test_a_larger_sale_is_dispatched_from_the_mgs_own_ders_when_it_has_them() -> None:
    # mg5 (PV, a 100 kW battery, a load): the lab's sale of 179 kW in interval 36 needs its battery at +100 kW;
    # the setpoints carry that, not a purchase from the DSO
    mg = next(m for m in MARKET.microgrids if m.name == "mg5")
    views_ = views(mg, FIRST)
    low, _ = planned(mg, FIRST, 80.0)
    high, _ = planned(mg, FIRST, 170.0)
    avail = sum(p.available_kw[FIRST] for p in mg.pv)
    s_low = schedule_from_plan(low, 0, views_, FIRST, 0.0, 60.0, avail)
    s_high = schedule_from_plan(high, 0, views_, FIRST, 0.0, 60.0, avail)
    assert pcc_kw(mg, FIRST, s_high) - pcc_kw(mg, FIRST, s_low) == pytest.approx(90.0, abs=0.01)
    battery = mg.batteries[0].name
    assert s_high.setpoints[battery]["power_w"] > s_low.setpoints[battery]["power_w"]
    assert high.dso_net_export[0] >= -1e-6  # no import to resell
