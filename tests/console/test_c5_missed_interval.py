"""The console shows an interval the DSO node missed as missed, with why (C5): D8's record of an interval that
ended while the node was down (`interval_missed.missed_record`: `missed`, no analysis, no contract, no switching)
reached the feeder view as `secure: None` with no word of the miss, and the page's closed-loop line read
"INSECURE" for an interval nobody checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console.lab_client import lab_client
from console.test_console_api import login
from peergrid_dso.interval_missed import DOWN, missed_record


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    with lab_client(users_file) as c:
        yield c


def test_a_missed_interval_is_missed_with_why_not_unchecked_secure(client: TestClient) -> None:
    state = client.app.state.console  # type: ignore[attr-defined]
    state.on_interval({"interval": 12, "secure": True, "height": 40, "injections_kw": {"mg1": 80.0}})
    state.on_interval(missed_record(13, ended=1_000.0, now=1_200.0))
    login(client, "vera")
    feeder = client.get("/console/api/feeder").json()
    line = feeder["interval"]
    assert (line["interval"], line["missed"], line["secure"]) == (13, DOWN, None)
    assert (line["switch_ops"], line["adjustments"], line["drawn"]) == (0, 0, 12)  # 12's outcome stays drawn
    assert f"interval 13: missed, {DOWN}: not checked, no contract, no switching" in feeder["alarms"]


def test_an_interval_acted_on_is_not_missed(client: TestClient) -> None:
    state = client.app.state.console  # type: ignore[attr-defined]
    state.on_interval({"interval": 14, "secure": False, "height": 41, "injections_kw": {"mg1": 80.0}})
    login(client, "vera")
    feeder = client.get("/console/api/feeder").json()
    assert (feeder["interval"]["missed"], feeder["interval"]["secure"]) == (None, False)
    assert not any("missed" in a for a in feeder["alarms"])


def test_a_run_of_missed_intervals_is_one_alarm(client: TestClient) -> None:
    """An outage's run is one alarm, grown as each is recorded: one each would push the others out of the last 20."""
    state = client.app.state.console  # type: ignore[attr-defined]
    for t in (13, 14, 15):
        state.on_interval(missed_record(t, ended=1_000.0 + t, now=1_200.0))
    state.on_interval({"interval": 16, "secure": True, "height": 42, "injections_kw": {"mg1": 80.0}})
    state.on_interval(missed_record(18, ended=1_500.0, now=1_600.0))  # a later outage: an alarm of its own
    login(client, "vera")
    missed = [a for a in client.get("/console/api/feeder").json()["alarms"] if "missed" in a]
    assert missed == [
        f"intervals 13-15: missed, {DOWN}: not checked, no contract, no switching",
        f"interval 18: missed, {DOWN}: not checked, no contract, no switching",
    ]
