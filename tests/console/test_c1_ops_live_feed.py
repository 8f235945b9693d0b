"""C1 (session 19): the Operations view follows the live feed, in headless Chromium against a live lab server.

Before, ops.js re-rendered every 3 s from `/console/api/operations` and did not listen to the feed
(`/console/api/events`): the relay watch's card came up to 3 s after the feeder view's alarm, and each poll
re-rendered the view, also under an operator's action in flight (its button enabled again, its progress note
gone). Now a feeder event that changes what the view shows reloads it, and so does an operations event (a
plan, an enrolment or an audit entry changed: the feeder snapshot does not carry those), a 15-s poll covers a
dropped feed, and an action in flight holds every re-render until its end. The page's timers run on
Playwright's clock, paused: whatever the view does between the test's own steps of that clock, the feed made
it do.

The server is the lab one (in-memory relays, no market, no drift) on a loopback port; the relay watch stands
in for the node's as in test_h6_relay_watch_console: relays put another way by hand, then read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from console.helpers import ServedLab, browser_tests
from console.test_browser import logged_in
from console.test_h6_relay_watch_console import read, watching
from peergrid_dso.services.enrolment import enrolment_digest
from peergrid_ledger.keys import Keypair

expect, pytestmark = browser_tests()

WAIT_MS = (
    20_000  # how long an expectation may wait for the feed; a bound against hanging, not a figure tested
)
# every EventSource the page opens (so the test sees the view close its own) and the feeder events each heard
SOURCES = """(() => {
  const Native = window.EventSource;
  window.sources = [];
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      window.sources.push(this);
      this.feeder = 0;
      this.addEventListener("feeder", () => { this.feeder += 1; });  // runs before the view's own listener
    }
  };
})()"""


class LabServer(ServedLab):
    """The lab DSO server with its console (console.helpers.ServedLab) and its relay watch."""

    def __enter__(self) -> LabServer:
        super().__enter__()
        self.relays, self.watch, self.dso = watching(SimpleNamespace(app=self.app))  # type: ignore[arg-type]
        return self

    def tie_closed_by_hand(self) -> None:
        """Tie 33 closed and branch 7 opened in the field (radial: adoptable), and the watch's read of it."""
        self.relays.inner.closed[33], self.relays.inner.closed[7] = True, False
        # on a thread of its own: the watch's read runs an event loop, and Playwright holds this thread's
        reader = threading.Thread(target=read, args=(self.watch, self.dso))
        reader.start()
        reader.join(30)
        assert self.watch.alarm is not None


@pytest.fixture
def lab(users_file: Path) -> Iterator[LabServer]:
    with LabServer(users_file) as server:
        yield server


def operations(browser: Any, lab: LabServer, user: str = "olga") -> Any:
    """A logged-in page on the Operations tab with its timers on a paused clock (the poll fires only when the
    test runs that clock)."""
    page = logged_in(browser, lab, user)
    page.add_init_script(SOURCES)
    page.clock.install()
    page.reload()  # the clock and the EventSource count from the page's start; the session cookie stays
    page.wait_for_selector("#tabs:not([hidden])")
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 1)  # Python: seconds
    page.evaluate("location.hash = '#operations'")
    page.wait_for_selector("#relay-positions")
    return page


def test_the_relay_watch_card_comes_with_the_feed_and_the_view_closes_its_feed_when_left(
    browser: Any, lab: LabServer
) -> None:
    page = operations(browser, lab)
    assert page.locator("#relay-watch").count() == 0
    lab.tie_closed_by_hand()
    card = page.locator("#relay-watch")
    expect(card).to_be_visible(timeout=WAIT_MS)  # before: only the 3-s poll brought it, and its clock stands
    expect(card.locator('tr[data-branch="33"]')).to_contain_text("closed")
    expect(page.locator("#adopt-watch")).to_have_text("Adopt what the relays report: open 7, 34, 35, 36, 37")
    page.click("#adopt-watch")
    expect(card).to_have_count(0, timeout=WAIT_MS)
    assert sorted(lab.dso.open_set) == [7, 34, 35, 36, 37]
    mine = page.evaluate("window.sources.length - 1")  # the feeder view's came and went before
    assert page.evaluate(f"[window.sources[{mine}].url, window.sources[{mine}].readyState]") == [
        lab.url + "/console/api/events",
        1,  # open
    ]
    page.evaluate("location.hash = '#feeder'")
    page.wait_for_function("(n) => window.sources.length > n", arg=mine + 1)  # the feeder view's own again
    assert page.evaluate(f"window.sources[{mine}].readyState") == 2  # closed
    assert not page.errors
    page.context.close()


def proposal_held(page: Any) -> list[Any]:
    """Clicks "Compute a plan" with its request held by the test (the list gets the route once sent)."""
    held: list[Any] = []
    page.route("**/console/api/plans", lambda route: held.append(route))
    page.click("#propose-plan")
    page.wait_for_function("() => document.querySelector('#planning').textContent.includes('solving')")
    assert held
    return held


def test_nothing_re_renders_the_view_while_an_operators_action_is_in_flight(
    browser: Any, lab: LabServer
) -> None:
    page = operations(browser, lab)
    held = proposal_held(page)  # the proposal waits for the test
    assert page.is_disabled("#propose-plan")
    page.evaluate("document.querySelector('#propose-plan').dataset.before = 'the action'")
    loads: list[str] = []
    page.on("request", lambda r: loads.append(r.url) if r.url.endswith("/console/api/operations") else None)
    # a listener of the test's own as well: the feed is heard on the page however the view listens
    page.evaluate("() => { window.probe = new EventSource('/console/api/events'); }")
    page.wait_for_function("() => window.probe.feeder > 0")
    heard = page.evaluate("window.sources.map((s) => s.feeder)")
    lab.tie_closed_by_hand()  # the feed says so while the proposal is in flight: every open source hears it
    page.wait_for_function(
        "(n) => window.sources.every((s, i) => s.readyState === 2 || s.feeder > n[i])", arg=heard
    )
    page.clock.run_for(16_000)  # and the fallback poll comes due (before: the 3-s poll, five times)
    # a round trip from the page after them: a load they started was requested before it
    assert page.evaluate("async () => (await fetch('/console/api/session')).ok")
    assert loads == [], "the view reloaded while the operator's action was in flight"
    assert page.get_attribute("#propose-plan", "data-before") == "the action", "the view re-rendered"
    assert page.is_disabled("#propose-plan") and "solving" in page.text_content("#planning")
    assert page.locator("#relay-watch").count() == 0
    held[0].continue_()
    expect(page.locator("#toast")).to_contain_text("compute plan: done", timeout=WAIT_MS)
    expect(page.locator("#relay-watch")).to_be_visible(timeout=WAIT_MS)  # the action's end rendered it all
    expect(page.locator("#plans tbody tr")).to_have_count(1)
    assert page.is_enabled("#propose-plan") and page.get_attribute("#propose-plan", "data-before") is None
    assert not page.errors
    page.context.close()


def test_an_action_never_answered_holds_the_view_for_two_minutes_at_most(
    browser: Any, lab: LabServer
) -> None:
    # review33 R33-3: an action's request has no timeout of its own; one that never answers (stuck behind the
    # operations lock) held every render for good, the relay watch's card never shown again
    page = operations(browser, lab)
    proposal_held(page)  # never answered
    lab.tie_closed_by_hand()
    page.clock.run_for(60_000)
    assert page.evaluate("async () => (await fetch('/console/api/session')).ok")  # a round trip after it
    assert page.locator("#relay-watch").count() == 0  # still held a minute in
    page.clock.run_for(61_000)
    expect(page.locator("#toast")).to_contain_text("no answer yet", timeout=WAIT_MS)
    expect(page.locator("#relay-watch")).to_be_visible(timeout=WAIT_MS)  # the view follows the feed again
    assert not page.errors
    page.context.close()


def test_the_slow_poll_stands_in_for_a_dropped_feed(browser: Any, lab: LabServer) -> None:
    page = operations(browser, lab, "vera")  # a viewer sees the card too
    page.route("**/console/api/events", lambda route: route.abort())
    page.evaluate("window.sources.forEach((s) => s.close())")  # the feed is gone and does not come back
    lab.tie_closed_by_hand()
    page.clock.run_for(15_000)
    expect(page.locator("#relay-watch")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#relay-watch")).to_contain_text("Relay watch: the DSO holds open 33, 34, 35, 36, 37")
    assert page.is_disabled("#adopt-watch")  # operators only
    page.context.close()


def test_an_enrolment_request_comes_with_the_feed(browser: Any, lab: LabServer) -> None:
    page = operations(browser, lab, "vera")
    expect(page.locator("#enrolment tbody tr")).to_have_count(0)
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    token = lab.dso.enrolment.issue_token()
    signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg7"))
    body = {"token": token, "mgmc": mgmc.public.hex(), "anonym": anonym.public.hex(), "label": "mg7",
            "signature": signature.hex()}  # fmt: skip
    assert httpx.post(lab.url + "/api/dso/enrolment", json=body).status_code == 201  # as an MGMC asks
    row = page.locator(f'#enrolment tr[data-mgmc="{mgmc.public.hex()}"]')
    expect(row).to_be_visible(timeout=WAIT_MS)  # before: only the poll brought it, and its clock stands
    expect(row).to_contain_text("mg7")
    assert not page.errors
    page.context.close()
