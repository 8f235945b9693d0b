"""The controller's aggregate plan becomes per-device setpoints split by rating."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from peergrid_edge.config import ControlSettings
from peergrid_edge.dispatch import DeviceView
from peergrid_edge.planning import schedule_from_plan


def view(name: str, nature: str, **reading: float) -> DeviceView:
    return DeviceView(name, nature, ControlSettings(sheddable=nature == "load"), reading)


VIEWS = {
    v.name: v
    for v in (
        view("b1", "battery", rating_w=5000),
        view("b2", "battery", rating_w=15000),
        view("g1", "genset", rating_w=20000),
        view("pv1", "pv", rating_w=10000),
        view("pv2", "pv", rating_w=30000),
        view("l1", "load", sheddable_w=2000),
        view("l2", "load", sheddable_w=3000),
    )
}


def plan(battery: float, genset: float, on: bool, shed: float, pv: float) -> SimpleNamespace:
    return SimpleNamespace(
        battery_kw=(battery,), genset_kw=(genset,), genset_on=(on,), shed_kw=(shed,), pv_used_kw=(pv,)
    )


def test_split_by_rating_with_curtailment_and_shedding() -> None:
    s = schedule_from_plan(plan(-8, 12, True, 2.5, 20), 0, VIEWS, 5, 0.0, 60.0, pv_available_kw=32)
    sp = s.setpoints
    assert sp["b1"]["power_w"] == pytest.approx(-2000) and sp["b2"]["power_w"] == pytest.approx(-6000)
    assert sp["g1"] == {"on": 1.0, "output_w": pytest.approx(12000)}
    assert sp["pv1"]["limit_w"] == pytest.approx(5000) and sp["pv2"]["limit_w"] == pytest.approx(15000)
    assert sp["l2"]["connected"] == 0.0  # largest sheddable part first ...
    assert sp["l1"]["connected"] == 1.0  # ... 3 kW already covers the planned 2.5 kW
    assert s.interval == 5 and s.valid_at(30.0)


def test_no_curtailment_leaves_pv_at_its_rating() -> None:
    s = schedule_from_plan(plan(0, 0, False, 0, 20), 0, VIEWS, 5, 0.0, 60.0, pv_available_kw=20)
    assert s.setpoints["pv1"]["limit_w"] == 10000 and s.setpoints["pv2"]["limit_w"] == 30000
    assert s.setpoints["g1"]["on"] == 0.0
    assert s.setpoints["l1"]["connected"] == 1.0 and s.setpoints["l2"]["connected"] == 1.0
