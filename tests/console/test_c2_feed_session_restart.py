"""C2 (session 20, review33 R33-4): a live feed whose session a server restart lost logs the console out.

While the session lives, the events stream ends with a `logout` event when it ends. A server restarted
without it (it expired while the server was down, or the data directory was restored) answers the feed's
reconnect 401, which an EventSource does not expose (the browser closes it and raises `error`), and the view sat on
its last picture, logged in, its fetches refused (the Operations view's fallback poll swallowed the 401s).
Now a closed feed asks the session route once, and a 401 to a logged-in console logs it out with the message
that the session ended. In headless Chromium against the lab server on a loopback port, restarted on the
same port by the test; the page's timers run on a paused clock, so no poll of the view's does it (the
EventSource's reconnect is the browser's own, not a page timer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from console.helpers import (
    PASSWORD,
    RECORD_FEEDS,
    ServedLab,
    browser_tests,
    paused_login,
    watched_page,
)
from peergrid_dso.auth.http import COOKIE
from peergrid_dso.auth.store import ConsoleDb, console_db_path, sid_hash

expect, pytestmark = browser_tests()

WAIT_MS = 30_000  # how long the login screen may take to come; a bound against hanging, not a figure tested


def forget_session(users_file: Path, cookies: list[dict[str, Any]]) -> None:
    """The page's session gone from the console's store (kept beside the user file) while the server is down:
    it expired meanwhile, or the data directory was restored; the restarted server does not know it."""
    (sid,) = [c["value"] for c in cookies if c["name"] == COOKIE]
    path = console_db_path(users_file)
    assert path is not None
    db = ConsoleDb.open(path)
    try:
        assert db.session(sid_hash(sid)) is not None
        db.end_session(sid_hash(sid))
    finally:
        db.close()


@pytest.mark.parametrize(("tab", "shown"), [("feeder", "svg.oneline"), ("operations", "#relay-positions")])
def test_a_view_whose_session_a_server_restart_lost_ends_on_the_login_screen(
    browser: Any, users_file: Path, tab: str, shown: str
) -> None:
    with ServedLab(users_file) as first:  # the page outlives it
        page, errors = watched_page(browser, RECORD_FEEDS)  # every feed the page opens, the view's last
        paused_login(page, first.url, "olga")
        page.evaluate(f"location.hash = '#{tab}'")
        page.wait_for_selector(shown)
        page.wait_for_function("() => window.sources.at(-1)?.readyState === 1")  # the view's feed is open
    forget_session(users_file, page.context.cookies())
    with ServedLab(users_file, first.port):  # the same port: the page's feed reconnects to it
        expect(page.locator("#login")).to_be_visible(timeout=WAIT_MS)  # before: the view, logged in
        expect(page.locator("#login-error")).to_have_text("your session ended; log in again")
        assert page.is_hidden("#tabs")
        assert page.is_hidden(f"#{tab}")
        assert errors == []
        page.context.close()


def test_a_session_ended_while_the_server_runs_ends_on_the_login_screen(
    browser: Any, users_file: Path
) -> None:
    """The stream's own `logout` event (now handled where the feed is opened, for every view's feed)."""
    with ServedLab(users_file) as served:
        page = browser.new_context().new_page()
        page.goto(served.url + "/console")
        page.fill("#username", "vera")
        page.fill("#password", PASSWORD)
        page.click("#login-button")
        page.wait_for_selector("svg.oneline")
        (sid,) = [c["value"] for c in page.context.cookies() if c["name"] == COOKIE]
        served.app.state.console.sessions.end(sid)
        expect(page.locator("#login")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#login-error")).to_have_text("your session ended; log in again")
        page.context.close()
