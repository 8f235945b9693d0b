"""RR2 (review of C7): the Market view's first report lists the days from the chain's state only as far as an
enrolled anonym's `mkt/last` goes. Where none of the loop's MGs' anonyms holds a position (the traders are keys
the loop's settings do not name, or an MG enrolled again under a new anonym), the state cannot say how far the
intervals go: the view reads every block, as before C7, and lists every day (C7's code listed none and showed
an empty page until the next bargaining)."""

from __future__ import annotations

from peergrid_dso.console.live_market import LiveMarket

from .test_d9_market_missed import NOW_MS, Market

PER_DAY = 96


def three_days() -> Market:
    market = Market()
    for day in range(3):
        market.bargain(day * PER_DAY + 40)
        for _ in range(5):
            market.chain.seal(NOW_MS)
    return market


def test_traders_no_enrolled_anonym_names_are_listed_from_the_blocks() -> None:
    market = three_days()
    v = market.view
    view = LiveMarket(v.replica, v.call, {}, 0.25)  # the loop's anonyms name none of the traders
    report = view.report()
    assert [d["day"] for d in report["days"]] == [0, 1, 2]  # C7: [] (nothing listed)
    assert report["day"] == 2 and [iv["interval"] for iv in report["intervals"]] == [2 * PER_DAY + 40]
    assert report == LiveMarket(v.replica, v.call, {}, 0.25).report()


def test_one_named_trader_still_lists_from_the_state() -> None:
    market = three_days()
    v = market.view
    view = LiveMarket(v.replica, v.call, {market.buyer.public.hex(): "mg2"}, 0.25)
    assert [d["day"] for d in view.report()["days"]] == [0, 1, 2]
