"""The chain venue numbers each interval's rounds from 1: the market contract lets an opening lead its
interval's highest round by OPENING_SLACK (1000) only, and a day numbered on through its intervals had every
move refused once the day's rounds passed 1000 (the 20-MG owner-rules day, once its intervals all traded:
1,018 rounds, nothing traded from interval 79 on; M10)."""

from __future__ import annotations

from peergrid_controller.bargaining import BargainingConfig, Participant, bargain
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.synth import synthetic_scenario

FEED_IN, RETAIL = 0.05, 0.22


def _market() -> list[Participant]:
    """mg001 sells 10 kWh from 0.10 up; mg002 and mg003 buy 8 kWh each below retail."""
    scenario = synthetic_scenario(3, 4, seed=1)
    rules = {mg.name: mg.rules for mg in scenario.microgrids}
    seller = ResponseCurve((FEED_IN, 0.10), (0.0, 10.0), RETAIL)
    buyer = ResponseCurve((FEED_IN,), (-8.0,), RETAIL)
    return [
        Participant("mg001", seller, rules["mg001"], clean=True),
        Participant("mg002", buyer, rules["mg002"], clean=True),
        Participant("mg003", buyer, rules["mg003"], clean=True),
    ]


def test_after_a_day_of_a_thousand_rounds_the_next_interval_still_trades() -> None:
    venue = ChainVenue(synthetic_scenario(3, 4, seed=1))
    venue.round = 999  # the rounds of a long day's earlier intervals
    people = _market()
    first = bargain(people, 0, FEED_IN, RETAIL, venue, BargainingConfig())
    assert first.trades and not first.rounds[0].rejected  # opened at round 1000, within the slack
    second = bargain(people, 1, FEED_IN, RETAIL, venue, BargainingConfig())
    assert all(not r.rejected for r in second.rounds), second.rounds[0].rejected
    assert sum(t.quantity_kwh for t in second.trades) > 9.9
