"""The market view's title says how each interval's bargaining ended, from what its record holds, and the view
opens on the latest interval (P2, session 21; found by U1 running `make run`).

Before, every interval whose last two rounds' prices differed was titled "NOT converged", though in the lab each
was agreed and settled: the lab's accelerated clock fits 2 rounds a bargaining (the MGMC genesis' `max_rounds`),
so prices still move when the rounds stop. And the view opened on the interval with the most offers (the oldest,
on a tie) until the next live update moved it to the latest. In headless Chromium against the lab server, its
market route answered by `page.route` with records of each kind; the page's timers on a paused clock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from console.helpers import ServedLab, browser_tests, paused_login

expect, pytestmark = browser_tests()

WAIT_MS = 30_000  # a bound against hanging, not a figure tested


def _interval(t: int, rounds: int, converged: bool, trades: int, **more: Any) -> dict[str, Any]:
    """A live interval record (`LiveMarket._interval`'s shape): two sellers priced in every round."""
    prices = [
        {"round": r, "seller": s, "price": 0.1 + 0.01 * r, "quantity_kwh": 1.0, "accepted": True}
        for r in range(1, rounds + 1)
        for s in ("mg1", "mg5")
    ]
    agreed = [
        {"seller": "mg1", "buyer": f"mg{2 + k}", "quantity_kwh": 1.5, "price": 0.12} for k in range(trades)
    ]
    return {
        "interval": t,
        "hours": [t * 0.25, (t + 1) * 0.25],
        "rounds": rounds,
        "converged": converged,
        "closed": trades > 0,
        "prices": prices,
        "trades": agreed,
        "settlements": [],
        "cost_p2p": {"mg1": 1.0},
        "cost_conventional": {"mg1": 1.2},
        "welfare": {"p2p": -1.0, "conventional": -1.2, "central": None},
        **more,
    }


# interval -> (its record, the title's words for it); 36, the oldest, has the most offers
INTERVALS = {
    36: (_interval(36, 4, True, 2), "converged in 4 rounds"),
    37: (_interval(37, 2, False, 3, round_cap=2), "agreed at the round cap (2 rounds)"),
    38: (_interval(38, 2, False, 3), "agreed after 2 rounds, prices still moving"),
    39: (_interval(39, 3, False, 3, round_cap=2), "agreed after 3 rounds, prices still moving"),
    40: (_interval(40, 4, False, 1, round_cap=2, reopened_at=2), "agreed at the round cap (2 rounds after a reopening, 4 in all)"),
    41: (_interval(41, 1, True, 1), "agreed in round 1"),
    42: (_interval(42, 2, False, 0, closed=True), "no agreement (2 rounds of offers)"),
    43: (_interval(43, 1, False, 0), "no trade on the chain yet (1 round of offers)"),
}  # fmt: skip
MARKET = {
    "status": "ready",
    "source": "live: the DSO's replica of the MGMC chain (height 99)",
    "intervals": [record for record, _ in INTERVALS.values()],
    "height": 99,
}


def _market_page(browser: Any, served: ServedLab, errors: list[str]) -> tuple[Any, Any]:
    """vera's page on the market view, the market route answered with MARKET: (the page, its bargaining title)."""
    page = browser.new_context().new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route(
        "**/console/api/market",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(MARKET)),
    )
    paused_login(page, served.url, "vera")
    page.evaluate("location.hash = '#market'")
    title = page.locator("#market h2", has_text="Sellers' prices per round")
    expect(title).to_be_visible(timeout=WAIT_MS)
    return page, title


def test_the_market_view_opens_on_the_latest_interval(browser: Any, users_file: Path) -> None:
    busiest = max(len(record["prices"]) for record, _ in INTERVALS.values())
    assert len(INTERVALS[36][0]["prices"]) == busiest  # the view's old pick (the first of the busiest)
    errors: list[str] = []
    with ServedLab(users_file) as served:
        page, title = _market_page(browser, served, errors)
        expect(title).to_contain_text("interval 43", timeout=WAIT_MS)  # before any live update
        assert page.input_value("#interval") == "43" and errors == []
        page.context.close()


def test_the_market_view_says_how_each_bargaining_ended(browser: Any, users_file: Path) -> None:
    errors: list[str] = []
    with ServedLab(users_file) as served:
        page, title = _market_page(browser, served, errors)
        seen = {}
        for t in INTERVALS:
            page.select_option("#interval", str(t))
            expect(title).to_contain_text(f"interval {t}", timeout=WAIT_MS)
            seen[t] = title.text_content()
        assert seen == {
            t: f"Sellers' prices per round (interval {t}: {words})" for t, (_, words) in INTERVALS.items()
        }
        assert errors == []
        page.context.close()
