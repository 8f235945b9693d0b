"""The guard's config (`market.rationality`, `forecast`, `risk_allowance`): the default is the edge as before,
and an allowance is refused at load where it cannot act, with a clear error, also by `check-config`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from peergrid_edge.config import MarketSettings

BIN = Path(sys.executable).parent
MARKET = {"scenario": "s.yaml", "anonym_key_file": "a.key", "t0": 0.0, "interval_s": 60.0}


def test_the_default_guards_nothing_and_plans_without_a_forecast() -> None:
    market = MarketSettings(**MARKET)
    assert (market.rationality, market.forecast, market.risk_allowance) == ("off", "none", 0.0)


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"risk_allowance": 2.0, "forecast": "market"}, "needs market.rationality strict"),
        ({"risk_allowance": 2.0, "rationality": "trades", "forecast": "market"}, "with rationality trades"),
        ({"risk_allowance": 2.0, "rationality": "strict"}, "needs market.forecast market"),
        (
            {"risk_allowance": -1.0, "rationality": "strict", "forecast": "market"},
            "greater than or equal to 0",
        ),
        ({"risk_allowance": float("inf"), "rationality": "strict", "forecast": "market"}, "finite"),
        ({"risk_allowance": float("nan"), "rationality": "strict", "forecast": "market"}, "finite"),
        ({"rationality": "loose"}, "'strict', 'trades' or 'off'"),
        ({"forecast": "dayahead"}, "'none' or 'market'"),
    ],
)
def test_an_allowance_that_cannot_act_or_a_bad_value_is_refused(fields: dict[str, object], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        MarketSettings(**MARKET, **fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"rationality": "strict"},  # against the conventional day only: the guarantee without a forecast
        {"rationality": "trades", "forecast": "market"},
        {
            "rationality": "off",
            "forecast": "market",
        },  # leaning on the forecast, unguarded (the simulation's off)
        {"rationality": "strict", "forecast": "market", "risk_allowance": 2.5},
        {"rationality": "strict", "forecast": "market", "risk_allowance": 0},
    ],
)
def test_what_can_act_is_taken(fields: dict[str, object]) -> None:
    market = MarketSettings(**MARKET, **fields)
    assert market.rationality == fields["rationality"]


def test_check_config_names_the_refusal_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "node_id: n1\nmg: mg1\n"
        "ledger: {replicas: {mgmc: {genesis: m.json}, dso: {genesis: d.json}}}\n"
        "market: {scenario: s.yaml, anonym_key_file: a.key, t0: 0, interval_s: 60, rationality: trades,\n"
        "         forecast: market, risk_allowance: 2}\n"
    )
    done = subprocess.run(
        [BIN / "peergrid-edge", "check-config", "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert "market.risk_allowance 2 needs market.rationality strict" in line
    config.write_text(config.read_text().replace("trades", "strict"))
    done = subprocess.run(
        [BIN / "peergrid-edge", "check-config", "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
