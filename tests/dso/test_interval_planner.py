"""The DSO node's per-interval analysis (services/interval.py): reconfiguration when due, adjustments when the
chosen topology stays insecure, and a switching plan only when the topology changes."""

from __future__ import annotations

from dataclasses import replace

from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.services.interval import IntervalPlanner

BUSES = {"mg1": 18, "mg2": 22, "mg3": 25, "mg4": 30, "mg5": 33, "mg6": 14}
INJECTIONS = {"mg1": (0.2, 0.0), "mg2": (0.0, 0.0), "mg3": (-0.13, 0.0), "mg4": (-0.5, 0.0), "mg5": (0.05, 0.0),
              "mg6": (-0.05, 0.0)}  # fmt: skip


def test_due_reconfiguration_is_adopted_when_it_saves_losses_and_is_secure() -> None:
    feeder = case33bw(BUSES)
    planner = IntervalPlanner(feeder, feeder.initially_open(), reconfigure_every=4)
    analysis = planner.analyse(36, INJECTIONS)
    assert analysis.reconfiguration is not None and "open" in analysis.reconfiguration
    assert analysis.target_open != feeder.initially_open()
    assert analysis.reconfiguration["losses_kw"] < analysis.before["losses_kw"]
    assert not analysis.contracts and analysis.unmet is None
    plan = planner.switching_plan(36, analysis.target_open, INJECTIONS)
    assert plan is not None and plan.to_open == tuple(sorted(analysis.target_open))
    assert planner.switching_plan(37, planner.open_set, INJECTIONS) is None  # nothing to switch


def test_not_due_keeps_the_topology() -> None:
    feeder = case33bw(BUSES)
    planner = IntervalPlanner(feeder, feeder.initially_open(), reconfigure_every=4)
    analysis = planner.analyse(37, INJECTIONS)
    assert analysis.reconfiguration is None and analysis.target_open == feeder.initially_open()


def test_a_tighter_voltage_floor_brings_adjustment_contracts() -> None:
    """Without reconfiguration, a 0.91 pu floor on the base topology needs some MGs to move."""
    feeder = replace(case33bw(BUSES), vmin_pu=0.91)
    planner = IntervalPlanner(
        feeder, feeder.initially_open(), reconfigure_every=0, reconfigure_when_insecure=False
    )
    analysis = planner.analyse(37, INJECTIONS)
    assert analysis.before["violations"] and analysis.unmet is None
    assert analysis.contracts  # the least adjustment, one contract per MG that has to move
    for contract in analysis.contracts:
        assert contract.mg in BUSES and (
            contract.min_injection_mw is not None or contract.max_injection_mw is not None
        )


def test_an_unreachable_floor_is_named_not_hidden() -> None:
    feeder = replace(case33bw(BUSES), vmin_pu=0.95)
    planner = IntervalPlanner(
        feeder, feeder.initially_open(), reconfigure_every=0, reconfigure_when_insecure=False
    )
    analysis = planner.analyse(37, INJECTIONS)
    assert not analysis.contracts and analysis.unmet is not None and "voltage >= 0.95" in analysis.unmet
