"""D9: the Market view's page in headless Chromium for an interval the DSO node missed: it says missed and why,
in the Feeder line's words (C5), lists it in the picker as missed, and says nothing of a miss for an interval the
node checked. Before, the page had no word of it (the view's record had no `missed`, and an interval nobody
bargained in was not listed). The lab server stands in for the live one, its console handed a live market on a
LocalChain and the node's records (test_d9_market_missed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.helpers import ServedLab, browser_tests, chromium, paused_login, watched_page

from peergrid_dso.interval_missed import DOWN, missed_record

from .test_d9_market_missed import Market, users_at

expect, pytestmark = browser_tests()

WAIT_MS = 30_000  # a bound against hanging, not a figure tested


def test_the_market_view_says_missed_and_why(tmp_path: Path) -> None:
    market = Market()
    market.bargain(12)
    with ServedLab(users_at(tmp_path)) as served, chromium() as browser:
        state: Any = served.app.state.console
        state.live_market = market.view
        state.on_interval({"interval": 12, "secure": True, "height": 40, "injections_kw": {"mg1": 80.0}})
        state.on_interval(missed_record(13, ended=1_000.0, now=1_200.0))
        page, errors = watched_page(browser)
        paused_login(page, served.url, "vera")
        page.evaluate("location.hash = '#market'")
        expect(page.locator("#missed")).to_have_text(  # the newest interval, which the view opens on
            f"interval 13: missed, {DOWN}: not checked, no contract, no switching", timeout=WAIT_MS
        )
        expect(page.locator("#interval option[value='13']")).to_contain_text("missed by the DSO")
        expect(page.locator("#market")).to_contain_text("interval 13: nothing on the chain")
        page.select_option("#interval", "12")
        expect(page.locator("#trades")).to_contain_text("mg1", timeout=WAIT_MS)
        expect(page.locator("#missed")).to_have_count(0)  # a checked interval says nothing of a miss
        assert errors == []
