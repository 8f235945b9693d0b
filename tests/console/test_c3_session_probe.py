"""A logged-out console page loads without a console error (C3): it asked `GET /console/api/session` as it loaded,
whose 401 before login is that route's contract for API clients, so the browser logged 'Failed to load resource:
... 401' at every load and the security log counted an unauthenticated refusal. The page now asks
`GET /console/api/whoami`, which answers 200 `{"authenticated": false}` without a session and refuses nothing;
`/console/api/session` answers as documented (401 without a session, counted), a session whose user was removed
is refused on both, and real 401s are still counted. HTTP through the lab client, then in headless Chromium."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from console.helpers import PASSWORD, ServedLab, browser_tests, watched_page
from console.lab_client import lab_client

expect, pytestmark = browser_tests()


def unauthenticated(client: Any) -> int:
    return int(client.app.state.console.security.snapshot()["counts"]["unauthenticated"])


def test_whoami_answers_a_logged_out_page_200_and_session_keeps_its_401(
    users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with lab_client(users_file) as client, caplog.at_level(logging.INFO, logger="peergrid_dso.security"):
        assert client.get("/console/api/whoami").json() == {"authenticated": False}
        client.cookies.set("pg_session", "no-such-session")
        assert client.get("/console/api/whoami").json() == {"authenticated": False}
        assert unauthenticated(client) == 0 and caplog.records == []  # no refusal, nothing logged
        client.cookies.clear()
        assert client.get("/console/api/session").status_code == 401  # the documented answer, counted
        assert client.get("/console/api/feeder").status_code == 401
        assert unauthenticated(client) == 2
        r = client.post("/console/api/login", json={"username": "vera", "password": PASSWORD})
        me = client.get("/console/api/whoami")
        assert me.status_code == 200
        assert me.json() == {
            "authenticated": True,
            "user": "vera",
            "role": "viewer",
            "csrf": r.json()["csrf"],
        }
        assert client.get("/console/api/session").json() == {
            "user": "vera",
            "role": "viewer",
            "csrf": r.json()["csrf"],
        }
        client.app.state.console.users.remove("vera")  # type: ignore[attr-defined]
        caplog.clear()
        gone = client.get("/console/api/whoami")
        assert gone.status_code == 401 and "removed" in gone.json()["detail"]
        assert [r.levelname for r in caplog.records] == ["WARNING"] and unauthenticated(client) == 3


def test_a_logged_out_page_load_logs_no_console_error_and_counts_no_refusal(
    browser: Any, users_file: Path
) -> None:
    with ServedLab(users_file) as served:
        page, errors = watched_page(browser)
        console_errors: list[str] = []
        refused: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: refused.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        for _ in range(2):
            page.goto(served.url + "/console")
            expect(page.locator("#login")).to_be_visible()
            assert page.locator("#login-error").text_content() == ""
        assert console_errors == [] and refused == [] and errors == []
        assert unauthenticated(served) == 0
        page.evaluate("async () => (await fetch('/console/api/feeder')).status")  # a real 401: still counted
        assert unauthenticated(served) == 1 and len(refused) == 1
        console_errors.clear()
        refused.clear()
        page.fill("#username", "vera")
        page.fill("#password", PASSWORD)
        page.click("#login-button")
        page.wait_for_selector("#tabs:not([hidden])")
        page.reload()  # logged in: the same question logs the page straight in
        page.wait_for_selector("#tabs:not([hidden])")
        expect(page.locator("#user")).to_have_text("vera (viewer)")
        assert console_errors == [] and refused == [] and errors == []
        page.context.close()
