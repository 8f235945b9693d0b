"""The strict guard whatever the others do, and the risk allowance that loosens it by a stated amount.

`simulate(..., risk_allowance=X)` starts every MG's day budget X above its conventional day cost
(rationality.py). The guarantee is then: no MG's day costs more than its conventional day plus X, whatever its
peers do. Played here against the worst peers there are: from some interval on they trade nothing at all (the
venue closes every interval empty), so every position an MG took counting on them is left to the DSO.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import pytest

from peergrid_controller.bargaining import MemoryVenue
from peergrid_controller.market import Trade
from peergrid_controller.model import Scenario
from peergrid_controller.simrecords import SimulationConfig
from peergrid_controller.simulate import SimulationResult, simulate
from peergrid_controller.synth import synthetic_scenario


@dataclass
class VanishingPeers(MemoryVenue):
    """The market contract, but from `from_interval` on every interval closes without a trade."""

    from_interval: int = 0

    def finish(self, interval: int) -> list[Trade]:
        trades = super().finish(interval)
        return [] if interval >= self.from_interval else trades


@functools.cache
def vanishing_day(seed: int, vanish_at: int, allowance: float) -> SimulationResult:
    """The seeded 4-MG day whose peers vanish at `vanish_at`, simulated once per module run: two tests here
    and test_ctl_risk_cli read the same days (a deterministic simulation, whose result nobody changes)."""
    scenario = synthetic_scenario(4, 24, seed=seed, interval_hours=1.0)

    def venue(s: Scenario) -> VanishingPeers:
        return VanishingPeers({m.name: m.rules for m in s.microgrids}, from_interval=vanish_at)

    return simulate(
        scenario, SimulationConfig(with_central=False), venue_factory=venue, risk_allowance=allowance
    )


def _day(seed: int, vanish_at: int, allowance: float) -> tuple[dict[str, float], int]:
    """Each MG's day cost above its conventional day (negative: below), and the trades agreed before the
    peers vanished."""
    result = vanishing_day(seed, vanish_at, allowance)
    totals = result.totals()
    p2p, conventional = totals["mg_cost_p2p"], totals["mg_cost_conventional"]
    assert isinstance(p2p, dict) and isinstance(conventional, dict)
    return {m: p2p[m] - conventional[m] for m in p2p}, sum(len(i.trades) for i in result.intervals)


@pytest.mark.parametrize(("seed", "vanish_at"), [(1, 8), (2, 8), (3, 10)])
def test_when_the_peers_vanish_no_mg_ends_above_its_conventional_day(seed: int, vanish_at: int) -> None:
    above, trades = _day(seed, vanish_at, 0.0)
    assert trades > 0  # positions were taken before the peers vanished: the test is not vacuous
    assert {m: x for m, x in above.items() if x > 1e-6} == {}


@pytest.mark.parametrize(("seed", "vanish_at", "allowance"), [(1, 8, 2.0), (2, 8, 2.0), (2, 8, 0.5)])
def test_with_an_allowance_no_mg_ends_above_its_conventional_day_plus_it(
    seed: int, vanish_at: int, allowance: float
) -> None:
    above, _ = _day(seed, vanish_at, allowance)
    assert {m: x for m, x in above.items() if x > allowance + 1e-6} == {}


def test_the_allowance_is_taken_and_the_bound_is_what_holds_it() -> None:
    """Seed 2: mg002 leans on its peers with the allowance and, when they vanish, ends the whole allowance
    above its conventional day, where without one it ends at it."""
    with_it, _ = _day(2, 8, 2.0)
    without, _ = _day(2, 8, 0.0)
    assert with_it["mg002"] == pytest.approx(2.0, abs=1e-4)
    assert without["mg002"] <= 1e-6


@pytest.mark.parametrize("allowance", [-1.0, math.nan, math.inf, -math.inf])
def test_an_allowance_that_is_not_a_finite_amount_of_at_least_zero_is_refused(allowance: float) -> None:
    scenario = synthetic_scenario(2, 4, seed=0, interval_hours=6.0)
    with pytest.raises(ValueError, match="risk_allowance must be a finite amount >= 0"):
        simulate(scenario, SimulationConfig(with_central=False), risk_allowance=allowance)


@pytest.mark.parametrize(
    "config",
    [
        SimulationConfig(with_central=False, rationality="off"),
        SimulationConfig(with_central=False, rationality="trades"),
        SimulationConfig(with_central=False, market="dayahead"),
    ],
)
def test_an_allowance_outside_the_strict_intraday_market_is_refused(config: SimulationConfig) -> None:
    scenario = synthetic_scenario(2, 4, seed=0, interval_hours=6.0)
    with pytest.raises(ValueError, match="intraday market's strict rationality only"):
        simulate(scenario, config, risk_allowance=1.0)
