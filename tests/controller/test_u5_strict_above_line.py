"""U5: under the strict guard without a risk allowance, an MG whose day ended above its conventional day plus
the clean premiums its owner paid (the guard's bound since M15: a fault) is named on stderr; before, only the
JSON's costs showed it, against `--rationality strict`'s promise. Nothing is printed when none did; the JSON
carries each owner's premium paid (`total.clean_premium_paid`) where some was.
"""

from __future__ import annotations

import argparse

import pytest

from peergrid_controller.cli_output import report, result_json
from peergrid_controller.model import Scenario
from peergrid_controller.simrecords import IntervalResult, SimulationResult


def day(factory_p2p: float, premium_paid: dict[str, float] | None = None) -> SimulationResult:
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
    return SimulationResult("u5", (interval,), 0.0, premium_paid=premium_paid or {})


def args(rationality: str = "strict", market: str = "intraday") -> argparse.Namespace:
    return argparse.Namespace(json=True, rationality=rationality, market=market, loss=None, seed=0)


def test_an_mg_above_its_conventional_day_under_strict_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    report(day(2.229), Scenario("u5", 0.25, ()), args(), [])
    assert (
        "peergrid-market: day above its conventional one plus its owner's clean premiums under the strict guard:"
        " factory 0.7290 (the guard promises none is: a fault)"
    ) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("factory_p2p", "rationality", "market"),
    [
        (1.5, "strict", "intraday"),
        (1.0, "strict", "intraday"),
        (1.6, "strict", "intraday"),  # 0.1 above, within the 0.2 of premium its owner paid
        (2.229, "off", "intraday"),
        (2.229, "strict", "dayahead"),
    ],
)
def test_no_line_when_none_is_above_or_the_guard_is_not_strict_intraday(
    capsys: pytest.CaptureFixture[str], factory_p2p: float, rationality: str, market: str
) -> None:
    report(day(factory_p2p, {"factory": 0.2}), Scenario("u5", 0.25, ()), args(rationality, market), [])
    assert "under the strict guard" not in capsys.readouterr().err


def test_an_mg_above_by_more_than_its_premiums_is_named_by_the_excess(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report(day(2.229, {"factory": 0.5}), Scenario("u5", 0.25, ()), args(), [])
    assert "under the strict guard: factory 0.2290 (" in capsys.readouterr().err


def test_the_json_carries_the_premiums_paid_only_where_some_was() -> None:
    assert result_json(day(2.229, {"factory": 0.5}))["total"]["clean_premium_paid"] == {"factory": 0.5}
    assert "clean_premium_paid" not in result_json(day(2.229))["total"]
