"""A plan, a curtailment above all, is split only over the devices the dispatch can command
(`planning.schedule_from_plan`): a stale device, which `dispatch.decide` never writes, gets no setpoint and no
share, so the others carry all of it.

M13 left "a curtailing plan splits its limit over a stale inverter too": a DSO limit of 8 kW over a fresh
10 kW and a stale 30 kW inverter curtailed the MG to 2 kW.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_planning import VIEWS, plan

from peergrid_edge.dispatch import decide
from peergrid_edge.planning import schedule_from_plan


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
