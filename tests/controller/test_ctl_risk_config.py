"""The owner's risk allowance as configuration: SimulationConfig's two fields and the scenario file's keys.

Every MG's allowance (`risk_allowance`) and an MG's own (`mg_risk_allowance`); each refused with a message that
names it when negative, not finite or not a number, or set for a market or rationality it does not apply to,
and a per-MG one naming an MG the scenario lacks — before any day is solved.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from peergrid_controller.scenario import ScenarioError, load_scenario, load_scenario_file
from peergrid_controller.simrecords import ConfigError, SimulationConfig
from peergrid_controller.simulate import simulate
from peergrid_controller.synth import synthetic_scenario

ROOT = Path(__file__).resolve().parents[2]
TWO_MG = ROOT / "controller/scenarios/two-mg.yaml"


@given(st.floats(min_value=0.0, allow_nan=False, allow_infinity=False))
def test_any_finite_amount_of_at_least_zero_is_taken(x: float) -> None:
    config = SimulationConfig(risk_allowance=x, mg_risk_allowance={"a": x})
    assert config.allowance("a") == config.allowance("b") == x


@given(st.floats().filter(lambda x: not (math.isfinite(x) and x >= 0.0)))
def test_anything_else_is_refused_naming_the_field(x: float) -> None:
    with pytest.raises(ConfigError, match=r"^risk_allowance must be a finite amount >= 0, got "):
        SimulationConfig(risk_allowance=x)
    with pytest.raises(ConfigError, match=r"^mg_risk_allowance\['mg2'\] must be a finite amount >= 0, got "):
        SimulationConfig(mg_risk_allowance={"mg1": 1.0, "mg2": x})


@pytest.mark.parametrize("x", [True, "1", None])
def test_an_allowance_that_is_not_a_number_is_refused(x: Any) -> None:
    with pytest.raises(ConfigError, match="must be a finite amount >= 0"):
        SimulationConfig(risk_allowance=x)


def test_an_mg_s_own_allowance_comes_before_every_mg_s() -> None:
    config = SimulationConfig(risk_allowance=2.0, mg_risk_allowance={"mg1": 0.0, "mg2": 5.0})
    assert (config.allowance("mg1"), config.allowance("mg2"), config.allowance("mg3")) == (0.0, 5.0, 2.0)


@pytest.mark.parametrize(
    ("fields", "run"),
    [
        ({"market": "dayahead"}, "market dayahead, rationality strict"),
        ({"rationality": "off"}, "market intraday, rationality off"),
        ({"rationality": "trades"}, "market intraday, rationality trades"),
    ],
)
def test_a_positive_allowance_where_it_does_not_apply_is_refused(fields: dict[str, Any], run: str) -> None:
    for allowance in ({"risk_allowance": 1.0}, {"mg_risk_allowance": {"mg1": 0.0, "mg2": 0.1}}):
        with pytest.raises(ConfigError, match=f"strict rationality only \\({run}\\)"):
            SimulationConfig(**fields, **allowance)  # type: ignore[arg-type]
    # 0 is no allowance: every market takes it
    SimulationConfig(**fields, risk_allowance=0.0, mg_risk_allowance={"mg1": 0.0})  # type: ignore[arg-type]


def test_simulate_refuses_an_mg_the_scenario_lacks_and_an_allowance_given_twice() -> None:
    scenario = synthetic_scenario(2, 4, seed=0, interval_hours=6.0)
    with pytest.raises(ConfigError, match="mg_risk_allowance names unknown microgrid 'mg009'"):
        simulate(scenario, SimulationConfig(with_central=False, mg_risk_allowance={"mg009": 1.0}))
    with pytest.raises(
        ConfigError, match=r"risk_allowance 2\.0 given beside the config's 1\.0: give it once"
    ):
        simulate(scenario, SimulationConfig(with_central=False, risk_allowance=1.0), risk_allowance=2.0)


def write(tmp_path: Path, market: dict[str, Any]) -> Path:
    doc = yaml.safe_load(TWO_MG.read_text(encoding="utf-8"))
    doc["market"].update(market)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_the_scenario_file_carries_every_mg_s_allowance_and_each_mg_s_own(tmp_path: Path) -> None:
    path = write(tmp_path, {"risk_allowance": 2.5, "mg_risk_allowance": {"seller": 0.5}})
    loaded = load_scenario_file(path)
    assert (loaded.risk_allowance, loaded.mg_risk_allowance) == (2.5, {"seller": 0.5})
    assert loaded.scenario == load_scenario(path) == load_scenario(TWO_MG)  # the day itself is untouched
    plain = load_scenario_file(TWO_MG)
    assert (plain.risk_allowance, plain.mg_risk_allowance) == (0.0, {})


@pytest.mark.parametrize(
    ("market", "message"),
    [
        ({"risk_allowance": -1}, "'market.risk_allowance': Input should be greater than or equal to 0"),
        ({"risk_allowance": float("nan")}, "'market.risk_allowance': Input should be a finite number"),
        ({"risk_allowance": float("inf")}, "'market.risk_allowance': Input should be a finite number"),
        ({"risk_allowance": "lots"}, "'market.risk_allowance': Input should be a valid number"),
        (
            {"mg_risk_allowance": {"seller": -0.5}},
            "'market.mg_risk_allowance.seller': Input should be greater",
        ),
        ({"mg_risk_allowance": {"ghost": 1}}, "market.mg_risk_allowance names unknown microgrid 'ghost'"),
    ],
)
def test_a_bad_allowance_in_the_file_names_the_key(
    tmp_path: Path, market: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario_file(write(tmp_path, market))
