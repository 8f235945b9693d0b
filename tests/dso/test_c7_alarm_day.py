"""C7: the console's alarms name the interval's market day and clock time, as the views say it.

An alarm 'interval 37: missed, ...' on a pilot 200 days in said not which day's interval 37 (nor which 37 it was,
the interval numbers running on from the market's epoch). Now the closed loop's alarms (`ConsoleState.on_interval`:
a failed interval, the power flow's violations, an unmet check, a plan's alarm, a run of missed intervals) read
'interval 19237 (day 200, 09:15–09:30): ...', the way the Market view and the Feeder view's line say it
(`market_days.named`); a console without the loop's interval length (the lab's) names the number alone, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console.lab_client import lab_client
from console.test_console_api import login
from fastapi.testclient import TestClient

from peergrid_dso.console.market_days import clock, named
from peergrid_dso.interval_missed import DOWN, missed_record

from .test_d9_market_missed import users_at

QUARTER = 0.25
DAY_200 = 200 * 96  # interval 0 of market day 200 (15-minute intervals)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    with lab_client(users_at(tmp_path)) as client:
        login(client, "vera")
        yield client, client.app.state.console  # type: ignore[attr-defined]


def alarms(client: TestClient) -> list[str]:
    found: list[str] = client.get("/console/api/feeder").json()["alarms"]
    return found


def test_an_interval_or_a_run_is_named_with_its_day_and_clock_time() -> None:
    assert named(37, None, QUARTER) == "interval 37 (day 0, 09:15–09:30)"
    assert named(DAY_200 + 37, None, QUARTER) == "interval 19237 (day 200, 09:15–09:30)"
    assert named(13, 14, QUARTER) == "intervals 13-14 (day 0, 03:15–03:45)"
    assert named(95, 95, QUARTER) == "interval 95 (day 0, 23:45–24:00)"  # as the page's clock ends a day
    assert named(95, 97, QUARTER) == "intervals 95-97 (day 0, 23:45 – day 1, 00:30)"  # over the day's end
    assert named(36, None, 1.0) == "interval 36 (day 1, 12:00–13:00)"  # U7's 60-minute intervals
    assert named(37) == "interval 37" and named(13, 14) == "intervals 13-14"  # no length known: as before
    assert (clock(9.25), clock(0.0), clock(24.0), clock(1 / 6)) == ("09:15", "00:00", "24:00", "00:10")


def test_the_closed_loops_alarms_say_the_day_and_time(console: tuple[TestClient, Any]) -> None:
    client, state = console
    state.interval_hours = QUARTER  # as build_console sets it from the loop's interval_minutes
    t = DAY_200 + 37
    state.on_interval({
        "interval": t, "secure": False, "height": 77,
        "after": {"violations": ["bus 18: voltage 0.8900 pu"]},
        "plan": {"alarm": "branch 7: timeout; rolled back"}, "unmet": "no adjustment meets vmin",
    })  # fmt: skip
    state.on_interval({"interval": t + 1, "error": "failed; see the DSO node log"})
    said = alarms(client)
    when = "day 200, 09:15–09:30"
    assert (
        f"interval 19237 ({when}): bus 18: voltage 0.8900 pu" in said
    )  # before: 'interval 19237: bus 18 ...'
    assert f"interval 19237 ({when}): branch 7: timeout; rolled back" in said
    assert f"interval 19237 ({when}): no adjustment meets vmin" in said
    assert "interval 19238 (day 200, 09:30–09:45): the DSO failed (failed; see the DSO node log)" in said


def test_a_run_of_missed_intervals_over_the_markets_midnight_says_both_days(
    console: tuple[TestClient, Any],
) -> None:
    client, state = console
    state.interval_hours = QUARTER
    for t in (DAY_200 + 95, DAY_200 + 96):
        state.on_interval(missed_record(t, ended=1_000.0, now=1_200.0))
    missed = [a for a in alarms(client) if "missed" in a]
    assert missed == [
        f"intervals 19295-19296 (day 200, 23:45 – day 201, 00:15): missed, {DOWN}: not checked, no contract,"
        " no switching"
    ]  # one alarm for the run, grown in place, as before


def test_without_the_loops_interval_length_the_alarm_names_the_number(
    console: tuple[TestClient, Any],
) -> None:
    client, state = console
    state.on_interval(missed_record(13, ended=1_000.0, now=1_200.0))
    assert f"interval 13: missed, {DOWN}: not checked, no contract, no switching" in alarms(client)
