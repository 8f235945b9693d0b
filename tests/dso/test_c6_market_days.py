"""C6: the console's Market view across market days (`console.market_days`).

Drill U7 (finding 10) ran a pilot three days: the Market view's `hours` ran on past 24 ([36.0, 37.0] for interval
36 of day 1 at 60-minute intervals) and no day was said; and the view fetched and listed every interval on the
chain, ~3,000 a month into a pilot of 15-minute intervals. Now each interval says its `day` and `hours_of_day`
(its `hours` kept for older clients), the report is one day's (`?day=k`, else the day the view follows) with
`days` to pick another from, and the Feeder view's closed-loop summary says the day too. A real market contract on
a LocalChain stands in for the DSO's MGMC-chain replica (test_d9_market_missed's `Market`), shown by the lab
server's console as the live node's console shows it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console.lab_client import lab_client
from console.test_console_api import login
from fastapi.testclient import TestClient

from peergrid_dso.console.live_market import LiveMarket
from peergrid_dso.console.market_days import day_of, days, hours_of_day, not_listed, of_day
from peergrid_dso.interval_missed import DOWN, missed_record

from .test_d9_market_missed import Market, users_at

QUARTER = 0.25  # hours: 15-minute intervals, 96 a day


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[TestClient, Any, Market]]:
    """The lab server's console showing a live market of 15-minute intervals: (client, console state, market)."""
    market = Market()
    with lab_client(users_at(tmp_path)) as client:
        state = client.app.state.console  # type: ignore[attr-defined]
        state.live_market = market.view
        login(client, "vera")
        yield client, state, market


def market_of(client: TestClient, day: int | None = None) -> dict[str, Any]:
    view = client.get("/console/api/market" + ("" if day is None else f"?day={day}"))
    assert view.status_code == 200, view.text
    doc: dict[str, Any] = view.json()
    assert doc["status"] == "ready", doc
    return doc


def test_the_day_and_its_hours_of_an_interval() -> None:
    assert (day_of(132, QUARTER), hours_of_day(132, QUARTER)) == (1, [9.0, 9.25])
    assert (day_of(36, 1.0), hours_of_day(36, 1.0)) == (1, [12.0, 13.0])  # U7's pilot: 24 intervals a day
    assert (day_of(95, QUARTER), hours_of_day(95, QUARTER)) == (0, [23.75, 24.0])  # a day's last ends at 24
    assert (day_of(144, 1 / 6), hours_of_day(144, 1 / 6)) == (1, [0.0, 0.1667])  # 10 minutes: a whole minute
    assert day_of(206, 7 / 60) == 1  # a length that does not divide a day: the day the interval starts in
    listed = days([1, 2, 96, 200, 97], QUARTER, missed={97})
    assert listed == [
        {"day": 0, "first": 1, "last": 2, "intervals": 2, "missed": 0},
        {"day": 1, "first": 96, "last": 97, "intervals": 2, "missed": 1},
        {"day": 2, "first": 200, "last": 200, "intervals": 1, "missed": 0},
    ]
    assert of_day([1, 2, 96, 97, 200], 1, QUARTER) == [96, 97] and of_day([1, 2], 3, QUARTER) == []
    assert not_listed(5, listed) == "no interval of market day 5 is listed (days 0-2 are (3 with any))"
    assert not_listed(0, []) == "no interval of market day 0 is listed (none is yet)"


def test_each_interval_says_its_day_and_the_view_is_one_day(live: tuple[TestClient, Any, Market]) -> None:
    client, _state, market = live
    market.bargain(40)  # day 0, 10:00
    market.bargain(132)  # day 1, 09:00
    view = market_of(client)  # the day the view follows: the newest interval's
    assert (view["day"], [iv["interval"] for iv in view["intervals"]]) == (1, [132])
    (shown,) = view["intervals"]
    assert shown["hours"] == [33.0, 33.25]  # kept as it was, for older clients
    assert (shown["day"], shown["hours_of_day"]) == (1, [9.0, 9.25])
    assert view["days"] == [
        {"day": 0, "first": 40, "last": 40, "intervals": 1, "missed": 0},
        {"day": 1, "first": 132, "last": 132, "intervals": 1, "missed": 0},
    ]
    earlier = market_of(client, 0)
    assert earlier["day"] == 0 and [iv["interval"] for iv in earlier["intervals"]] == [40]
    assert (
        earlier["intervals"][0]["hours_of_day"] == [10.0, 10.25]
        and len(earlier["intervals"][0]["trades"]) == 1
    )
    assert earlier["days"] == view["days"]


def test_u7s_interval_36_of_60_minutes_is_day_1_from_12_to_13(live: tuple[TestClient, Any, Market]) -> None:
    client, _state, market = live
    market.view.interval_hours = 1.0  # U7's pilot: 24 intervals a day (the loop's interval_minutes 60)
    market.bargain(36)
    (shown,) = market_of(client)["intervals"]
    assert (shown["hours"], shown["day"], shown["hours_of_day"]) == ([36.0, 37.0], 1, [12.0, 13.0])


def test_a_day_not_listed_is_refused_with_the_days_that_are(live: tuple[TestClient, Any, Market]) -> None:
    client, _state, market = live
    nothing = client.get("/console/api/market?day=0")
    assert nothing.status_code == 404
    assert nothing.json()["detail"] == "no interval of market day 0 is listed (none is yet)"
    market.bargain(40)
    market.bargain(132)
    refused = client.get("/console/api/market?day=7")
    assert refused.status_code == 404
    assert refused.json()["detail"] == "no interval of market day 7 is listed (days 0-1 are (2 with any))"
    for bad in ("-1", "one", "1.5"):
        assert client.get(f"/console/api/market?day={bad}").status_code == 422, bad


def test_a_month_of_intervals_is_never_reported_at_once(live: tuple[TestClient, Any, Market]) -> None:
    """3,000 intervals (a month and more of 15-minute ones; here missed, which lists them without a chain): the
    report holds one day's, and the chain's state is asked of that day's alone."""
    client, _state, market = live
    view: LiveMarket = market.view
    asked: list[list[int]] = []
    trades = view._trades
    view._trades = lambda intervals: asked.append(list(intervals)) or trades(intervals)  # type: ignore[method-assign]
    market.bargain(300)  # day 3, 03:00
    for t in range(3_000):
        if t != 300:
            view.note_missed(t, DOWN)
    newest = market_of(client)
    assert newest["day"] == 31 and [iv["interval"] for iv in newest["intervals"]] == list(range(2_976, 3_000))
    assert len(newest["days"]) == 32 and sum(d["intervals"] for d in newest["days"]) == 3_000
    assert newest["days"][3] == {"day": 3, "first": 288, "last": 383, "intervals": 96, "missed": 95}
    day3 = market_of(client, 3)
    assert [iv["interval"] for iv in day3["intervals"]] == list(range(288, 384))
    assert len(json.dumps(day3)) < len(json.dumps(newest)) * 5  # one day's, not 32
    assert asked == [list(range(2_976, 3_000)), list(range(288, 384))]  # never every interval
    assert market_of(client, 3) == day3 and len(asked) == 2  # the same head and day: the report kept


def test_the_followed_day_passes_over_a_day_cleared_ahead_and_not_delivered(tmp_path: Path) -> None:
    """A day-ahead clear closes the next day's intervals at once: the view follows the day being delivered, not
    the one cleared ahead (the page's `newest`, U3), and moves to it once an MG's record of it comes."""
    market = Market()
    market.view = LiveMarket(
        market.view.replica, market.view.call, market.view.anonyms, QUARTER, mgmc_records=tmp_path
    )
    market.bargain(90)  # day 0, 22:30
    market.view._forward.update({96: "day-1", 97: "day-1"})  # as the exchange's clear closes them (U3's test)
    market.view._closed.update({96, 97})
    assert market.view.report()["day"] == 0
    record = {"interval": 96, "cost_p2p": 1.0, "cost_conventional": 1.2, "p2p_money": 0.1}
    (tmp_path / "mgmc-mg1.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    market.bargain(91)  # a new head: the records are read again
    assert market.view.report()["day"] == 1


def test_the_feeder_views_interval_says_its_day_where_the_loop_gives_its_length(
    live: tuple[TestClient, Any, Market],
) -> None:
    client, state, _market = live
    state.on_interval({"interval": 131, "secure": True, "height": 40, "injections_kw": {"mg1": 80.0}})
    assert "day" not in client.get("/console/api/feeder").json()["interval"]  # the lab's: no loop, no length
    state.interval_hours = QUARTER  # as build_console sets it from the loop's interval_minutes
    state.on_interval({"interval": 132, "secure": True, "height": 41, "injections_kw": {"mg1": 80.0}})
    shown = client.get("/console/api/feeder").json()["interval"]
    assert (shown["interval"], shown["day"], shown["hours_of_day"]) == (132, 1, [9.0, 9.25])
    state.on_interval(missed_record(133, ended=1_000.0, now=1_200.0))
    assert client.get("/console/api/feeder").json()["interval"]["hours_of_day"] == [9.25, 9.5]


def test_the_console_takes_the_interval_length_from_the_loop(tmp_path: Path) -> None:
    from .test_d10_console_missed_restart import restarted

    market = Market()
    market.bargain(132)
    state, loop = restarted(tmp_path, market, tmp_path / "dso.jsonl")  # the loop's interval_minutes: 15
    assert state.interval_hours == QUARTER
    loop.hear({"interval": 132, "secure": True, "height": 40, "injections_kw": {"mg1": 80.0}})
    assert state.grid.snapshot()["interval"]["hours_of_day"] == [9.0, 9.25]
    assert state.market_view(1)["intervals"][0]["hours_of_day"] == [9.0, 9.25]
