"""Re-bargaining within a DSO adjustment contract: a limit the re-plan with the trades fixed cannot reach is
met once the MG bargains again with its curve held within the limit; an unreachable one is said plainly."""

from __future__ import annotations

import pytest
from helpers_ctl import flat, load_only, tariff

from peergrid_controller.adjustment import injection, meet
from peergrid_controller.bargaining import MemoryVenue, bargain
from peergrid_controller.model import Battery, ContractRules, Load, Microgrid, PvArray
from peergrid_controller.moves import Participant
from peergrid_controller.rebargain import curve_within
from peergrid_controller.schedule import MgSchedule

FEED_IN, RETAIL = 0.05, 0.25


def capped_exporter(n: int = 4) -> Microgrid:
    # 80 kW of PV over a 30 kW critical (+10 kW sheddable) load and a 20 kW battery; its DSO connection takes
    # at most 20 kW of export: whatever more it injects must be sold to peers
    return Microgrid(
        "pv",
        tariff(n, RETAIL, FEED_IN, max_export_kw=20.0),
        pv=(PvArray("pv", flat(80.0, n)),),
        batteries=(
            Battery("bat", capacity_kwh=200.0, max_charge_kw=20.0, max_discharge_kw=20.0, soc_initial=0.5),
        ),
        loads=(Load("load", flat(30.0, n), flat(10.0, n)),),
    )


def test_a_limit_the_fixed_trades_block_is_met_by_re_bargaining() -> None:
    sched = MgSchedule(capped_exporter(), 1.0)
    sched.solve()
    agreed = 10.0  # it had sold 10 kWh to a peer before the DSO's contract
    planned = injection(sched.dispatch(agreed))
    # re-plan alone: P2P fixed at 10 kW, DSO export at most 20 kW -> 30 kW, short of the 50 kW asked
    replan = meet(sched, agreed, 50.0, None)
    assert not replan.met and replan.injection_kw == pytest.approx(30.0, abs=0.02)
    # the curve within the limit: at every price it sells at least the 30 kWh the DSO will not take
    limited = curve_within(sched, 50.0, None, FEED_IN, RETAIL, planned)
    assert limited.met and limited.reason == "" and limited.min_kw == 50.0
    assert min(limited.curve.quantities) >= 30.0 - 1e-6
    # bargaining again with a peer that needs 60 kW
    seller = Participant("pv", limited.curve, ContractRules(), clean=True)
    buyer_sched = MgSchedule(load_only("buyer", 60.0), 1.0)
    buyer_sched.solve()
    buyer = Participant("buyer", buyer_sched.response_curve(FEED_IN, RETAIL), ContractRules(), clean=False)
    venue = MemoryVenue({"pv": ContractRules(), "buyer": ContractRules()})
    outcome = bargain([seller, buyer], 0, FEED_IN, RETAIL, venue)
    sold = sum(t.quantity_kwh for t in outcome.trades if t.seller == "pv")
    assert sold >= 30.0 - 0.01
    rebargained = meet(sched, sold, 50.0, None)
    assert rebargained.met and rebargained.injection_kw >= 50.0 - 1e-6
    assert rebargained.plan.p2p_net_export[0] == pytest.approx(sold)


def test_a_limit_out_of_reach_even_with_free_trades_is_reported() -> None:
    sched = MgSchedule(capped_exporter(), 1.0)
    sched.solve()
    planned = injection(sched.dispatch(10.0))
    limited = curve_within(sched, 100.0, None, FEED_IN, RETAIL, planned)
    # PV 80 + battery 20 - critical load 30: 70 kW is all it can ever inject
    assert not limited.met and limited.min_kw == pytest.approx(70.0, abs=0.02)
    assert "cannot inject at least 100.00 kW even with its P2P trades re-bargained" in limited.reason
    assert min(limited.curve.quantities) >= 50.0 - 0.05  # 70 kW less the 20 kW the DSO takes


def test_an_import_cap_is_met_by_buying_less() -> None:
    # a load (30 kW critical + 20 kW sheddable) with no export to the DSO bought 40 kWh from a peer; the DSO
    # then caps its draw at 35 kW: with the 40 kWh fixed it cannot (it has to take them), buying less it can
    mg = Microgrid(
        "load",
        tariff(4, RETAIL, FEED_IN, max_export_kw=0.0),
        loads=(Load("load", flat(30.0, 4), flat(20.0, 4)),),
    )
    sched = MgSchedule(mg, 1.0)
    sched.solve()
    planned = injection(sched.dispatch(-40.0))
    assert planned == pytest.approx(-50.0)
    assert meet(sched, -40.0, -35.0, None).injection_kw == pytest.approx(-40.0, abs=0.02)  # trade fixed
    limited = curve_within(sched, -35.0, None, FEED_IN, RETAIL, planned)
    assert limited.met
    assert max(-q for q in limited.curve.quantities) <= 35.0 + 1e-6  # it never asks more than 35 kWh
    assert meet(sched, -35.0, -35.0, None).met


def test_crossed_limits_are_a_clear_error() -> None:
    sched = MgSchedule(capped_exporter(), 1.0)
    sched.solve()
    with pytest.raises(ValueError, match="crossed"):
        curve_within(sched, 10.0, 5.0, FEED_IN, RETAIL, 0.0)
