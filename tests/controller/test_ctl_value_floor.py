"""The value stop's floor (`DayAheadConfig.value_floor_kwh`, `dayexchange.settled`'s `floor_kwh`): an MG's
allowance is one tick per kWh of its positions, or of the floor where it trades fewer, so a small MG is not
held to a sliver of the mean's motion that `at_stake` charges every MG alike; only in the session's last
phase (`Book.final_phase`), the run that no genset commitment or clean switch decision follows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from peergrid_controller.dayahead import allocate
from peergrid_controller.dayexchange import DayAheadConfig, at_stake, settled
from peergrid_controller.dayrounds import Exchange
from peergrid_controller.market import PRICE_TICK
from peergrid_controller.model import Scenario
from peergrid_controller.synth import synthetic_scenario

N = 4
SPREAD = [0.2] * N
RATIOS = [0.0] * N  # a balanced book: only the moves are at stake
MOVES = [0.1] * N  # 0.4 kWh moving in all, 0.08 at a spread of 0.2


def verdict(position: list[float], floor_kwh: float) -> bool:
    return settled(SPREAD, MOVES, position, RATIOS, PRICE_TICK, floor_kwh=floor_kwh)


def test_a_small_mg_is_allowed_what_an_mg_trading_the_floor_is() -> None:
    small = [-5.0] * N  # buys 20 kWh a day: one tick per kWh allows 0.02
    assert at_stake(SPREAD, MOVES, small, RATIOS) == pytest.approx(0.08)
    assert not verdict(small, 1.0)  # the old floor: 0.08 > 0.02
    assert verdict(small, 100.0)  # floored at 100 kWh: 0.08 <= 0.1
    assert not verdict(small, 20.0)  # a floor at its own volume changes nothing


def test_an_mg_trading_more_than_the_floor_keeps_its_own_allowance() -> None:
    large = [50.0] * N  # sells 200 kWh: 0.2 allowed whatever the floor below that
    assert verdict(large, 1.0) and verdict(large, 100.0)
    moving = [1.5] * N  # 1.2 at stake
    assert not settled(SPREAD, moving, large, RATIOS, PRICE_TICK, floor_kwh=100.0)
    assert not settled(SPREAD, moving, large, RATIOS, PRICE_TICK, floor_kwh=200.0)
    assert settled(SPREAD, moving, large, RATIOS, PRICE_TICK, floor_kwh=6000.0)  # 1.2 <= 6.0


def test_the_floor_is_no_value_stop_where_there_is_none() -> None:
    # value_per_kwh 0 turns the value stop off: no floor brings an allowance back
    assert not settled(SPREAD, MOVES, [0.0] * N, RATIOS, 0.0, floor_kwh=100.0)
    assert DayAheadConfig().value_floor_kwh == 100.0


def phases_seen(monkeypatch: pytest.MonkeyPatch, scenario: Scenario, cfg: DayAheadConfig) -> list[bool]:
    """`Exchange.final_phase` at the start of each run of one `allocate`."""
    seen: list[bool] = []
    run = Exchange.run

    def watched(self: Exchange, *args: Any, **kwargs: Any) -> bool:
        seen.append(self.final_phase)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Exchange, "run", watched)
    allocate(scenario, cfg)
    return seen


def test_the_floor_is_the_last_phases_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # before a genset commitment or a clean switch decision the prices found decide a MILP: there the
    # allowance stays per kWh of the MG's own positions; the run no decision follows is floored
    day = synthetic_scenario(6, 4, seed=1, interval_hours=1.0, rules=True)  # a genset MG, a clean-only one
    flat = replace(day, microgrids=tuple(replace(mg, gensets=()) for mg in day.microgrids))
    assert phases_seen(monkeypatch, flat, DayAheadConfig()) == [True]  # one phase
    assert phases_seen(monkeypatch, day, DayAheadConfig()) == [False, True]  # relaxed, then committed
    clean = DayAheadConfig(clean_book=True)  # relaxed, then a run after each of the 3 switch decisions
    assert phases_seen(monkeypatch, day, clean) == [False, False, False, True]
    assert phases_seen(monkeypatch, day, replace(clean, clean_decisions=1)) == [False, True]
