"""Shared values for the console tests (imported as console.helpers)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher

PASSWORD = "correct horse battery staple"
USERS = {"olga": "operator", "vera": "viewer", "adam": "admin"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fast_hasher() -> PasswordHasher:
    """argon2id with test-sized costs: the hashes are real, the tests stay quick."""
    return PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def browser_tests(
    *, needs_mosquitto: bool = False, group: str = "console-browser"
) -> tuple[Any, list[pytest.MarkDecorator]]:
    """A browser-test module's preamble, called at its top: `expect, pytestmark = browser_tests()`. Skips the whole
    module where playwright is not installed (pytest.importorskip: requirements-dev.txt brings it, and it never
    downloads a browser), and returns its `expect` with the module's marks: each test skipped where Debian's
    chromium (`CHROMIUM`, scripts/system-packages.txt) is missing, or mosquitto where the module needs it, and
    all in the xdist group `group` (one worker: one Chromium a module, the `browser` fixture's): 'console-browser',
    or 'system' for a module that runs a lab, so that no two labs run at once (tests/conftest.py)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    marks = [pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed")]
    if needs_mosquitto:
        marks.append(
            pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")
        )
    marks.append(pytest.mark.xdist_group(group))
    return playwright_api.expect, marks


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium (the system's, no download) through Playwright, closed after the block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ServedLab:
    """The lab DSO server with its console (no market, no drift, the feeds every 0.2 s), served by uvicorn on a
    thread at loopback `port` (0: any free one) until the block ends: its `app`, `port` and `url` once entered.
    Entered again on the same port with the same `users_file` it is a restart with the same console store. With
    `broker` (the config's broker section) its health listener listens there, as `serve` starts it."""

    def __init__(
        self,
        users_file: Any,
        port: int = 0,
        name: str = "lab-server",
        graceful_s: int = 2,
        broker: dict[str, Any] | None = None,
    ) -> None:
        import threading

        import uvicorn

        from peergrid_dso.app import create_app
        from peergrid_dso.config import DsoSettings

        console = {"users_file": str(users_file), "lab_market": False, "lab_drift": False, "refresh_s": 0.2}
        settings: dict[str, Any] = {"console": console}
        if broker is not None:
            settings["broker"] = broker
        self.app = create_app(DsoSettings.model_validate(settings), listen=broker is not None)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=graceful_s
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    def __enter__(self) -> Any:
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            assert self.thread.is_alive(), "the lab server stopped while starting"
            time.sleep(0.05)
        assert self.server.started, "the lab server did not start in 30 s"
        self.port: int = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "the lab server did not stop in 15 s"


# every feed (EventSource) the page opens, in `window.sources`, each with the event types listened for on it
RECORD_FEEDS = """(() => {
  const Native = window.EventSource;
  window.sources = [];
  window.EventSource = class extends Native {
    constructor(...args) { super(...args); this.types = []; window.sources.push(this); }
    addEventListener(type, fn, options) { this.types.push(type); super.addEventListener(type, fn, options); }
  };
})()"""


def paused_login(page: Any, url: str, user: str) -> None:
    """Open the console at `url` with the page's timers on a paused clock (they run only when the test moves it:
    no poll of the page's decides what a test sees) and log `user` in."""
    page.clock.install()
    page.goto(url + "/console")
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 1)  # Python: seconds
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("#tabs:not([hidden])")


def watched_page(browser: Any, *scripts: str) -> tuple[Any, list[str]]:
    """A new page of its own context that collects its uncaught errors (the list returned; a test asserts it
    empty) and runs `scripts` (e.g. RECORD_FEEDS) before each document's own."""
    page = browser.new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    for script in scripts:
        page.add_init_script(script)
    return page, errors


def market_view(browser: Any, url: str, body: str) -> tuple[Any, list[str]]:
    """vera's page on the market view (a `watched_page`: the page and its errors), the console's market API
    answering `body`, the report a test scripted, instead of the server's."""
    page, errors = watched_page(browser)
    page.route("**/console/api/market", lambda route: route.fulfill(status=200, body=body))
    paused_login(page, url, "vera")
    page.evaluate("location.hash = '#market'")
    return page, errors
