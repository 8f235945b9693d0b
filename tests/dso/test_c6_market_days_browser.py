"""C6: the Market view's page across market days, in headless Chromium. U7-10: the picker said
'interval 36 (36–37 h)' on a pilot's second day and listed every interval on the chain. Now the page says each
interval's day and hours in it ('day 1, 09:00–09:15' for interval 132 of 15 minutes), lists one day's intervals,
and fetches another day's (`?day=`) when the operator picks it; the Feeder view's closed-loop line says the day
too. The lab server stands in for the live one, its console handed a live market on a LocalChain
(test_d9_market_missed's `Market`) and the node's records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.helpers import ServedLab, browser_tests, chromium, paused_login, watched_page

from .test_d9_market_missed import Market, users_at

expect, pytestmark = browser_tests()

WAIT_MS = 30_000  # a bound against hanging, not a figure tested


def test_the_page_says_the_day_and_picks_a_day(tmp_path: Path) -> None:
    market = Market()
    market.bargain(40)  # day 0, 10:00
    market.bargain(132)  # day 1, 09:00
    market.bargain(133)
    with ServedLab(users_at(tmp_path)) as served, chromium() as browser:
        state: Any = served.app.state.console
        state.live_market = market.view
        state.interval_hours = 0.25  # as build_console sets it from the loop's interval_minutes
        state.on_interval({"interval": 133, "secure": True, "height": 40, "injections_kw": {"mg1": 80.0}})
        page, errors = watched_page(browser)
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/console/api/market" in r.url else None)
        paused_login(page, served.url, "vera")
        page.evaluate("location.hash = '#feeder'")
        expect(page.locator("#loop-interval")).to_contain_text(
            "interval 133 (day 1, 09:15–09:30): secure", timeout=WAIT_MS
        )
        page.evaluate("location.hash = '#market'")
        expect(page.locator("#interval-when")).to_have_text(
            "interval 133: day 1, 09:15–09:30", timeout=WAIT_MS
        )
        expect(page.locator("#interval option")).to_have_count(2)  # day 1's alone
        expect(page.locator("#interval option[value='132']")).to_contain_text(
            "interval 132 (day 1, 09:00–09:15)"
        )
        expect(page.locator("#day option")).to_have_count(2)
        expect(page.locator("#day option[value='0']")).to_have_text("day 0: intervals 40–40 (1 listed)")
        expect(page.locator("#day")).to_have_value("1")
        page.select_option("#interval", "132")
        expect(page.locator("#interval-when")).to_have_text("interval 132: day 1, 09:00–09:15")
        page.select_option("#day", "0")
        expect(page.locator("#interval-when")).to_have_text(
            "interval 40: day 0, 10:00–10:15", timeout=WAIT_MS
        )
        expect(page.locator("#interval option")).to_have_count(1)
        expect(page.locator("#trades")).to_contain_text("mg1")
        expect(page.locator("#costs")).to_have_count(1)
        assert page.locator("#market h2", has_text="whole day 0").count() == 1
        assert asked and asked[-1].endswith("/console/api/market?day=0"), asked
        assert all(url.endswith(("/console/api/market", "?day=0")) for url in asked), asked
        assert errors == []
