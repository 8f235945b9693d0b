"""U5: under the strict guard without a risk allowance, an MG whose day ended above its conventional day (its
owner's clean premium, which the guard does not cover, or a fault) is named on stderr; before, only the JSON's
costs showed it, against `--rationality strict`'s "no MG ends worse off". Nothing is printed when none did."""

from __future__ import annotations

import argparse

import pytest

from peergrid_controller.cli_output import report
from peergrid_controller.model import Scenario
from peergrid_controller.simrecords import IntervalResult, SimulationResult


def day(factory_p2p: float) -> SimulationResult:
    interval = IntervalResult(
        interval=0,
        p2p_welfare=-(1.0 + factory_p2p),
        central_welfare=-2.0,
        conventional_welfare=-3.0,
        rounds=3,
        converged=True,
        stable=True,
        max_taker_gain=0.0,
        max_pricing_gain=0.0,
        mg_cost_p2p={"solar": 1.0, "factory": factory_p2p},
        mg_cost_conventional={"solar": 1.5, "factory": 1.5},
        trades=(),
    )
    return SimulationResult("u5", (interval,), 0.0)


def args(rationality: str = "strict", market: str = "intraday") -> argparse.Namespace:
    return argparse.Namespace(json=True, rationality=rationality, market=market, loss=None, seed=0)


def test_an_mg_above_its_conventional_day_under_strict_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    report(day(2.229), Scenario("u5", 0.25, ()), args(), [])
    assert (
        "peergrid-market: day above its conventional one under the strict guard: factory 0.7290 (the guard does"
        " not cover what an owner's clean premium pays; anything else is a fault)"
    ) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("factory_p2p", "rationality", "market"),
    [
        (1.5, "strict", "intraday"),
        (1.0, "strict", "intraday"),
        (2.229, "off", "intraday"),
        (2.229, "strict", "dayahead"),
    ],
)
def test_no_line_when_none_is_above_or_the_guard_is_not_strict_intraday(
    capsys: pytest.CaptureFixture[str], factory_p2p: float, rationality: str, market: str
) -> None:
    report(day(factory_p2p), Scenario("u5", 0.25, ()), args(rationality, market), [])
    assert "under the strict guard" not in capsys.readouterr().err
