"""The day-ahead summary's gain over tolerance before the make-whole (review28 R28-3): `stable` is after the
payments, so a day whose stop left MGs gaining beyond their tolerance read "stable" wherever the fund paid
them. `max_gain_ratio` and `earning` say how far the stop left it before them (bench fee rows print both)."""

from __future__ import annotations

import math
from functools import cache

import pytest

from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.simrecords import SimulationResult
from peergrid_controller.simulate import SimulationConfig, simulate
from peergrid_controller.simulate_dayahead import _ratio
from peergrid_controller.synth import synthetic_scenario
from peergrid_controller.venues import MemoryMarket


@cache
def day(fee: int) -> SimulationResult:
    """20 MGs, 24 quarter-hours: at 0.75 µ/Wh per side the MGs allocate as at one tick (exchange_fee.on_tick)
    while their deviation pays the exact fee, and 17 of them gain beyond their tolerance (unfunded)."""
    scenario = synthetic_scenario(20, 24, seed=1, interval_hours=0.25)
    cfg = SimulationConfig(market="dayahead", dayahead=DayAheadConfig(exchange_fee=fee))
    return simulate(scenario, cfg, lambda s: MemoryMarket({mg.name: mg.rules for mg in s.microgrids}))


def tolerances(result: SimulationResult) -> dict[str, float]:
    """Each MG's tolerance as the stability check takes it: one tick per kWh it trades, at least one kWh."""
    traded: dict[str, float] = {}
    for r in result.intervals:
        for tr in r.trades:
            for name in (tr.seller, tr.buyer):
                traded[name] = traded.get(name, 0.0) + abs(tr.quantity_kwh)
    return {name: 0.001 * max(traded.get(name, 0.0), 1.0) for name in result.intervals[0].mg_cost_p2p}


def test_the_mgs_gaining_beyond_their_tolerance_before_the_make_whole_are_named() -> None:
    result = day(750_000)
    d = result.dayahead
    assert d is not None and not d.uplift_funded and not d.stable
    assert len(d.earning) == 17 and set(d.earning) <= set(result.intervals[0].mg_cost_p2p)
    assert d.max_gain_ratio == pytest.approx(44.64, abs=0.01)
    # the largest gain is no more than the largest ratio times the largest tolerance, and the largest ratio
    # no more than the largest gain over the smallest tolerance
    tol = tolerances(result)
    assert d.max_deviation_gain <= d.max_gain_ratio * max(tol.values()) + 1e-9
    assert d.max_gain_ratio <= d.max_deviation_gain / min(tol.values()) + 1e-9


def test_a_zero_tolerance_makes_an_earning_gain_infinite_and_none_zero() -> None:
    assert _ratio(0.5, 0.25) == 2.0
    assert _ratio(0.5, 0.0) == math.inf
    assert _ratio(0.0, 0.0) == 0.0
    assert _ratio(-1.0, 0.0) == 0.0
