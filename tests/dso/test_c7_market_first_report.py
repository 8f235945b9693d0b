"""C7: the live Market view's first report reads the blocks its day needs, not every block from genesis.

The view (`console.live_market`) read every MGMC block from block 1 at its first report: a pilot's idle chain makes
a block every 2 s (~43,000 a day), so a year in that took minutes. Now the days are listed from the chain's state
(`console.market_chain.listed`) and the blocks are read from the head down only as far as the shown day's sellers'
opening offers; a day picked further back reads on down to it, once. The page is the same: the same days, the same
intervals, the same figures. A real market contract on a LocalChain stands in for the DSO's MGMC-chain replica
(test_d9_market_missed's `Market`); the blocks read are counted, not timed.
"""

from __future__ import annotations

from typing import Any

from peergrid_dso.console.live_market import LiveMarket
from peergrid_dso.interval_missed import DOWN

from .test_d9_market_missed import NOW_MS, Market

PER_DAY = 96  # 15-minute intervals
IDLE = 40  # empty blocks between two intervals' bargaining (a pilot's chain: ~450 at 2 s a block)


class Counted:
    """The market's store, counting the blocks read."""

    def __init__(self, market: Market) -> None:
        self.market, self.read = market, 0

    def head_height(self) -> int:
        return self.market.chain.height

    def block(self, height: int) -> Any:
        self.read += 1
        return self.market.chain.block(height)


def long_market(days: int, per_day: int = 3) -> tuple[Market, Counted]:
    """`days` market days, each with `per_day` intervals bargained (from 08:00), idle blocks between."""
    market = Market()
    for day in range(days):
        for k in range(per_day):
            market.bargain(day * PER_DAY + 32 + k)
            for _ in range(IDLE):
                market.chain.seal(NOW_MS)
    counted = Counted(market)
    market.view.replica.store = counted
    return market, counted


def fresh_view(market: Market) -> LiveMarket:
    v = market.view
    return LiveMarket(v.replica, v.call, v.anonyms, v.interval_hours)


def test_the_first_report_reads_only_the_blocks_of_the_day_it_shows() -> None:
    market, counted = long_market(days=6)
    height = market.chain.height
    per_interval = 3 + IDLE  # an offer, a bid and a trade, each sealed, then the idle blocks
    assert height == 6 * 3 * per_interval
    newest = market.view.report()
    assert newest["day"] == 5 and [iv["interval"] for iv in newest["intervals"]] == [512, 513, 514]
    # every day listed, as when every block was read (before: all 774 blocks read for this report)
    assert newest["days"] == [
        {"day": d, "first": d * PER_DAY + 32, "last": d * PER_DAY + 34, "intervals": 3, "missed": 0}
        for d in range(6)
    ]
    assert counted.read == 3 * per_interval  # the day's three intervals: down to 512's offer, no further
    first = counted.read
    day2 = market.view.report(2)
    assert [iv["interval"] for iv in day2["intervals"]] == [224, 225, 226]
    assert counted.read == first + 3 * 3 * per_interval  # days 4, 3 and 2, read once
    assert market.view.report(4)["days"] == newest["days"] and counted.read == first + 9 * per_interval
    market.bargain(515)  # a new head: only its blocks are read
    before = counted.read
    assert [iv["interval"] for iv in market.view.report()["intervals"]] == [512, 513, 514, 515]
    assert counted.read == before + 3


def test_the_page_is_the_same_as_when_every_block_was_read() -> None:
    market, _counted = long_market(days=3)
    first = market.view.report()  # blocks read down to day 2's offers only
    whole = fresh_view(market)
    whole.report(0)  # reads down to day 0: every block that holds a position
    again = whole.report()
    for doc in (first, again):
        for iv in doc["intervals"]:
            assert iv["rounds"] == 1 and iv["closed"] and len(iv["trades"]) == 1 and len(iv["prices"]) == 1
    assert again == first
    assert whole.report(1) == market.view.report(1)


def test_an_interval_listed_only_as_missed_or_with_no_offer_reads_no_block_for_it() -> None:
    market, counted = long_market(days=2)
    market.view.note_missed(2 * PER_DAY + 10, DOWN)  # day 2: missed, nothing on the chain
    view = market.view.report()
    assert view["day"] == 2 and [iv["interval"] for iv in view["intervals"]] == [202]
    assert view["intervals"][0]["missed"] == DOWN and counted.read == 0  # no seller to find: no block read
    assert [d["day"] for d in view["days"]] == [0, 1, 2]


def test_a_first_report_a_year_in_reads_one_days_blocks() -> None:
    """Intervals numbered as a year in (day 364); the days before it are not read at all."""
    market = Market()
    for t in (100, 364 * PER_DAY + 40):
        market.bargain(t)
        for _ in range(IDLE):
            market.chain.seal(NOW_MS)
    counted = Counted(market)
    market.view.replica.store = counted
    view = market.view.report()
    assert view["day"] == 364 and [d["day"] for d in view["days"]] == [1, 364]
    assert counted.read == 3 + IDLE
