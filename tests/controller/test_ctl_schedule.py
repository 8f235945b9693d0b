"""MGMC scheduling: hand-checkable costs, DER limits respected, clear errors for impossible inputs."""

from __future__ import annotations

import math

import pytest
from helpers_ctl import battery_site, flat, genset_site, load_only, pv_site

from peergrid_controller.model import Load, Microgrid, ModelError, Tariff
from peergrid_controller.schedule import MgSchedule, ScheduleError

DT = 0.25


def test_load_only_pays_retail_for_every_kwh() -> None:
    plan = MgSchedule(load_only("a", 40.0), DT).solve()
    assert plan.cost == pytest.approx(40.0 * DT * 4 * 0.25)
    assert plan.dso_net_export == pytest.approx((-40.0,) * 4)


def test_pv_surplus_is_fed_in_and_paid_feed_in() -> None:
    plan = MgSchedule(pv_site("a", 40.0, 10.0), DT).solve()
    assert plan.cost == pytest.approx(-30.0 * DT * 4 * 0.05)


def test_battery_shifts_cheap_energy_to_the_peak_within_its_limits() -> None:
    mg = battery_site("b")
    plan = MgSchedule(mg, DT).solve()
    bat = mg.batteries[0]
    assert all(bat.soc_min * 40 - 1e-6 <= s <= bat.soc_max * 40 + 1e-6 for s in plan.battery_soc_kwh)
    assert plan.battery_soc_kwh[-1] >= bat.soc_initial * 40 - 1e-6  # ends where it started
    assert max(plan.battery_kw) > 0  # discharges at the 0.30 peak
    assert all(-20 - 1e-6 <= p <= 20 + 1e-6 for p in plan.battery_kw)
    no_battery = MgSchedule(load_only("x", 10.0, n=8), DT).solve()
    assert plan.cost < no_battery.cost


def test_genset_runs_when_cheaper_than_retail_and_respects_min_up_time() -> None:
    mg = genset_site("g", n=8, min_up=4)
    plan = MgSchedule(mg, DT).solve()
    # fuel: 4.5/h at 30 kW (0.15/kWh) and 0.15/kWh above: cheaper than retail 0.25, so it carries the 50 kW load
    assert all(on for on in plan.genset_on)
    assert plan.genset_kw == pytest.approx((50.0,) * 8)
    runs = [k for k, on in enumerate(plan.genset_on) if on]
    assert not runs or len(runs) >= 4


def test_genset_min_down_time_owed_from_before_the_horizon() -> None:
    mg = genset_site("g", n=4, min_down=3)
    from peergrid_controller.builder import MgState

    state = MgState(soc_kwh=(), genset_on=(False,), genset_kw=(0.0,), genset_intervals_in_state=(1,))
    plan = MgSchedule(mg, DT, state=state).solve()
    assert plan.genset_on[:2] == (False, False)  # two more intervals off are owed
    assert plan.genset_on[2:] == (True, True)


def test_sheddable_load_is_shed_only_when_voll_is_below_the_price() -> None:
    n = 2
    cheap = Microgrid(
        "s", Tariff(flat(0.25, n), flat(0.05, n)), loads=(Load("l", flat(10.0, n), flat(5.0, n), voll=0.1),)
    )
    dear = Microgrid(
        "s", Tariff(flat(0.25, n), flat(0.05, n)), loads=(Load("l", flat(10.0, n), flat(5.0, n), voll=2.0),)
    )
    assert MgSchedule(cheap, DT).solve().shed_kw == pytest.approx((5.0, 5.0))
    assert MgSchedule(dear, DT).solve().shed_kw == pytest.approx((0.0, 0.0))


def test_critical_load_beyond_every_source_is_named_as_infeasible() -> None:
    mg = load_only("island", 40.0, max_import_kw=25.0)
    with pytest.raises(ScheduleError) as err:
        MgSchedule(mg, DT)
    assert err.value.cause == "infeasible"
    assert "critical load 40.0 kW at interval 0" in str(err.value)


def test_feed_in_above_retail_without_limits_is_named_unbounded() -> None:
    mg = load_only("arb", 10.0, retail=0.10, feed_in=0.20)
    with pytest.raises(ScheduleError) as err:
        MgSchedule(mg, DT)
    assert err.value.cause == "unbounded"
    assert "feed-in price" in str(err.value)


def test_bad_model_is_a_typed_error() -> None:
    mg = load_only("bad", -5.0)
    with pytest.raises(ModelError, match="critical_kw"):
        MgSchedule(mg, DT)


def test_response_curve_matches_direct_re_solves() -> None:
    mg = battery_site("b")
    sched = MgSchedule(mg, DT)
    sched.solve()
    curve = sched.response_curve(0.05, 0.30)
    for k in range(25):
        price = 0.05 + 0.25 * (k + 0.5) / 25
        assert curve.at(price) == pytest.approx(sched.price_response(price) * DT, abs=1e-3)
    assert all(b >= a for a, b in zip(curve.quantities, curve.quantities[1:], strict=False))
    assert math.isfinite(curve.upper)
