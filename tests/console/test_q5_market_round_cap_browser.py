"""The market view says "agreed at the round cap (2 rounds)" on a default lab (Q5, session 22): the record is the
one `LiveMarket` builds from a new default lab's MGMC chain (test_q5_live_round_cap.py: the genesis names
`max_rounds` 2 without settle_by_both), served to headless Chromium through the lab server's market route
(`page.route`, as test_p2_market_outcome.py does for its hand-written records). Before, a default lab's genesis
named no cap and the same bargaining read "agreed after 2 rounds, prices still moving".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from console.helpers import ServedLab, browser_tests, paused_login
from console.test_q5_live_round_cap import default_lab_market

expect, pytestmark = browser_tests()

WAIT_MS = 30_000  # a bound against hanging, not a figure tested


def _answer(doc: dict[str, Any]) -> Any:
    """The market route's handler answering `doc` (playwright passes the request too where a handler takes two
    arguments, so one argument only)."""
    body = json.dumps(doc)
    return lambda route: route.fulfill(status=200, content_type="application/json", body=body)


def test_a_default_labs_market_view_says_agreed_at_the_round_cap(
    browser: Any, users_file: Path, tmp_path: Path
) -> None:
    market, _ = default_lab_market(tmp_path)
    # the same bargaining on a lab directory kept from before, whose genesis names no cap
    uncapped = {**market, "intervals": [{**market["intervals"][0], "round_cap": None}]}
    errors: list[str] = []
    seen = []
    with ServedLab(users_file) as served:
        for doc in (market, uncapped):
            page = browser.new_context().new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/console/api/market", _answer(doc))
            paused_login(page, served.url, "vera")
            page.evaluate("location.hash = '#market'")
            title = page.locator("#market h2", has_text="Sellers' prices per round")
            expect(title).to_contain_text("interval 40", timeout=WAIT_MS)
            seen.append(title.text_content())
            page.context.close()
    assert seen == [
        "Sellers' prices per round (interval 40: agreed at the round cap (2 rounds))",
        "Sellers' prices per round (interval 40: agreed after 2 rounds, prices still moving)",
    ]
    assert errors == []
