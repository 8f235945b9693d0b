"""An enrolled MG whose MGMC never writes its interval record is no longer waited for in the Market view's welfare
for good (closing23's noticed). Before, such an MG was named under 'waiting for the interval records of mg3' for
ever and no welfare was given. Now, once the interval is over on the MGMC chain's interval clock by more than the
chain's settlement window (genesis `settle_wait_ms`: the head's block time past the interval's end plus it), the
view says 'it wrote no record for interval 40' and gives the welfare of those that did, marked partial (the
figures are theirs alone); a record that comes later still counts. `LiveMarket` over a stand-in replica (as
test_q9_market_unreadable_record), `records_overdue` over a stand-in chain with real genesis params, then the
view in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from console.helpers import ServedLab, browser_tests, market_view
from console.test_q9_market_unreadable_record import BUYER, SELLER, live_market, record
from peergrid_dso.console.live_market import records_overdue
from peergrid_ledger.genesis_params import Params

expect, pytestmark = browser_tests()

WAIT_MS = 30_000  # a bound against hanging, not a figure tested
NO_RECORD = "it wrote no record for interval 40 within the chain's settlement window after its end"


def _mg1_alone(folder: Path) -> None:
    (folder / "mgmc-mg1.jsonl").write_text(
        record(40, SELLER, cost_p2p=-1.0, cost_conventional=-0.5, p2p_money=0.72)
    )


def test_an_enrolled_mg_that_wrote_nothing_is_named_once_the_window_is_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mg1_alone(tmp_path)  # mg3 (enrolled, the buyer) has no records file at all
    over: list[int] = []
    market = live_market(tmp_path, monkeypatch, overdue=lambda t: t in over)
    (iv,) = market.report()["intervals"]
    assert iv["welfare"] == {
        "p2p": None, "conventional": None, "central": None, "waiting": ["mg3"], "missing": {},
        "partial": False,
    }  # fmt: skip
    over.append(40)  # the chain's head went past the interval's end and its settlement window
    (iv,) = live_market(tmp_path, monkeypatch, overdue=lambda t: t in over).report()["intervals"]
    assert iv["welfare"] == {
        "p2p": 1.0, "conventional": 0.5, "central": None, "waiting": [],  # mg1's alone: partial
        "missing": {"mg3": NO_RECORD}, "partial": True,
    }  # fmt: skip
    (tmp_path / "mgmc-mg3.jsonl").write_text(
        record(40, BUYER, cost_p2p=2.0, cost_conventional=2.5, p2p_money=-0.72)
    )  # late, but written: counted
    (iv,) = live_market(tmp_path, monkeypatch, overdue=lambda t: t in over).report()["intervals"]
    assert iv["welfare"] == {
        "p2p": -1.0, "conventional": -2.0, "central": None, "waiting": [], "missing": {}, "partial": False
    }  # fmt: skip


def test_without_the_chains_word_an_mg_is_waited_for_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mg1_alone(tmp_path)
    (iv,) = live_market(tmp_path, monkeypatch).report()["intervals"]
    assert iv["welfare"]["waiting"] == ["mg3"] and iv["welfare"]["p2p"] is None


def _chain(head_ms: int, **params: int) -> Any:
    """An MGMC chain replica as `records_overdue` reads it: genesis params, state, the head's block time."""
    store = SimpleNamespace(tip=lambda: SimpleNamespace(time=head_ms))
    return SimpleNamespace(
        store=store, app=SimpleNamespace(state={}, genesis=SimpleNamespace(params=Params(**params)))
    )


def test_records_are_overdue_past_the_intervals_end_and_the_settlement_window() -> None:
    clock = {
        "settle_by_both": 1,
        "settle_epoch_ms": 1_000_000,
        "settle_interval_ms": 6_000,
        "settle_wait_ms": 18_000,
    }
    ends = 1_000_000 + 41 * 6_000  # interval 40's end on the chain's clock
    assert not records_overdue(_chain(ends + 18_000, **clock), 40)
    assert records_overdue(_chain(ends + 18_001, **clock), 40)
    assert not records_overdue(_chain(ends + 18_001, **clock), 41)
    # no interval clock on the chain: no time says a record is late
    assert not records_overdue(_chain(10**12), 40)


def test_the_market_view_says_who_wrote_no_record_and_that_the_figures_are_the_others(
    browser: Any, users_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mg1_alone(tmp_path)
    body = json.dumps(live_market(tmp_path, monkeypatch, overdue=lambda t: True).report())
    with ServedLab(users_file) as served:
        page, errors = market_view(browser, served.url, body)
        expect(page.locator("#welfare-missing")).to_have_text(
            f"no interval record will come of mg3 ({NO_RECORD}): the figures are mg1's alone, with their P2P"
            " payments",
            timeout=WAIT_MS,
        )
        welfare = page.locator("#market .card", has_text="Welfare").locator("td.num")
        assert welfare.all_text_contents() == ["1.000", "0.500", "—"]
        page.context.close()
    assert errors == []
