"""C7: the page says what its day and time are, in headless Chromium. The market's clock counts day 0 from interval
0's start (the market's epoch), so its 00:00 is that time of day, not midnight: the README said so, the page did
not, and 'day 1, 09:15–09:30' read as a quarter past nine in the morning. Now the Market view says it in one line
under the interval's day and time, and the day picker, that line and the Feeder view's closed-loop line and alarms
carry it as their tooltip (`MARKET_CLOCK`). The lab server stands in for the live one, its console handed a live
market on a LocalChain (test_d9_market_missed's `Market`) and the node's records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.helpers import ServedLab, browser_tests, chromium, paused_login, watched_page

from peergrid_dso.interval_missed import missed_record

from .test_d9_market_missed import Market, users_at

expect, pytestmark = browser_tests()

WAIT_MS = 30_000  # a bound against hanging, not a figure tested
NOT_MIDNIGHT = "00:00 is that time of each day, not midnight"


def test_the_page_says_its_clock_starts_at_interval_0_not_midnight(tmp_path: Path) -> None:
    market = Market()
    market.bargain(133)  # day 1, 09:15
    with ServedLab(users_at(tmp_path)) as served, chromium() as browser:
        state: Any = served.app.state.console
        state.live_market = market.view
        state.interval_hours = 0.25  # as build_console sets it from the loop's interval_minutes
        state.on_interval(missed_record(133, ended=1_000.0, now=1_200.0))
        page, errors = watched_page(browser)
        paused_login(page, served.url, "vera")
        page.evaluate("location.hash = '#feeder'")
        line = page.locator("#loop-interval")
        expect(line).to_contain_text("interval 133 (day 1, 09:15–09:30): missed", timeout=WAIT_MS)
        expect(line).to_have_attribute("title", f"market clock: day 0 starts at interval 0's start (the market's epoch), and {NOT_MIDNIGHT}")  # fmt: skip
        expect(page.locator("#alarms")).to_contain_text("interval 133 (day 1, 09:15–09:30): missed")
        assert NOT_MIDNIGHT in (page.locator("#alarms").get_attribute("title") or "")
        page.evaluate("location.hash = '#market'")
        expect(page.locator("#interval-when")).to_have_text(
            "interval 133: day 1, 09:15–09:30", timeout=WAIT_MS
        )
        expect(page.locator("#market-clock")).to_have_text(
            "Times are the market's clock: 00:00 is interval 0's start, not midnight."
        )
        for shown in ("#interval-when", "#day"):
            assert NOT_MIDNIGHT in (page.locator(shown).get_attribute("title") or ""), shown
        assert errors == []


def test_a_console_without_days_says_nothing_of_the_clock(tmp_path: Path) -> None:
    """The lab's console without the loop's interval length shows no day, and so no word of its clock."""
    with ServedLab(users_at(tmp_path)) as served, chromium() as browser:
        state: Any = served.app.state.console
        state.on_interval({"interval": 41, "secure": True, "height": 7, "injections_kw": {"mg1": 80.0}})
        page, errors = watched_page(browser)
        paused_login(page, served.url, "vera")
        page.evaluate("location.hash = '#feeder'")
        line = page.locator("#loop-interval")
        expect(line).to_contain_text("interval 41: secure", timeout=WAIT_MS)
        assert line.get_attribute("title") is None
        assert errors == []
