"""Meeting a DSO adjustment contract with the MG's own schedule, or saying plainly that it cannot."""

from __future__ import annotations

import pytest
from helpers_ctl import flat, tariff

from peergrid_controller.adjustment import meet
from peergrid_controller.model import Battery, Load, Microgrid, PvArray
from peergrid_controller.schedule import MgSchedule


def pv_with_battery(n: int = 4) -> Microgrid:
    # 80 kW of PV over a 30 kW load; a battery that can take 20 kW more
    return Microgrid(
        "mg",
        tariff(n),
        pv=(PvArray("pv", flat(80.0, n)),),
        batteries=(
            Battery("bat", capacity_kwh=200.0, max_charge_kw=20.0, max_discharge_kw=20.0, soc_initial=0.5),
        ),
        loads=(Load("load", flat(30.0, n), flat(10.0, n)),),
    )


def test_a_reachable_export_limit_is_met_by_re_planning() -> None:
    sched = MgSchedule(pv_with_battery(), 1.0)
    sched.solve()
    planned = sched.dispatch(10.0)  # it sold 10 kW to a peer
    assert planned.p2p_net_export[0] + planned.dso_net_export[0] > 15.0
    adjustment = meet(sched, 10.0, None, 15.0)
    assert adjustment.met and adjustment.reason == ""
    assert adjustment.injection_kw <= 15.0 + 1e-6
    assert adjustment.plan.p2p_net_export[0] == pytest.approx(10.0)  # the agreed trade is kept


def test_an_unreachable_limit_is_reported_with_what_the_mg_can_do_instead() -> None:
    sched = MgSchedule(pv_with_battery(), 1.0)
    sched.solve()
    sched.dispatch(0.0)
    # importing 100 kW is beyond it: its load (40 kW with the sheddable part) plus 20 kW of charging
    adjustment = meet(sched, 0.0, -100.0, -100.0)
    assert not adjustment.met
    assert "cannot inject at most -100.00 kW" in adjustment.reason
    assert "it offers that instead" in adjustment.reason
    # PV curtailed to nothing, battery charging at 20 kW, load 40 kW: it can draw 60 kW at most
    assert adjustment.injection_kw == pytest.approx(-60.0, abs=0.02)


def test_crossed_limits_are_a_clear_error() -> None:
    sched = MgSchedule(pv_with_battery(), 1.0)
    sched.solve()
    with pytest.raises(ValueError, match="crossed"):
        meet(sched, 0.0, 10.0, 5.0)
