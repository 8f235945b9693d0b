"""While a battery or genset is quarantined or its readings are stale, the trader does not count on it: the plan
neither charges nor discharges the battery nor runs the genset (`interval_plan.counted`), it says so once at
WARNING each way and names it in the record's `uncounted` (`interval_offer.counted_for`), and the dispatch
splits a plan, a curtailment above all, only over the devices it can command (`planning.schedule_from_plan`).

M13 left out a quarantined or stale PV's output (test_m13_untrusted_pv.py, whose four-agent day on a real
replica `play` is reused here) and left "a quarantined genset or battery is still planned on; a curtailing plan
splits its limit over a stale inverter too": an MGMC whose battery stopped answering Modbus offered what that
battery would discharge.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_edge_capacity import T
from test_m13_untrusted_pv import NOW, device, play
from test_planning import VIEWS, plan

from peergrid_controller.builder import MgState
from peergrid_controller.model import Battery, CostSegment, Genset, Load, Microgrid, Tariff
from peergrid_edge import interval_plan
from peergrid_edge.dispatch import decide
from peergrid_edge.interval_offer import counted_for
from peergrid_edge.planning import schedule_from_plan

BATTERY_W = 100e3


def test_a_seller_whose_battery_is_out_offers_none_of_its_discharge_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    healthy, plans, records = play(tmp_path / "healthy", ["fresh"] * 3, "mg002", "battery", BATTERY_W)
    # at T + 2 mg002 discharges its battery (41 kW) and sells 95 kWh with it
    assert plans[2].battery_kw[0] > 0 and healthy.traded("mg002", T + 2)[0] > 0

    caplog.set_level(logging.INFO, logger="peergrid.edge.trader")
    hows = ["fresh", "fresh", "quarantined", "fresh", "stale"]
    chain, plans, records = play(tmp_path / "out", hows, "mg002", "battery", BATTERY_W)
    # quarantined at T + 2: not discharged, nothing sold on it (it buys 13 kWh instead)
    assert plans[2].battery_kw[0] == 0.0 and chain.traded("mg002", T + 2)[0] == 0
    assert records[2]["role"] == "buyer"
    assert plans[3].battery_kw[0] > 0  # counted again at T + 3: what it kept is discharged then
    assert plans[4].battery_kw[0] == 0.0  # stale at T + 4: not charged either (it would charge 46 kW)
    assert [r["uncounted"] for r in records] == [{}, {}, {"battery": "quarantined"}, {}, {"battery": "stale"}]
    said = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "battery" in r.getMessage()
    ]
    assert said == [
        f"battery quarantined: neither charging nor discharging it until it answers (interval {T + 2} planned "
        "without it)",
        f"battery answers again: it is charged and discharged again from interval {T + 3}",
        f"battery stale: neither charging nor discharging it until it answers (interval {T + 4} planned without "
        "it)",
    ]


def test_the_strict_guards_alternative_is_of_the_same_mg(tmp_path: Path) -> None:
    """Strict, the guard falls back on its conventional alternative at T + 4: made on the MG the plan counted
    on, it does not charge the stale battery either (made on the scenario's MG, it charged it at 46 kW)."""
    hows = ["fresh", "fresh", "quarantined", "fresh", "stale"]
    _, plans, records = play(tmp_path, hows, "mg002", "battery", BATTERY_W, "strict")
    assert records[4]["guard"]["dispatch"] == "fallback" and records[4]["uncounted"] == {"battery": "stale"}
    assert plans[4].battery_kw[0] == 0.0 and plans[2].battery_kw[0] == 0.0


def genset_mg() -> Microgrid:
    """Two intervals of a 50 kW load, retail dear and a genset (20-40 kW, owed an hour up) cheaper: the plan runs
    it; a 100 kWh battery holding less than its soc_min."""
    tariff = Tariff((0.5, 0.5), (0.01, 0.01))
    genset = Genset("g", 40.0, 20.0, (CostSegment(20.0, 0.1),), min_kw_cost_per_h=2.0, startup_cost=1.0,
                    ramp_kw_per_interval=10.0, min_up_intervals=4, min_down_intervals=4)  # fmt: skip
    battery = Battery("b", 100.0, 50.0, 50.0, soc_min=0.2)
    return Microgrid(
        "mg", tariff, batteries=(battery,), gensets=(genset,), loads=(Load("l", (50.0,) * 2, (0.0,) * 2),)
    )


def test_a_genset_left_out_is_not_run_even_where_its_state_owes_it_up_time() -> None:
    mg = genset_mg()
    # running at 40 kW for one interval of its four owed, the battery read at 10 % (below its soc_min)
    state = MgState(soc_kwh=(10.0,), genset_on=(True,), genset_kw=(40.0,), genset_intervals_in_state=(1,))
    _, planned = interval_plan.plan_day(mg, 1.0, 2, 0, state, None)
    assert (
        planned.genset_kw[0] > 0 and planned.battery_kw[0] < 0
    )  # it runs; the battery is charged into range
    left_out = interval_plan.counted(mg, 0, 1.0, battery_share=0.0, genset_share=0.0)
    _, planned = interval_plan.plan_day(left_out, 1.0, 2, 0, state, None)
    assert planned.genset_kw == (0.0, 0.0) and planned.genset_on == (False, False)
    assert planned.battery_kw == (0.0, 0.0) and planned.battery_soc_kwh[0] == pytest.approx(10.0)
    assert planned.dso_net_export[0] == pytest.approx(-50.0)  # the load bought, as without either


def test_counted_cuts_each_nature_by_its_share() -> None:
    mg = genset_mg()
    assert interval_plan.counted(mg, 0, 1.0, 1.0, 1.0) is mg
    half = interval_plan.counted(mg, 0, 1.0, battery_share=0.5, genset_share=0.5)
    (b,), (g,) = half.batteries, half.gensets
    assert (b.max_charge_kw, b.max_discharge_kw, b.capacity_kwh, b.soc_min) == (25.0, 25.0, 100.0, 0.2)
    assert (g.max_kw, g.min_kw, g.segments, g.min_up_intervals) == (20.0, 10.0, (CostSegment(10.0, 0.1),), 4)
    assert half.pv == mg.pv and half.loads == mg.loads


def test_the_devices_left_out_are_named_by_nature_and_said_once_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mg = replace(
        genset_mg(), batteries=(genset_mg().batteries[0], replace(genset_mg().batteries[0], name="c"))
    )
    agent = SimpleNamespace(
        mg=mg, uncounted={}, d=SimpleNamespace(clock=SimpleNamespace(monotonic=lambda: NOW))
    )
    caplog.set_level(logging.INFO, logger="peergrid.edge.trader")

    def states(b1: str, b2: str, g: str) -> dict[str, object]:
        return {"b1": device("b1", b1, 60e3, "battery"), "b2": device("b2", b2, 20e3, "battery"),
                "g": device("g", g, 40e3, "genset"), "pv": device("pv", "fresh", 10e3)}  # fmt: skip

    agent.d.states = states("fresh", "stale", "quarantined")
    counted, out = counted_for(agent, 4)
    assert out == {"b2": "stale", "g": "quarantined"} and agent.uncounted == out
    # b2 holds 20 of the 80 kW the batteries are rated: each model battery keeps 3/4 of its power
    assert [b.max_discharge_kw for b in counted.batteries] == [pytest.approx(37.5)] * 2
    assert counted.gensets[0].max_kw == 0.0
    agent.d.states = states("fresh", "stale", "fresh")
    assert counted_for(agent, 5)[1] == {"b2": "stale"}  # still out: not said again
    agent.d.states = states("fresh", "fresh", "fresh")
    assert counted_for(agent, 6) == (mg, {})
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        "b2 stale: neither charging nor discharging it until it answers (interval 4 planned without it)",
        "g quarantined: not running it until it answers (interval 4 planned without it)",
        "g answers again: it may run again from interval 5",
        "b2 answers again: it is charged and discharged again from interval 6",
    ]


def test_a_curtailing_plan_is_split_only_over_the_inverters_it_can_command() -> None:
    views = {**VIEWS, "pv2": replace(VIEWS["pv2"], stale=True), "b2": replace(VIEWS["b2"], stale=True)}
    # 8 kW of the 32 kW available used (a DSO limit): all of it on pv1, none on the stale pv2 (its 3/4 of the
    # limit, never written, left the MG curtailed to 2 kW)
    s = schedule_from_plan(plan(5, 0, False, 0, 8), 0, views, 5, 0.0, 60.0, pv_available_kw=32)
    assert s.setpoints["pv1"] == {"limit_w": pytest.approx(8000)} and s.setpoints["b1"]["power_w"] == 5000
    assert "pv2" not in s.setpoints and "b2" not in s.setpoints
    decision = decide(views, s, 30.0, 1.0)
    assert decision.mode == "schedule" and {w.device for w in decision.writes} >= {"pv1", "b1"}
    assert not [w for w in decision.writes if w.device in ("pv2", "b2")]
