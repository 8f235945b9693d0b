"""The Feeder view's closed-loop line in headless Chromium for an interval the DSO node missed (C5): it read
"interval 13: INSECURE, 0 switch op(s), 0 adjustment(s), DSO chain height null" for D8's missed record, whose
`secure` is null because nothing was checked; it says missed and why. The lab server stands in for the live one,
as in the D2 card test: the test hands its console the node's record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.helpers import ServedLab, browser_tests, chromium, paused_login, watched_page
from peergrid_dso.interval_missed import DOWN, missed_record

expect, pytestmark = browser_tests()

WAIT_MS = 30_000  # a bound against hanging, not a figure tested


def test_the_line_says_missed_and_why(users_file: Path) -> None:
    with ServedLab(users_file) as served, chromium() as browser:
        state: Any = served.app.state.console
        state.on_interval(missed_record(13, ended=1_000.0, now=1_200.0))
        page, errors = watched_page(browser)
        paused_login(page, served.url, "vera")
        page.evaluate("location.hash = '#feeder'")
        expect(page.locator("#loop-interval")).to_have_text(
            f"interval 13: missed, {DOWN}: not checked, no contract, no switching", timeout=WAIT_MS
        )
        expect(page.locator("#loop-interval")).not_to_contain_text("INSECURE")
        expect(page.locator("#alarms")).to_contain_text(f"interval 13: missed, {DOWN}")
        assert errors == []
