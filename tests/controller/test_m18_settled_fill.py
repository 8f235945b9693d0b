"""The bargaining does not stop while the buyers' fill estimate has yet to settle on the fills they got
(bargaining.bargain's convergence, with owner rules): once prices stand still for two rounds `ExpectedFill`
counts on the fills of the last round (`moves.served`), and a short buyer then asks a seller that served it
in full for what the rationed sellers withhold.

Before, the market stopped one round after prices stood still, with the estimate still smoothed. A seller
rationed in an earlier round keeps a smoothed fill below 1 (0.96, 0.98, ...) though it left energy unsold in
every round since, and `make_bid` asks only a seller whose fill is 1 for a shortfall. On the bench's 20-MG
owner-rules day (seed 1, memory venue, strict) with M17's forecast (the band's edges settled half a tick out)
that was 72-81 (18:00 on): clean sellers mg014 and mg018 at 0.299, rationed in rounds 1 and 6, an effective
0.272 / 0.273 to mg001 and mg016 (premiums 0.027, 0.026), in one level with gensets sold out at 0.271. They
went 6.1 and 5.9 kWh unsold while mg016 bought 15.35 of its 17.87 kWh (the rest from the DSO at 0.30) and
mg001 8.63 of 10.05: taker gains 0.068 and 0.040, not stable (M18). Interval 72's participants are below as
they were handed to `bargain` there (curves rounded to 1e-6).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from peergrid_controller.bargaining import BargainingConfig, MemoryVenue, Participant, bargain
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.market import Trade
from peergrid_controller.model import ContractRules
from peergrid_controller.moves import ExpectedFill, served
from peergrid_controller.stability import check

FEED_IN, RETAIL = 0.05, 0.30


def _mg(
    name: str,
    prices: tuple[float, ...],
    quantities: tuple[float, ...],
    upper: float,
    clean: bool,
    rules: tuple[float, float, float, bool, float],
) -> Participant:
    return Participant(name, ResponseCurve(prices, quantities, upper), ContractRules(*rules), clean)


# fmt: off
INTERVAL_72 = [
    _mg('mg001', (0.05, 0.266238, 0.300001), (-10.201186, -10.048, 4.7), 0.327, True,
        (0.06, 0.279, 28.2, False, 0.027)),
    _mg('mg002', (0.05, 0.266238, 0.300001), (-20.955168, -19.3205, 26.2), 0.327, True,
        (0.076, 0.271, 52.4, False, 0.008)),
    _mg('mg003', (0.05, 0.0501, 0.136201, 0.176201, 0.300001), (-18.36275, -3.38775, 1.12475, 11.61225, 29.975), 0.327, False,
        (0.073, 0.245, 49.9, True, 0.013)),
    _mg('mg004', (0.05, 0.300001), (-43.23125, 0.0), 0.327, True,
        (0.075, 0.241, 113.9, False, 0.023)),
    _mg('mg005', (0.05, 0.266238, 0.300001), (-7.955465, -5.13275, 3.575), 0.327, True,
        (0.084, 0.261, 21.5, True, 0.002)),
    _mg('mg006', (0.05, 0.266238, 0.300001), (-36.166864, -19.04775, 24.95), 0.327, True,
        (0.055, 0.255, 49.9, False, 0.005)),
    _mg('mg007', (0.05, 0.0501, 0.123601, 0.163601, 0.300001), (-14.11125, -2.51125, 0.98875, 9.11375, 23.225), 0.327, False,
        (0.071, 0.222, 38.7, False, 0.006)),
    _mg('mg008', (0.05, 0.300001), (-37.064, 0.0), 0.327, True,
        (0.059, 0.215, 96.5, False, 0.021)),
    _mg('mg009', (0.05, 0.266238, 0.300001), (-21.719595, -16.02375, 7.45), 0.327, True,
        (0.057, 0.237, 44.7, False, 0.023)),
    _mg('mg010', (0.05, 0.266238, 0.300001), (-47.802, -20.652, 27.15), 0.327, True,
        (0.062, 0.267, 54.3, True, 0.015)),
    _mg('mg011', (0.05, 0.0501, 0.140701, 0.180701, 0.300001), (-18.302, -2.677, 2.0105, 12.948, 31.25), 0.327, False,
        (0.07, 0.243, 52.1, False, 0.013)),
    _mg('mg012', (0.05, 0.300001), (-27.626, 0.0), 0.327, True,
        (0.06, 0.271, 76.2, False, 0.022)),
    _mg('mg013', (0.05, 0.266238, 0.300001), (-29.732085, -22.09275, 9.875), 0.327, True,
        (0.086, 0.235, 59.3, False, 0.025)),
    _mg('mg014', (0.05, 0.265336, 0.299001, 0.300001), (-26.79875, -8.49875, 9.80125, 18.3), 0.327, True,
        (0.052, 0.226, 36.6, False, 0.001)),
    _mg('mg015', (0.05, 0.0501, 0.111201, 0.151201, 0.300001), (-20.4315, -4.5565, 0.206, 11.3185, 31.75), 0.327, False,
        (0.052, 0.265, 52.9, False, 0.027)),
    _mg('mg016', (0.05, 0.300001), (-17.87375, 0.0), 0.327, True,
        (0.089, 0.285, 46.5, False, 0.026)),
    _mg('mg017', (0.05, 0.266238, 0.300001), (-13.185667, -9.65575, 4.5), 0.327, True,
        (0.085, 0.245, 27.0, False, 0.006)),
    _mg('mg018', (0.05, 0.265336, 0.299001, 0.300001), (-25.5735, -8.0485, 9.4765, 17.525), 0.327, True,
        (0.053, 0.299, 35.0, False, 0.004)),
    _mg('mg019', (0.05, 0.0501, 0.142801, 0.182801, 0.300001), (-6.11425, 1.81075, 4.17325, 9.71075, 15.825), 0.327, False,
        (0.065, 0.268, 26.4, False, 0.021)),
    _mg('mg020', (0.05, 0.300001), (-34.3555, 0.0), 0.327, True,
        (0.052, 0.238, 89.9, False, 0.012)),
]
# fmt: on


def _bought(trades: Sequence[Trade], buyer: str) -> float:
    return sum(t.quantity_kwh for t in trades if t.buyer == buyer)


def test_the_owner_rules_days_interval_72_is_stable_and_the_premium_buyers_are_served() -> None:
    cfg = BargainingConfig()
    venue = MemoryVenue({p.name: p.rules for p in INTERVAL_72})
    outcome = bargain(INTERVAL_72, 72, FEED_IN, RETAIL, venue, cfg)
    volume = sum(t.quantity_kwh for t in outcome.trades)
    stability = check(INTERVAL_72, outcome, cfg.price_tolerance * max(volume, 1.0), cfg.price_band)
    assert outcome.converged, len(outcome.rounds)
    # before: converged in 9 rounds, 61.97 kWh, mg016 and mg001 would gain 0.068 and 0.040 by asking more
    assert stability.stable, stability.taker_gain
    assert _bought(outcome.trades, "mg016") == pytest.approx(17.87, abs=0.05)  # 15.35 before
    assert _bought(outcome.trades, "mg001") == pytest.approx(10.05, abs=0.05)  # 8.63 before


def test_the_estimate_settles_on_the_fills_served_after_two_still_rounds() -> None:
    offered, asked = {"c": 10.0, "g": 10.0}, {"c": 4.0, "g": 12.5}
    assert served(offered, asked) == pytest.approx({"c": 1.0, "g": 0.8})
    expected = ExpectedFill({"c": 0.96, "g": 1.0})
    assert expected.observe(offered, asked, True) == pytest.approx({"c": 0.98, "g": 0.9})  # still smoothed
    assert expected.observe(offered, asked, True) == served(offered, asked)
