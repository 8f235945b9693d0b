"""The day-ahead summary's gain over tolerance before the make-whole (review28 R28-3): `stable` is after the
payments, so a day whose stop left MGs gaining beyond their tolerance read "stable" wherever the fund paid
them. `max_gain_ratio` and `earning` say how far the stop left it before them, each gain valued at the MG's
own rules as the make-whole values it (bench fee rows print both)."""

from __future__ import annotations

import math

import pytest
from helpers_ctl import load_only, pv_site

from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.model import ContractRules, Scenario
from peergrid_controller.simulate import SimulationConfig, simulate
from peergrid_controller.simulate_dayahead import _ratio
from peergrid_controller.venues import MemoryMarket


def test_an_mg_rationed_at_its_own_floor_is_not_counted_as_earning() -> None:
    # test_ctl_exchange_fee's floor day at one tick per side: a is rationed at its floor net of the fee, a
    # gain of more than 0.8 that its own rule values at nothing: the make-whole owes it nothing, and the
    # ratio is the make-whole's valuation, not max_deviation_gain's: b's 0.027 over its 0.02 (owed)
    rules = ContractRules(floor_price=0.08)
    scenario = Scenario("floor", 0.25, (pv_site("a", 60.0, 10.0, rules=rules), load_only("b", 20.0)))
    cfg = SimulationConfig(market="dayahead", with_central=False, dayahead=DayAheadConfig(exchange_fee=10**6))
    d = simulate(scenario, cfg, lambda s: MemoryMarket({mg.name: mg.rules for mg in s.microgrids})).dayahead
    assert d is not None and d.rationed_at_own_rule.keys() == {"a"} and d.max_deviation_gain > 0.8
    assert d.earning == ("b",) and d.uplift_credit.keys() == {"b"}
    assert d.max_gain_ratio == pytest.approx(1.3548, abs=1e-4)


def test_a_zero_tolerance_makes_an_earning_gain_infinite_and_none_zero() -> None:
    assert _ratio(0.5, 0.25) == 2.0
    assert _ratio(0.5, 0.0) == math.inf
    assert _ratio(0.0, 0.0) == 0.0
    assert _ratio(-1.0, 0.0) == 0.0
