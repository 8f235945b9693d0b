"""The Feeder view's closed-loop card in headless Chromium (D2): it says which interval's outcome the diagram draws
(U3-2: an iteration's figures painted buses red for an interval that ended secure) and, for a forward-traded
interval, that the MGMCs re-planned with the forward trades kept instead of 're-bargained' (U3 run 3). The lab
server stands in for the live one: the test hands its console the DSO node's interval record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.helpers import ServedLab, browser_tests, chromium, paused_login, watched_page

expect, pytestmark = browser_tests()

WAIT_MS = 30_000  # a bound against hanging, not a figure tested
FORWARD = "forward-traded by exchange session 'day-1'"


def test_the_card_names_the_drawn_interval_and_a_replanning(users_file: Path) -> None:
    with ServedLab(users_file) as served, chromium() as browser:
        state: Any = served.app.state.console
        rounds = [{"iteration": 1, "reopened": None, "not_reopened": FORWARD,
                   "answer": "re-planned, forward trades kept"}]  # fmt: skip
        state.on_interval({"interval": 44, "secure": False, "height": 61, "injections_kw": {"mg1": 120.0},
                           "before": {"vmin_pu": 0.9262}, "after": {"vmin_pu": 0.9270, "violations": []},
                           "rebargain": rounds})  # fmt: skip
        page, errors = watched_page(browser)
        paused_login(page, served.url, "vera")
        page.evaluate("location.hash = '#feeder'")
        expect(page.locator("#drawn-from")).to_have_text(
            "the injections interval 44 ended with; the interval the DSO is checking now is drawn once it is done",
            timeout=WAIT_MS,
        )
        expect(page.locator("#loop-detail")).to_contain_text(
            "the MGMCs re-planned 1 time(s) within their limits, forward trades kept (not reopened, not re-bargained)"
        )
        expect(page.locator("#loop-detail")).not_to_contain_text("re-bargained 1")
        assert errors == []
