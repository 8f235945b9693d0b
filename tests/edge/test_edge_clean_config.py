"""The MGMC's clean day-ahead switch (`MarketSettings.dayahead_clean`, day_stages.dayahead_config): off by default as
the controller's `DayAheadConfig.clean_book`, on it keeps the clean book; a bad value or a misspelt key is refused
with the field named; where MGMCs are set differently the coordinator's switch decides and every member follows."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from test_edge_clean_dayahead import CLEAN, SESSION, clean_day, reopened
from test_edge_dayahead_session import ledger_for, run_session

from peergrid_controller.dayahead import allocate
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_edge.config import MarketSettings
from peergrid_edge.day_stages import dayahead_config
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_ledger.contracts import exchange as contract

BASE: dict[str, Any] = {
    "scenario": Path("s.yaml"),
    "anonym_key_file": Path("a.key"),
    "t0": 0.0,
    "interval_s": 900.0,
}


def test_the_switch_is_off_by_default_as_the_controllers() -> None:
    settings = MarketSettings(**BASE)
    assert settings.dayahead_clean is False
    assert dayahead_config(settings) == DayAheadConfig()  # the controller's defaults, clean book off
    assert DayAheadConfig().clean_book is False


def test_on_the_session_keeps_the_clean_book_and_nothing_else_changes() -> None:
    cfg = dayahead_config(MarketSettings(**BASE, dayahead_clean=True))
    assert cfg.clean_book is True
    assert dataclasses.replace(cfg, clean_book=False) == DayAheadConfig()


@pytest.mark.parametrize("value", ["maybe", 2, None, [True]])
def test_a_bad_value_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(ValidationError, match="dayahead_clean"):
        MarketSettings(**BASE, dayahead_clean=value)


def test_a_misspelt_switch_is_refused_not_left_off() -> None:
    with pytest.raises(ValidationError, match="dayahead_clean_book"):
        MarketSettings(**BASE, dayahead_clean_book=True)


@pytest.mark.parametrize("coordinator_on", [True, False], ids=["coordinator-on", "coordinator-off"])
def test_mgmcs_set_differently_follow_the_coordinators_switch(tmp_path: Path, coordinator_on: bool) -> None:
    # the switch is not on the chain: the coordinator (lowest member key) opens the session clean or not by its
    # own, and every member follows the session as opened whatever its own switch says (the day is then
    # `allocate`'s with the coordinator's setting); each is CLEAN (one decision: the edge's scope today)
    scenario = clean_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    on, off = CLEAN, dataclasses.replace(CLEAN, clean_book=False)

    def member_with(cfg: DayAheadConfig) -> Any:
        def make(*args: Any, **kwargs: Any) -> DayAheadAgent:
            return DayAheadAgent(*args[:8], cfg, *args[9:], **kwargs)

        return make

    theirs = off if coordinator_on else on
    make = {mg.name: member_with(theirs) for mg in scenario.microgrids if mg.name != coordinator}
    outcomes = run_session(ledger, keys_, scenario, config=on if coordinator_on else off, make=make)
    assert all(o.completed for o in outcomes.values()), {n: o.reason for n, o in outcomes.items()}
    expected = allocate(scenario, on if coordinator_on else off)
    ledger, _, state = reopened(tmp_path, scenario)
    try:
        record = contract.session(state, SESSION)
        assert record is not None and record["closed"]
        assert bool(record.get("clean")) is coordinator_on
    finally:
        ledger.close()
    n = scenario.intervals
    for mg in scenario.microgrids:
        got = [q / 1000 for q in outcomes[mg.name].positions]
        assert max(abs(a - b) for a, b in zip(got, expected.positions[mg.name][:n], strict=True)) <= 1e-3, (
            mg.name
        )
