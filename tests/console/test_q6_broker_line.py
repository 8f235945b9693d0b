"""The console's header tells the DSO server's connection to the feeder's broker (U2's P6: during a 15-s outage no
MGMC could trade, `/api/health` said so, and the console looked healthy). The live feed carries it
(`event: broker`, `console.broker_link`): when the feed opens and when the connection is lost or back. The page
toasts the loss once, says 'broker lost N s ago' in the header (#broker-state) while it lasts, and toasts when it
is back. Against the lab server with its health listener on a real Mosquitto, stopped and started again on its
port (the listener's back-off bound 1 s), first through the feed's HTTP stream, then in headless Chromium."""

from __future__ import annotations

import json
import re
import threading
import time
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
    """The lab server with its health listener on `broker`, as `serve` starts it (back-off bound 1 s)."""
    address = {"host": broker.host, "port": broker.port, "reconnect_max_s": 1.0}
    with ServedLab(users_file, name="q6-broker-lab", broker=address) as served:
        yield served


def listening(lab: ServedLab) -> bool:
    return bool(httpx.get(lab.url + "/api/health").json()["health_listener"]["connected"])


def broker_events(lab: ServedLab, seen: list[dict[str, Any]], stop: threading.Event) -> None:
    """Every `broker` event of one feed, in `seen`, until `stop` (the feed as the page opens it, logged in)."""
    with httpx.Client(base_url=lab.url, timeout=30) as client:
        assert (
            client.post("/console/api/login", json={"username": "vera", "password": PASSWORD}).status_code
            == 200
        )
        with client.stream("GET", "/console/api/events") as feed:
            event = None
            try:
                for line in feed.iter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: ") and event == "broker":
                        seen.append(json.loads(line.removeprefix("data: ")))
                    if stop.is_set():
                        return
            except httpx.HTTPError:  # the server's stop ends the stream mid-way: the test is over
                return


def test_the_feed_tells_the_broker_lost_and_back_once_each(lab: ServedLab, broker: MosquittoBroker) -> None:
    assert wait_until(lambda: listening(lab))
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    reader = threading.Thread(target=broker_events, args=(lab, seen, stop), daemon=True)
    reader.start()
    assert wait_until(lambda: len(seen) == 1)
    assert seen[0] == {"connected": True, "lost": [], "down_s": None}  # told as the feed opens
    broker.stop()
    assert wait_until(lambda: len(seen) == 2)
    assert seen[1]["connected"] is False and seen[1]["lost"] == ["health listener"]
    assert isinstance(seen[1]["down_s"], float)
    assert not httpx.get(lab.url + "/api/health").json()["health_listener"]["connected"]  # as health says
    time.sleep(1.0)  # the feed keeps running down: its count moves, it is not told again
    assert len(seen) == 2
    broker.restart()  # on the same port
    assert wait_until(lambda: len(seen) == 3)
    assert seen[2] == {"connected": True, "lost": [], "down_s": None}
    stop.set()
    lab.server.should_exit = True  # ends the stream; the fixture's exit waits for it
    reader.join(15)


def test_the_header_says_the_broker_lost_until_it_is_back(
    browser: Any, lab: ServedLab, broker: MosquittoBroker
) -> None:
    assert wait_until(lambda: listening(lab))
    page, errors = watched_page(browser)
    page.goto(lab.url + "/console#feeder")
    page.fill("#username", "olga")
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("svg.oneline")
    line = page.locator("#broker-state")
    assert line.is_hidden()  # connected: nothing to say
    broker.stop()
    expect(page.locator("#toast")).to_contain_text("the DSO server lost the feeder's broker", timeout=WAIT_MS)
    expect(line).to_be_visible(timeout=WAIT_MS)
    expect(line).to_have_text(re.compile(r"^broker lost \d+ s ago$"))
    assert line.get_attribute("data-lost") == "health listener"
    first = int(line.text_content().split()[2])
    expect(line).not_to_have_text(f"broker lost {first} s ago", timeout=WAIT_MS)  # the page counts on
    # another view's feed: still lost, not told again. The toast keeps its text once hidden, so its text cannot
    # tell a second toast from the first: every toast from here on is counted, and the line's data-lost, which
    # only an event's `show` writes (not the page's count), marks the new feed's event as heard
    page.evaluate(
        """() => {
            window.toasts = 0;
            new MutationObserver(() => { window.toasts += 1; })
                .observe(document.getElementById("toast"), { childList: true, characterData: true, subtree: true });
            document.getElementById("broker-state").dataset.lost = "before the new feed";
        }"""
    )
    page.click("a[data-tab=market]")
    expect(line).to_have_attribute("data-lost", "health listener", timeout=WAIT_MS)
    expect(line).to_be_visible()
    assert page.evaluate("window.toasts") == 0  # told once, by the feeder view's feed
    broker.restart()
    expect(page.locator("#toast")).to_have_text(
        re.compile(r"^the broker is back after \d+ s$"), timeout=WAIT_MS
    )
    expect(line).to_be_hidden()
    assert page.locator("#feed-state").is_hidden()  # the browser's own feed never broke
    assert not errors
    page.context.close()
