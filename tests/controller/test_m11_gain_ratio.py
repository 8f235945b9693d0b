"""The day-ahead summary's gain over tolerance before the make-whole (review28 R28-3): `stable` is after the
payments, so a day whose stop left MGs gaining beyond their tolerance read "stable" wherever the fund paid
them. `max_gain_ratio` and `earning` say how far the stop left it before them, each gain valued at the MG's
own rules as the make-whole values it, and `max_gain_ratio_held` the same with each genset MG's gensets held at
its committed on/off (deviation.at_own_commitment): the part the value stop can reach (bench fee rows print
all three)."""

from __future__ import annotations

import math

import pytest
from helpers_ctl import load_only, pv_site
from test_ctl_uplift import hand_allocation, hand_day

from peergrid_controller import baselines
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.deviation import at_own_commitment
from peergrid_controller.forward import commit, deviation_gains
from peergrid_controller.model import ContractRules, Scenario
from peergrid_controller.simrecords import DayAheadSummary
from peergrid_controller.simulate import SimulationConfig, simulate
from peergrid_controller.simulate_dayahead import _ratio
from peergrid_controller.venues import MemoryMarket


def floor_day(config: DayAheadConfig) -> DayAheadSummary:
    """test_ctl_exchange_fee's floor day: a (PV, floor 0.08) sells to b (a load)."""
    rules = ContractRules(floor_price=0.08)
    scenario = Scenario("floor", 0.25, (pv_site("a", 60.0, 10.0, rules=rules), load_only("b", 20.0)))
    cfg = SimulationConfig(market="dayahead", with_central=False, dayahead=config)
    d = simulate(scenario, cfg, lambda s: MemoryMarket({mg.name: mg.rules for mg in s.microgrids})).dayahead
    assert d is not None
    return d


def test_an_mg_rationed_at_its_own_floor_is_not_counted_as_earning() -> None:
    # the floor day at one tick per side: a is rationed at its floor net of the fee, a gain of more than 0.8
    # that its own rule values at nothing: the make-whole owes it nothing, and the ratio is the make-whole's
    # valuation, not max_deviation_gain's: b's 0.027 over its 0.02 (owed). With ρ held at the config's
    # (fee_rho_min = rho: the exchange as before `Book.follow_fee`) the value stop leaves b earning, so the
    # day shows both halves: a rationed and not counted, b counted and owed
    d = floor_day(DayAheadConfig(exchange_fee=10**6, fee_rho_min=0.005))
    assert d.rationed_at_own_rule.keys() == {"a"} and d.max_deviation_gain > 0.8
    assert d.earning == ("b",) and d.uplift_credit.keys() == {"b"}
    assert d.max_gain_ratio == pytest.approx(1.3548, abs=1e-4)
    assert d.max_gain_ratio_held == d.max_gain_ratio  # no genset: nothing to re-commit
    # ρ following the fee's drift (the default) takes it to the kWh stop (29 iterations, 17 before), where b
    # gains within its tolerance: nobody earns, and a, still rationed at its floor with more than 0.8, is not
    # counted either
    d = floor_day(DayAheadConfig(exchange_fee=10**6))
    assert d.rationed_at_own_rule.keys() == {"a"} and d.max_deviation_gain > 0.8
    assert d.earning == () and d.uplift_credit == {}
    assert d.max_gain_ratio == pytest.approx(0.0336, abs=1e-4)


def test_a_genset_s_gain_at_its_own_commitment_leaves_out_only_re_committing_it() -> None:
    # test_ctl_uplift's hand day: g's genset (0.15 per kWh above its minimum) and b's 40 kW load, 2 hours
    scenario = hand_day()
    conv = baselines.conventional(scenario)
    # at 0.188 g sells 40 kW with its genset on and would sell 100: all of that at its own commitment
    committed = commit(scenario, hand_allocation(0.188), conv)
    assert deviation_gains(scenario, committed)["g"] == pytest.approx(4.56, abs=1e-6)
    assert at_own_commitment(scenario, committed, {"g", "b"}) == {"g": pytest.approx(4.56, abs=1e-6)}
    # at 0.17 g declines (its genset stays off) and would start it to sell 100 kW: 1.0, all of it
    # re-committing (held off it gains nothing); b has no genset and is not solved again
    committed = commit(scenario, hand_allocation(0.17), conv)
    assert committed.declined == ("g",)
    assert deviation_gains(scenario, committed)["g"] == pytest.approx(1.0, abs=1e-6)
    assert at_own_commitment(scenario, committed, {"g", "b"}) == {"g": pytest.approx(0.0, abs=1e-6)}
    assert at_own_commitment(scenario, committed, {"b"}) == {}


def test_a_zero_tolerance_makes_an_earning_gain_infinite_and_none_zero() -> None:
    assert _ratio(0.5, 0.25) == 2.0
    assert _ratio(0.5, 0.0) == math.inf
    assert _ratio(0.0, 0.0) == 0.0
    assert _ratio(-1.0, 0.0) == 0.0
