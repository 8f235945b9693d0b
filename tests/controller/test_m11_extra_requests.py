"""A short buyer's extra request goes to a seller that left energy unsold, and asks it no more than what the
other buyers left (moves.make_bid's `mine`, bargaining.bargain).

Before, the extra request could take the seller's whole offer: it asked past the seller's spare, rationed it,
and next round, the seller having no spare and a fill below 1, the buyer asked its share alone, which left
spare again: a two-round cycle to the 50-round cap. Now a buyer asks for its part of the spare, in proportion
to what it asked of the seller, plus what it took of it before. On the bench's 20-MG owner-rules day (seed 1, strict,
chain venue) that was interval 32 (07:45): 50 rounds, unconverged and unstable, the buyer mg020 asking mg015
for 7.81 and 9.80 kWh in turn (M11). Its participants are below as they were handed to `bargain` there.
"""

from __future__ import annotations

import pytest

from peergrid_controller.bargaining import BargainingConfig, MemoryVenue, Participant, bargain
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.market import Offer
from peergrid_controller.model import ContractRules
from peergrid_controller.moves import make_bid
from peergrid_controller.stability import check

FEED_IN, RETAIL = 0.05, 0.22


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
INTERVAL_32 = [
    _mg('mg001', (0.05, 0.139283, 0.15933, 0.220001), (-1.56225, 3.13775, 3.140437, 18.24125), 0.247, True,
        (0.06, 0.279, 28.2, False, 0.027)),
    _mg('mg002', (0.05, 0.052, 0.053, 0.054, 0.055, 0.056, 0.057, 0.058, 0.059, 0.06, 0.221), (-33.74, -26.152077359116873, -19.612423105774337, -15.689153830763523, -13.073858976494193, -11.205897985424984, -9.804985623201777, -8.71542171352285, -7.843792379237269, 0.0, 38.27), 0.247, True,
        (0.076, 0.271, 52.4, False, 0.008)),
    _mg('mg003', (0.05, 0.0501, 0.136201, 0.176201, 0.220001), (-19.40875, 0.3545, 4.86975, 15.35725, 34.766), 0.247, False,
        (0.073, 0.245, 49.9, True, 0.013)),
    _mg('mg004', (0.05, 0.207), (-36.47475, 0.0), 0.247, True,
        (0.075, 0.241, 113.9, False, 0.023)),
    _mg('mg005', (0.05, 0.0501, 0.139283, 0.15933, 0.220001), (-9.18075, 1.13625, 4.71125, 4.713506, 13.892), 0.247, True,
        (0.084, 0.261, 21.5, True, 0.002)),
    _mg('mg006', (0.05, 0.052, 0.053, 0.054, 0.055, 0.056, 0.057, 0.058, 0.059, 0.06, 0.221), (-31.92425, -24.189779426472676, -18.140822330580974, -14.511932086416225, -12.0928735622597, -10.365073367623431, -9.069277222152481, -8.061467774196245, -7.255240374036697, 0.0, 36.44275), 0.247, True,
        (0.055, 0.255, 49.9, False, 0.005)),
    _mg('mg007', (0.05, 0.0501, 0.123601, 0.163601, 0.220001), (-14.83125, 0.48225, 3.9835, 12.1085, 26.93975), 0.247, False,
        (0.071, 0.222, 38.7, False, 0.006)),
    _mg('mg008', (0.05, 0.220001), (-31.4515, 5.55425), 0.247, True,
        (0.059, 0.215, 96.5, False, 0.021)),
    _mg('mg009', (0.05, 0.139283, 0.15933, 0.220001), (-2.03075, 5.41925, 5.421412, 28.8965), 0.247, True,
        (0.057, 0.237, 44.7, False, 0.023)),
    _mg('mg010', (0.05, 0.052, 0.053, 0.054, 0.055, 0.056, 0.057, 0.058, 0.059, 0.06, 0.221), (-35.14, -27.712897632542862, -20.782940735183033, -16.62552110422004, -13.854139023170012, -11.874693527646464, -10.39017127140864, -9.235579508834135, -8.311929192919186, 0.0, 39.65425), 0.247, True,
        (0.062, 0.267, 54.3, True, 0.015)),
    _mg('mg011', (0.05, 0.0501, 0.140701, 0.180701, 0.220001), (-19.5095, -3.79125, 5.801, 16.7385, 36.248), 0.247, False,
        (0.07, 0.243, 52.1, False, 0.013)),
    _mg('mg012', (0.05, 0.207), (-26.01625, 0.0), 0.247, True,
        (0.06, 0.271, 76.2, False, 0.022)),
    _mg('mg013', (0.05, 0.139283, 0.220001), (-3.99225, 5.88275, 38.32275), 0.247, True,
        (0.086, 0.235, 59.3, False, 0.025)),
    _mg('mg014', (0.05, 0.051, 0.052, 0.053, 0.054, 0.055, 0.056, 0.057, 0.058, 0.058406, 0.058506, 0.069793, 0.069893, 0.221), (-18.90575, -16.611841877938325, -11.07271487629178, -8.303843939484521, -6.642742931386177, -5.535434558092758, -4.744545208458296, -4.151402914614116, -3.950871137893835, -3.904417626572404, -0.60575, -1.1082419968611035e-05, 0.0, 26.7275), 0.247, True,
        (0.052, 0.226, 36.6, False, 0.001)),
    _mg('mg015', (0.05, 0.0501, 0.103072, 0.111201, 0.151201, 0.220001), (-19.33875, 1.60875, 1.6115, 6.374, 17.4865, 36.82525), 0.247, False,
        (0.052, 0.265, 52.9, False, 0.027)),
    _mg('mg016', (0.05, 0.204), (-13.95325, 0.0), 0.247, True,
        (0.089, 0.285, 46.5, False, 0.026)),
    _mg('mg017', (0.05, 0.139283, 0.220001), (-1.336, 3.164, 17.46675), 0.247, True,
        (0.085, 0.245, 27.0, False, 0.006)),
    _mg('mg018', (0.05, 0.051, 0.052, 0.053, 0.054, 0.055, 0.056, 0.057, 0.058, 0.058406, 0.058506, 0.062, 0.063, 0.064, 0.065, 0.066, 0.067, 0.068, 0.069, 0.069793, 0.069893, 0.221), (-13.417327591590729, -6.705307785892096, -4.469459907969622, -3.3518155198799477, -2.6813183164631225, -2.2343574369058317, -1.9151179117017554, -1.675698245280603, -1.5947543443186925, -1.5760035583772438, -1.03525, -1.0147245914508995, -0.7326215635250194, -0.5732520696103784, -0.4708307600498365, -0.3994603249959696, -0.34687900013144723, -0.3065301574966866, -0.28064321235337625, -6.6618701270275416e-06, 0.0, 25.03575), 0.247, True,
        (0.053, 0.299, 35.0, False, 0.004)),
    _mg('mg019', (0.05, 0.0501, 0.142801, 0.220001), (-6.729, 0.54975, 3.69975, 18.35375), 0.247, False,
        (0.065, 0.268, 26.4, False, 0.021)),
    _mg('mg020', (0.05, 0.220001), (-27.7325, 5.17675), 0.247, True,
        (0.052, 0.238, 89.9, False, 0.012)),
]
# fmt: on


def _flat(quantity: float, up_to: float) -> ResponseCurve:
    """Buys `-quantity` kWh at any price below `up_to`, nothing above."""
    return ResponseCurve((0.05, up_to), (quantity, 0.0), 0.25)


def test_the_owner_rules_days_interval_32_converges_and_is_stable() -> None:
    cfg = BargainingConfig()
    venue = MemoryVenue({p.name: p.rules for p in INTERVAL_32})
    outcome = bargain(INTERVAL_32, 32, FEED_IN, RETAIL, venue, cfg)
    volume = sum(t.quantity_kwh for t in outcome.trades)
    assert outcome.converged, len(outcome.rounds)  # before: 50 rounds, the last 14 a two-round cycle
    assert check(INTERVAL_32, outcome, cfg.price_tolerance * max(volume, 1.0), cfg.price_band).stable
    assert volume > 55.0  # 58.13 kWh in 40 rounds (55.54 at the cap before)


def test_the_extra_request_is_this_buyers_part_of_what_was_left() -> None:
    buyer = Participant("x", _flat(-10.0, 0.20), ContractRules(clean_premium=0.01), False)
    offers = [Offer("a", 0, 0.10, 10.0, False), Offer("b", 0, 0.10, 10.0, False)]
    fill = {"a": 0.5, "b": 1.0}
    # b served in full and kept 1 kWh of 10: asked 9, 5 of them by x, so x's part of the spare is 5/9 kWh
    # (every buyer taking all of it rationed b, and the next round none took any: the cycle)
    first = dict(make_bid(buyer, offers, 0, 0.002, fill, {"b": 1.0}, mine={"a": 5.0, "b": 5.0}).requests)
    assert first["a"] == 5.0 and first["b"] == pytest.approx(5.0 + 5.0 / 9.0, abs=0.001)
    # once b has nothing unsold, what x took of it is still x's to ask: the round repeats
    again = dict(make_bid(buyer, offers, 0, 0.002, fill, {}, mine=first).requests)
    assert again == first


def test_without_mine_the_extra_request_is_as_before() -> None:
    buyer = Participant("x", _flat(-10.0, 0.20), ContractRules(clean_premium=0.01), False)
    offers = [Offer("a", 0, 0.10, 10.0, False), Offer("b", 0, 0.10, 10.0, False)]
    bid = make_bid(buyer, offers, 0, 0.002, {"a": 0.5, "b": 1.0}, {"b": 1.0})
    assert dict(bid.requests)["b"] == pytest.approx(7.5)  # the edge's agent passes no `mine` (yet)
