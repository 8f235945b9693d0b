"""A quarantined device is written nothing by the dispatch, even before its last good reading goes stale
(`actuation.view_of`): the trader left it out of the interval's plan (`device_trust`), so no setpoint of that
plan is its (`planning`), and `decide` writes it no safe state either while it does not answer."""

from __future__ import annotations

from test_m13_untrusted_pv import NOW, device
from test_planning import plan

from peergrid_edge.actuation import view_of
from peergrid_edge.config import ControlSettings
from peergrid_edge.dispatch import decide
from peergrid_edge.planning import schedule_from_plan


def test_a_quarantined_battery_whose_reading_is_still_fresh_is_written_nothing() -> None:
    states = {name: device(name, "fresh", 50e3, "battery") for name in ("b1", "b2")}
    for state in states.values():
        state.settings = state.settings.model_copy(update={"control": ControlSettings(max_w=50e3)})
    states["b2"].health.quarantined_until = NOW + 10.0  # three refused polls: out, its reading 1 s old
    views = {name: view for name, state in states.items() if (view := view_of(state, NOW)) is not None}
    assert not views["b1"].stale and views["b2"].stale
    s = schedule_from_plan(plan(20, 0, False, 0, 0), 0, views, 5, 0.0, 60.0)
    assert s.setpoints == {"b1": {"power_w": 20e3}}
    assert {w.device for w in decide(views, s, 30.0, 1.0).writes} == {"b1"}
    assert {w.device for w in decide(views, None, 30.0, 1.0).writes} <= {"b1"}
