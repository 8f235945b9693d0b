"""The Market view's welfare says when it leaves an MG out, trader or not (R42-5 on 09fabd9). Before, only the
interval's trading parties were named: an MG that did not trade and whose record was unreadable, said it failed or
never came dropped out of the welfare, with 'waiting' and 'missing' empty, so the card read as whole (R42's case:
p2p -1.0 and conventional -2.0 for mg1 and mg3, -8.0 and -9.0 with mg5). Now every MG the view knows (trading
keys, enrolled MGs, MGs with records) is named when its figure is not in, the figure is `partial`, and the card is
titled so. A trader waited for still holds the figure back; a non-trader does not (on a chain without an interval
clock an MGMC stopped for the day would hold back every later welfare). Also the rule of R42-6: an MG's last
interval record counts, and an error record only where it wrote none. `LiveMarket` over the stand-in replica of
test_c3_market_welfare (interval 40: mg1 sells mg3 5 kWh), then the page in headless Chromium."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from console.helpers import ServedLab, browser_tests, market_view
from console.test_c3_market_welfare import BUYER, SELLER, scripted_market
from console.test_q9_market_unreadable_record import record

expect, pytestmark = browser_tests()

IDLE = b"\x05" * 32  # mg5's trading key: enrolled, trades nothing in interval 40
ENROLLED = {SELLER.hex(): "mg1", BUYER.hex(): "mg3", IDLE.hex(): "mg5"}
WAIT_MS = 30_000  # a bound against hanging, not a figure tested
FAILED = {"interval": 40, "anonym": IDLE.hex(), "error": "failed; see the log"}


def traders_in(folder: Path) -> None:
    """mg1's and mg3's records of interval 40, both sound: together -1.0 / -2.0 (the physical costs)."""
    (folder / "mgmc-mg1.jsonl").write_text(
        record(40, SELLER, cost_p2p=-1.0, cost_conventional=-0.5, p2p_money=0.72)
    )
    (folder / "mgmc-mg3.jsonl").write_text(
        record(40, BUYER, cost_p2p=2.0, cost_conventional=2.5, p2p_money=-0.72)
    )


def welfare(folder: Path, monkeypatch: pytest.MonkeyPatch, **more: Any) -> dict[str, Any]:
    (iv,) = scripted_market(folder, monkeypatch, ENROLLED, **more).report()["intervals"]
    return dict(iv["welfare"])


def test_a_non_trader_whose_record_is_unreadable_is_named_and_the_figure_is_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    traders_in(tmp_path)
    (tmp_path / "mgmc-mg5.jsonl").write_text(
        record(40, None, cost_p2p=7.0, cost_conventional=7.0, p2p_money=math.inf)
    )  # R42-5's reproduction: mg5's file, no anonym, and the DSO did not enrol it
    (iv,) = scripted_market(tmp_path, monkeypatch, {SELLER.hex(): "mg1", BUYER.hex(): "mg3"}).report()[
        "intervals"
    ]
    assert iv["welfare"] == {
        "p2p": -1.0, "conventional": -2.0, "central": None, "waiting": [],  # mg1 and mg3 alone
        "missing": {"mg5": "its MGMC's record of this interval is unreadable: p2p_money is Infinity, not a finite number"},
        "partial": True,
    }  # fmt: skip


def test_a_non_trader_whose_record_says_it_failed_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    traders_in(tmp_path)
    (tmp_path / "mgmc-mg5.jsonl").write_text(json.dumps(FAILED) + "\n")
    assert welfare(tmp_path, monkeypatch) == {
        "p2p": -1.0, "conventional": -2.0, "central": None, "waiting": [],
        "missing": {"mg5": "its MGMC's record of this interval says it failed"}, "partial": True,
    }  # fmt: skip


def test_an_enrolled_non_trader_not_heard_from_is_named_without_holding_the_figure_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    traders_in(tmp_path)  # mg5 (enrolled) has no records file at all
    over: list[int] = []
    assert welfare(tmp_path, monkeypatch, overdue=lambda t: t in over) == {
        "p2p": -1.0, "conventional": -2.0, "central": None, "waiting": ["mg5"], "missing": {}, "partial": True,
    }  # fmt: skip
    over.append(40)  # the chain's settlement window after the interval is over
    assert welfare(tmp_path, monkeypatch, overdue=lambda t: t in over)["missing"] == {
        "mg5": "it wrote no record for interval 40 within the chain's settlement window after its end"
    }
    (tmp_path / "mgmc-mg5.jsonl").write_text(
        record(40, IDLE, cost_p2p=7.0, cost_conventional=7.5, p2p_money=0.0)
    )  # late, but written: whole, the physical sum over all three
    assert welfare(tmp_path, monkeypatch, overdue=lambda t: t in over) == {
        "p2p": -8.0, "conventional": -9.5, "central": None, "waiting": [], "missing": {}, "partial": False,
    }  # fmt: skip


def test_a_trader_waited_for_still_holds_the_figure_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mgmc-mg1.jsonl").write_text(
        record(40, SELLER, cost_p2p=-1.0, cost_conventional=-0.5, p2p_money=0.72)
    )  # mg3 (the buyer) and mg5 not yet
    assert welfare(tmp_path, monkeypatch) == {
        "p2p": None, "conventional": None, "central": None, "waiting": ["mg3", "mg5"], "missing": {},
        "partial": False,
    }  # fmt: skip


def test_an_mg_enrolled_under_two_keys_is_named_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    traders_in(tmp_path)
    enrolled = ENROLLED | {(b"\x06" * 32).hex(): "mg5"}  # mg5 enrolled again with new keys
    (iv,) = scripted_market(tmp_path, monkeypatch, enrolled).report()["intervals"]
    assert iv["welfare"]["waiting"] == ["mg5"]


@pytest.mark.parametrize(
    ("lines", "counted", "missing"),
    [
        (["good", "error"], True, None),
        (["error", "good"], True, None),
        (["unreadable", "error"], False, "its MGMC's record of this interval is unreadable: cost_p2p is NaN, not a finite number"),
        (["good", "unreadable"], False, "its MGMC's record of this interval is unreadable: cost_p2p is NaN, not a finite number"),
        (["unreadable", "good"], True, None),
    ],
)  # fmt: skip
def test_the_last_interval_record_counts_and_an_error_record_only_where_there_is_none(
    lines: list[str], counted: bool, missing: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R42-6: as the edge's own day summary reads them (day_summary.collect); the edge writes an error record only
    where the interval raised before its record."""
    traders_in(tmp_path)
    written = {
        "good": record(40, IDLE, cost_p2p=7.0, cost_conventional=7.5, p2p_money=0.0),
        "unreadable": record(40, IDLE, cost_p2p=math.nan, cost_conventional=7.5, p2p_money=0.0),
        "error": json.dumps(FAILED) + "\n",
    }
    (tmp_path / "mgmc-mg5.jsonl").write_text("".join(written[line] for line in lines))
    found = welfare(tmp_path, monkeypatch)
    assert (found["p2p"] == -8.0) is counted and found["missing"].get("mg5") == missing


def test_the_market_page_titles_a_partial_welfare_and_names_the_non_trader(
    browser: Any, users_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    traders_in(tmp_path)
    doc = scripted_market(tmp_path, monkeypatch, ENROLLED).report()
    with ServedLab(users_file) as served:
        page, errors = market_view(browser, served.url, json.dumps(doc))
        expect(page.locator("#welfare-waiting")).to_have_text(
            "no interval record yet of mg5, which traded nothing: the figures are mg1, mg3's alone, with their"
            " P2P payments",
            timeout=WAIT_MS,
        )
        expect(page.locator("#welfare-title")).to_have_text("Welfare (partial)")
        assert page.locator("#welfare-missing").count() == 0
        welfare = page.locator("#market .card", has_text="Welfare").locator("td.num")
        assert welfare.all_text_contents() == ["-1.000", "-2.000", "—"]
        page.context.close()
    assert errors == []
