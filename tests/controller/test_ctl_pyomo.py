"""The direct highspy model and the Pyomo reference formulation find the same optimal cost."""

from __future__ import annotations

import pytest
from helpers_ctl import battery_site, genset_site, load_only

from peergrid_controller.pyomo_model import solve_pyomo
from peergrid_controller.schedule import MgSchedule, ScheduleError
from peergrid_controller.synth import synthetic_scenario


@pytest.mark.parametrize(
    "mg", [battery_site("b"), genset_site("g", n=8, min_up=3, min_down=2)], ids=["battery", "genset"]
)
def test_formulations_agree_on_hand_sites(mg) -> None:  # type: ignore[no-untyped-def]
    assert MgSchedule(mg, 0.25).solve().cost == pytest.approx(solve_pyomo(mg, 0.25), abs=1e-6)


def test_formulations_agree_on_a_synthetic_day_with_genset_and_storage() -> None:
    scenario = synthetic_scenario(4, 24, seed=5)
    for mg in scenario.microgrids:
        assert MgSchedule(mg, 0.25).solve().cost == pytest.approx(solve_pyomo(mg, 0.25), rel=1e-6, abs=1e-6)


def test_pyomo_infeasible_is_named() -> None:
    # import limit below critical load and no other source: HiGHS proves it infeasible through Pyomo too
    with pytest.raises(ScheduleError) as err:
        solve_pyomo(load_only("island", 40.0, max_import_kw=25.0), 0.25)
    assert err.value.cause == "infeasible"
