"""The controller's chain venue with genesis `sealed_statements` (ChainVenue(sealed_statements=True)).

Each speaking party commits, then both reveal: two agree and pay once; meters that disagree are disputed and
the DSO settles; a silent buyer leaves the seller to reveal from its commit deadline and settle on its lone
statement; a whole simulated day pays every trade what the day on public statements pays, and the same
scenario gives the same chain bytes.
"""

from __future__ import annotations

import pytest
from test_ctl_settle_both import DAY, INTRADAY, agreed, day, payments, standing, tiny

from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.market import Rejected


def test_both_commit_then_reveal_and_the_trade_settles_once() -> None:
    venue = ChainVenue(tiny(), sealed_statements=True)
    assert venue.chain.genesis.params.sealed_statements == 1
    trade = agreed(venue)
    before = venue.transactions
    assert not isinstance(venue.settle(trade, 3.5), Rejected)
    assert venue.transactions == before + 4  # two commitments, two reveals
    record = standing(venue, trade)
    assert record["state"] == "settled" and record["settlement"]["basis"] == "agreed"
    assert record["settlement"]["delivered"] == 3500
    again = venue.settle(trade, 3.5)
    assert isinstance(again, Rejected) and "already settled" in again.reason


def test_meters_that_disagree_are_disputed_and_the_dso_settles() -> None:
    venue = ChainVenue(tiny(), sealed_statements=True, meter_error_wh={"b": -300})
    trade = agreed(venue)
    assert not isinstance(venue.settle(trade, 4.0), Rejected)
    record = standing(venue, trade)
    assert record["settlement"]["basis"] == "dso" and record["settlement"]["delivered"] == 4000
    assert {p: s["delivered"] for p, s in record["statements"].items()} == {"buyer": 3700, "seller": 4000}


def test_a_silent_buyer_leaves_the_seller_to_reveal_after_the_commit_deadline() -> None:
    venue = ChainVenue(tiny(), sealed_statements=True, silent=("b",))
    trade = agreed(venue)
    assert not isinstance(venue.settle(trade, 2.0), Rejected)
    record = standing(venue, trade)
    assert set(record["statements"]) == {"seller"} and record["settlement"]["basis"] == "lapsed"
    assert record["statements"]["seller"]["time"] >= record["deadline"]  # revealed from the commit deadline


def test_sealed_needs_settle_by_both() -> None:
    with pytest.raises(ValueError, match="sealed statements need settle_by_both"):
        ChainVenue(tiny(), settle_by_both=False, sealed_statements=True)


def test_a_sealed_day_pays_what_the_public_day_pays_with_the_same_bytes_each_run() -> None:
    public = day(INTRADAY, DAY, compensate=True)
    sealed = day(INTRADAY, DAY, compensate=True, sealed_statements=True)
    assert payments(sealed) == payments(public) and payments(public)[1]
    again = day(INTRADAY, DAY, compensate=True, sealed_statements=True)
    assert again.venue.chain.state.root == sealed.venue.chain.state.root
