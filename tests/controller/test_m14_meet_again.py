"""`adjustment.meet` answers the same however often it is asked and whatever was solved on the schedule before.

The trader meets the DSO's limit at each iteration of the DSO's loop, after the guard's dispatch and the
re-bargaining curve were solved on the same schedule; the conventional counterfactual meets it once on a fresh
schedule. D3 (session 24): in a lab without trades mg5 met its limit at 83.5487 kW on the trader's schedule and
83.5436 kW on a fresh one, so its day read 0.0025 dearer than the conventional day.
"""

from __future__ import annotations

from pathlib import Path

from helpers_ctl import flat, tariff
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from peergrid_controller.adjustment import Adjustment, meet
from peergrid_controller.model import Battery, Load, Microgrid, PvArray
from peergrid_controller.rebargain import curve_within
from peergrid_controller.scenario import load_scenario
from peergrid_controller.schedule import MgSchedule, ScheduleError

IEEE33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def answer(schedule: MgSchedule, adjustment: Adjustment) -> tuple[object, ...]:
    """Everything a caller reads of a meet: the adjustment and the interval's cost and state it leaves."""
    return adjustment, schedule.first_interval_cost_and_state()


def test_d3_mg5_meets_its_limit_on_the_traders_schedule_as_on_a_fresh_one() -> None:
    # D2's lab 2 (--dso-vmin 0.91), interval 75: no trades, the DSO asks mg5 for at least 162.766 kW
    scenario = load_scenario(IEEE33)
    mg5 = next(mg for mg in scenario.microgrids if mg.name == "mg5")
    t, least_kw = 75, 162.766

    fresh = MgSchedule(mg5, 0.25, start=t, horizon=scenario.intervals - t)
    fresh.solve()
    once = meet(fresh, 0.0, least_kw, None)
    assert not once.met
    assert once.injection_kw == 83.54362412719725  # the answer of a first call before the fix, kept
    assert fresh.first_interval_cost_and_state()[0] == 13.657460730209348

    # the trader's path: its plan delivered, then per iteration the re-bargaining curve and the meet
    traders = MgSchedule(mg5, 0.25, start=t, horizon=scenario.intervals - t)
    traders.solve()
    delivered = traders.dispatch(0.0)
    offered = delivered.p2p_net_export[0] + delivered.dso_net_export[0]
    for _ in range(3):
        curve_within(traders, least_kw, None, mg5.tariff.feed_in[t], mg5.tariff.retail[t], offered)
        again = meet(traders, 0.0, least_kw, None)
        assert answer(traders, again) == answer(fresh, once)  # was 83.54870971679688 kW at 13.65866855773926
        offered = again.injection_kw


def small_mg(pv_kw: float, load_kw: float, sheddable_kw: float, soc: float, retail: float) -> Microgrid:
    # a flat retail price leaves the battery indifferent between importing now or later: equally cheap plans
    n = 4
    return Microgrid(
        "mg",
        tariff(n, retail=retail),
        pv=(PvArray("pv", flat(pv_kw, n)),),
        batteries=(
            Battery("bat", capacity_kwh=100.0, max_charge_kw=30.0, max_discharge_kw=30.0, soc_initial=soc),
        ),
        loads=(Load("load", flat(load_kw, n), flat(sheddable_kw, n)),),
    )


@given(
    pv_kw=st.floats(0.0, 120.0),
    load_kw=st.floats(10.0, 80.0),
    sheddable_share=st.floats(0.0, 1.0),
    soc=st.floats(0.1, 0.95),
    retail=st.floats(0.06, 0.4),
    limit_kw=st.floats(-200.0, 200.0),
    side=st.sampled_from(["min", "max", "both"]),
    width_kw=st.floats(0.0, 50.0),
    other_kw=st.floats(-200.0, 200.0),
    price=st.floats(0.0, 0.5),
)
@settings(max_examples=80, deadline=None)
def test_meeting_a_limit_again_gives_the_first_answer_to_the_last_digit(
    pv_kw: float,
    load_kw: float,
    sheddable_share: float,
    soc: float,
    retail: float,
    limit_kw: float,
    side: str,
    width_kw: float,
    other_kw: float,
    price: float,
) -> None:
    mg = small_mg(pv_kw, load_kw, load_kw * sheddable_share, soc, retail)
    lo, hi = {"min": (limit_kw, None), "max": (None, limit_kw), "both": (limit_kw, limit_kw + width_kw)}[side]
    schedule = MgSchedule(mg, 0.25)
    try:
        schedule.solve()
    except ScheduleError:
        assume(False)
    once = answer(schedule, meet(schedule, 0.0, lo, hi))
    assert answer(schedule, meet(schedule, 0.0, lo, hi)) == once
    # whatever is solved on the schedule between (a price response, another limit), the answer stands
    schedule.price_response(price)
    meet(schedule, 0.0, other_kw, None)
    assert answer(schedule, meet(schedule, 0.0, lo, hi)) == once
