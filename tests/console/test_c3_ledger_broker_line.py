"""The Ledger view shows the header's broker line too (C3): the line comes by the live feed (`event: broker`,
c257aef/b5df25a), and the Ledger view, which had none, hid it, so an operator reading the chains during an
outage saw a healthy header. The view now opens the feed as every other view does. Against the lab server with
its health listener on a real Mosquitto at the default back-off (the ledger transport's, 2 s: C3), stopped and
started again on its port, in headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers_wait import wait_until

from console.helpers import PASSWORD, ServedLab, browser_tests, watched_page
from peergrid_sim.broker import MosquittoBroker

expect, pytestmark = browser_tests(needs_mosquitto=True)

WAIT_MS = 20_000  # a bound against hanging, not a figure tested


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def lab(users_file: Path, broker: MosquittoBroker) -> Iterator[ServedLab]:
    """The lab server with its health listener on `broker`, its back-off unset."""
    address = {"host": broker.host, "port": broker.port}
    with ServedLab(users_file, name="c3-broker-lab", broker=address) as served:
        yield served


def test_the_ledger_view_says_the_broker_lost_until_it_is_back(
    browser: Any, lab: ServedLab, broker: MosquittoBroker
) -> None:
    assert wait_until(lambda: httpx.get(lab.url + "/api/health").json()["health_listener"]["connected"])
    page, errors = watched_page(browser)
    page.goto(lab.url + "/console#ledger")
    page.fill("#username", "vera")
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("#replicas")
    line = page.locator("#broker-state")
    assert line.is_hidden()  # connected: nothing to say
    broker.stop()
    expect(page.locator("#toast")).to_contain_text("the DSO server lost the feeder's broker", timeout=WAIT_MS)
    expect(line).to_be_visible(timeout=WAIT_MS)
    expect(line).to_have_text(re.compile(r"^broker lost \d+ s ago$"))
    assert line.get_attribute("data-lost") == "health listener"
    page.click("a[data-tab=feeder]")  # another view and back: the line stays, told by each view's feed
    page.click("a[data-tab=ledger]")
    page.wait_for_selector("#replicas")
    expect(line).to_be_visible(timeout=WAIT_MS)
    broker.restart()  # on the same port
    expect(page.locator("#toast")).to_have_text(
        re.compile(r"^the broker is back after \d+ s$"), timeout=WAIT_MS
    )
    expect(line).to_be_hidden()
    assert page.locator("#feed-state").is_hidden()  # the browser's own feed never broke
    assert not errors
    page.context.close()
