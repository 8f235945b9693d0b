"""A live feed that broke with the session alive is opened again (review34 R34-5, session 20).

The browser closes an EventSource on any answer but 200 and raises only `error`; the console then asks the
session route once. A 401 there logs out (test_c2_feed_session_restart.py). Any other answer (a 5xx from the
events route or a proxy in front of it, the session alive) means the feed broke, not the session: before, the
view showed a note and stayed on its last picture (the feeder and market views have no poll of their own); now
the feed is opened again after 2 s (`FEED_RETRY_MS`), the view's listeners carried over to the new one. In
headless Chromium against the lab server, the events route's first answer a 503 from `page.route`, the page's
timers on a paused clock (the retry runs only when the test moves it).

A route that keeps failing is told once (a toast when it breaks, one when it is back), and in between the
header's `#feed-state` line says it is broken (Q1, session 21: before, the toast came at every retry, once a
minute at the 60-s ceiling, for as long as it failed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.helpers import (
    PASSWORD,
    RECORD_FEEDS,
    ServedLab,
    browser_tests,
    paused_login,
    watched_page,
)

expect, pytestmark = browser_tests()

WAIT_MS = 30_000  # a bound against hanging, not a figure tested


def fails_then_serves(failures: int, asked: list[str]) -> Any:
    """The events route as a proxy in front of it answers: 503 the first `failures` times, then the server's
    own stream; each request's URL appended to `asked`."""

    def events(route: Any) -> None:
        asked.append(route.request.url)
        if len(asked) <= failures:
            route.fulfill(status=503, body="busy")
        else:
            route.continue_()

    return events


# every text the toast shows, in `window.toasts` (one element, whose text each toast replaces), and each state the
# header's live-feed line takes, in `window.feedStates` (one per change: its text, count and visibility together)
RECORD_NOTICES = """document.addEventListener("DOMContentLoaded", () => {
  window.toasts = [];
  window.feedStates = [];
  new MutationObserver((changes) => {
    for (const c of changes) for (const n of c.addedNodes) window.toasts.push(n.textContent);
  }).observe(document.getElementById("toast"), { childList: true });
  const line = document.getElementById("feed-state");
  if (!line) return;
  new MutationObserver(() => window.feedStates.push(
    { shown: !line.hidden, text: line.textContent, failures: line.dataset.failures }
  )).observe(line, { childList: true, attributes: true });
})"""


def test_a_feed_a_5xx_closed_is_opened_again_with_the_views_listeners(browser: Any, users_file: Path) -> None:
    with ServedLab(users_file) as served:
        page, errors = watched_page(browser, RECORD_FEEDS)
        asked: list[str] = []
        page.route("**/console/api/events", fails_then_serves(1, asked))  # one proxy's 503, then the stream
        paused_login(page, served.url, "olga")
        page.wait_for_selector("svg.oneline")  # the feeder view
        page.wait_for_function("() => window.sources.length === 1 && window.sources[0].readyState === 2")
        expect(page.locator("#toast")).to_contain_text("the live feed broke", timeout=WAIT_MS)
        assert page.is_visible("#tabs")  # still logged in: the session lives
        page.clock.run_for(2_500)  # past FEED_RETRY_MS
        page.wait_for_function("() => window.sources.length === 2 && window.sources[1].readyState === 1")
        assert "feeder" in page.evaluate("window.sources[1].types")  # the view follows the new feed
        assert len(asked) == 2 and errors == []
        page.context.close()


def test_a_view_left_before_its_first_answer_opens_no_feed(browser: Any, users_file: Path) -> None:
    """The feeder view opened and left while its first fetch was on its way (a quick tab switch) opened its
    feed afterwards and kept it, one of the browser's six connections per origin each time (R34-5)."""
    with ServedLab(users_file) as served:
        page = browser.new_context().new_page()
        page.add_init_script(RECORD_FEEDS)
        page.goto(served.url + "/console")
        page.fill("#username", "olga")
        page.fill("#password", PASSWORD)
        page.click("#login-button")
        page.wait_for_selector("svg.oneline")
        page.evaluate("location.hash = '#operations'")
        page.wait_for_selector("#relay-positions")
        held: list[Any] = []
        page.route("**/console/api/feeder", lambda route: held.append(route))  # its first answer held back
        page.evaluate("location.hash = '#feeder'")
        page.wait_for_function("() => !document.getElementById('feeder').hidden")
        for _ in range(600):  # the view's fetch reaches the route (a bound against hanging: 30 s)
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the feeder view asked for no snapshot"
        page.evaluate("location.hash = '#operations'")  # left before the answer came
        page.wait_for_function("() => document.getElementById('feeder').hidden")
        with page.expect_response("**/console/api/feeder"):
            held[0].continue_()
        page.evaluate("new Promise((done) => setTimeout(done, 100))")  # the view's own code after the answer
        open_feeds = page.evaluate("window.sources.filter((s) => s.readyState !== 2).length")
        assert open_feeds == 1  # the operations view's only; before, the feeder's too
        page.context.close()


def test_a_route_failing_across_retries_is_told_once_and_its_recovery_too(
    browser: Any, users_file: Path
) -> None:
    """Four 503s in a row (retries after 2, 4, 8 and 16 s), then the server's stream: one toast that the feed broke,
    the header's line saying so at each retry (its count of failures moving), one toast that it is back and the
    line gone."""
    failures = 4
    with ServedLab(users_file) as served:
        page, errors = watched_page(browser, RECORD_FEEDS, RECORD_NOTICES)
        asked: list[str] = []
        page.route("**/console/api/events", fails_then_serves(failures, asked))
        paused_login(page, served.url, "olga")
        page.wait_for_selector("svg.oneline")  # the feeder view
        for opened in range(1, failures + 1):  # the clock moved until the retry's timer (set once the probe
            for _ in range(400):  # answered) fires and opens the next feed
                if page.evaluate("window.sources.length") > opened:
                    break
                page.clock.run_for(500)
            assert page.evaluate("window.sources.length") == opened + 1, f"no retry after failure {opened}"
        opened_again = f"() => window.sources[{failures}].readyState === 1"  # open: its event has fired
        page.wait_for_function(opened_again)
        told = [t for t in page.evaluate("window.toasts") if "feed" in t]
        assert told == ["the live feed broke; opening it again in 2 s", "the live feed is back"]  # HEAD: 4, 0
        states = page.evaluate("window.feedStates")
        shown = [(s["shown"], s["failures"]) for s in states]  # each failure moves the count; back: hidden
        assert shown == [(True, "1"), (True, "2"), (True, "3"), (True, "4"), (False, "4")]
        assert all(s["text"].startswith("live feed broken since ") for s in states)
        assert "feeder" in page.evaluate(f"window.sources[{failures}].types")
        assert len(asked) == failures + 1 and errors == []
        page.context.close()


def test_the_feed_notice_is_the_pages_and_one_sessions(browser: Any, users_file: Path) -> None:
    """R35: feeds that open fine toast nothing (a tab switch is no recovery); a feed broken on one view is not
    toasted again on the next (C3: the Ledger view has a feed too now: no view without one hides the line); a new
    login starts from a feed not known broken (no 'back' toast for the earlier session's break)."""
    with ServedLab(users_file) as served:
        page, errors = watched_page(browser, RECORD_FEEDS, RECORD_NOTICES)
        failing = [False]

        def events(route: Any) -> None:
            if failing[0]:
                route.fulfill(status=503, body="busy")
            else:
                route.continue_()

        def told() -> list[str]:
            return [t for t in page.evaluate("window.toasts") if "feed" in t]

        def opened(n: int) -> None:
            page.wait_for_function(
                f"() => window.sources.length === {n} && window.sources[{n - 1}].readyState === 1"
            )

        def closed(n: int) -> None:
            page.wait_for_function(
                f"() => window.sources.length === {n} && window.sources[{n - 1}].readyState === 2"
            )

        def line_shown() -> bool:
            return bool(page.evaluate("!document.getElementById('feed-state').hidden"))

        page.route("**/console/api/events", events)
        paused_login(page, served.url, "olga")
        opened(1)  # the feeder view's
        page.evaluate("location.hash = '#operations'")
        opened(2)
        assert told() == []  # two feeds opened fine: nothing broke, nothing is back
        failing[0] = True
        page.evaluate("location.hash = '#market'")
        closed(3)
        expect(page.locator("#feed-state")).to_be_visible(timeout=WAIT_MS)
        assert told() == ["the live feed broke; opening it again in 2 s"]
        page.evaluate("location.hash = '#ledger'")  # its feed (C3: for the header's lines) fails too
        closed(4)
        page.wait_for_function("() => document.getElementById('feed-state').dataset.failures === '2'")
        page.evaluate("location.hash = '#feeder'")  # still failing: not toasted again, the line back
        closed(5)
        expect(page.locator("#feed-state")).to_be_visible(timeout=WAIT_MS)
        assert told() == ["the live feed broke; opening it again in 2 s"]
        assert page.evaluate("document.getElementById('feed-state').dataset.failures") == "3"
        page.click("#logout")
        page.wait_for_selector("#login:not([hidden])")
        failing[0] = False
        page.fill("#username", "olga")
        page.fill("#password", PASSWORD)
        page.click("#login-button")
        page.wait_for_selector("#tabs:not([hidden])")
        opened(6)
        assert told() == [
            "the live feed broke; opening it again in 2 s"
        ]  # no 'back': another session's break
        assert not line_shown() and errors == []
        page.context.close()
