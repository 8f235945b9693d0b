"""Price forecasts the plans lean on: the central optimum's shadow prices, and a forecast given from outside."""

from __future__ import annotations

import pytest

from peergrid_controller import baselines
from peergrid_controller.cli import result_json
from peergrid_controller.simulate import SimulationConfig, simulate
from peergrid_controller.synth import synthetic_scenario


def test_central_shadow_prices_lie_between_feed_in_and_retail() -> None:
    scenario = synthetic_scenario(4, 12, seed=3, interval_hours=2.0)
    central = baselines.central(scenario)
    assert len(central.prices) == scenario.intervals
    for t, price in enumerate(central.prices):
        lo = min(mg.tariff.feed_in[t] for mg in scenario.microgrids)
        hi = max(mg.tariff.retail[t] for mg in scenario.microgrids)
        assert lo - 1e-6 <= price <= hi + 1e-6
    # a midday surplus prices at feed-in, the evening at retail: the prices carry information
    assert min(central.prices) < max(central.prices)


def test_a_forecast_of_the_wrong_length_is_refused() -> None:
    scenario = synthetic_scenario(3, 6, seed=1, interval_hours=4.0)
    with pytest.raises(ValueError, match="5 prices for 6 intervals"):
        simulate(scenario, SimulationConfig(with_central=False, forecast_prices=(0.1,) * 5))


def test_a_given_forecast_is_what_the_plans_lean_on() -> None:
    scenario = synthetic_scenario(4, 12, seed=2, interval_hours=2.0)
    flat = simulate(scenario, SimulationConfig(with_central=False, forecast_prices=(0.1,) * 12))
    again = simulate(scenario, SimulationConfig(with_central=False, forecast_prices=(0.1,) * 12))
    discovered = simulate(scenario, SimulationConfig(with_central=False))
    assert result_json(flat) == result_json(again)
    assert result_json(flat)["total"] != result_json(discovered)["total"]
