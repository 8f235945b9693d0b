"""The Market view's welfare for an interval whose trader no record can be matched to (R38 on f7e23ea, C3).
f7e23ea waits for every trade party's interval record, matched by name (the enrolled MG's, else the key's first
8 hex digits, against the records file's name), so a trader that is not an enrolled anonym was waited for forever
('waiting for 0d0d0d0d'). Now a record belongs to the key it names (`anonym`), an unenrolled trader whose MGMC
writes records is named and counted by them, and one no record names is missing once every MGMC's records went on
past the interval: the welfare shown is then the others' (their own costs with their P2P payments), with a note
naming who is missing and why; an MGMC whose record of the interval failed is missing at once. `LiveMarket` over
a stand-in replica, then the view in headless Chromium through the market route."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from console.helpers import ServedLab, browser_tests, market_view
from peergrid_dso.console.live_market import LiveMarket

expect, pytestmark = browser_tests()

SELLER, BUYER = b"\x0a" * 32, b"\x0d" * 32  # mg1 (enrolled) sells to a key the DSO did not enrol
WAIT_MS = 30_000  # a bound against hanging, not a figure tested


def record(t: int, key: bytes, cost: float, conventional: float, money: float) -> str:
    doc = {"interval": t, "anonym": key.hex(), "cost_p2p": cost, "cost_conventional": conventional}
    return json.dumps(doc | {"p2p_money": money}) + "\n"


def scripted_market(
    records: Path, monkeypatch: pytest.MonkeyPatch, enrolled: dict[str, str], **more: Any
) -> LiveMarket:
    """Interval 40: one trade SELLER -> BUYER (5 kWh at 0.18, 4 delivered); `more`: LiveMarket's own arguments."""
    from peergrid_ledger import query
    from peergrid_ledger.contracts import market_state

    def tx(kind: str, sender: bytes, **body: Any) -> Any:
        return SimpleNamespace(kind=kind, sender=sender, body=body)

    blocks = [
        [tx("offer", SELLER, interval=40, round=1, price=180, quantity=20_000, clean=True)],
        [tx("move", BUYER, interval=40, round=1, demands=[]), tx("trade", SELLER, interval=40)],
    ]
    trade = {"seller": SELLER, "buyer": BUYER, "price": 180, "quantity": 5_000,
             "settlement": {"amount": 180 * 4_000, "delivered": 4_000}}  # fmt: skip
    monkeypatch.setattr(query, "trades", lambda state, t: [(b"t" * 32, trade)] if t == 40 else [])
    monkeypatch.setattr(market_state, "reopening", lambda state, t: None)
    store = SimpleNamespace(
        head_height=lambda: len(blocks), block=lambda h: SimpleNamespace(txs=blocks[h - 1])
    )
    genesis = SimpleNamespace(params=SimpleNamespace(max_rounds=0))
    replica = SimpleNamespace(store=store, app=SimpleNamespace(state=None, genesis=genesis))
    return LiveMarket(replica, lambda fn: fn(), enrolled, 0.25, records, **more)


def market_of(records: Path, monkeypatch: pytest.MonkeyPatch, enrolled: dict[str, str]) -> dict[str, Any]:
    """The interval-40 report of one trade SELLER -> BUYER (5 kWh at 0.18, 4 delivered)."""
    doc = scripted_market(records, monkeypatch, enrolled).report()
    assert [iv["interval"] for iv in doc["intervals"]] == [40]
    return dict(doc)


def test_an_unenrolled_trader_no_record_names_is_missing_once_every_mgmc_went_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrolled = {SELLER.hex(): "mg1"}
    mg1 = tmp_path / "mgmc-mg1.jsonl"
    mg1.write_text(record(40, SELLER, -1.0, -0.5, 0.72))
    (iv,) = market_of(tmp_path, monkeypatch, enrolled)["intervals"]
    assert iv["trades"][0]["buyer"] == "0d0d0d0d"
    # mg1 has not gone past 40: the buyer's record may still come (its MGMC's first, not written yet)
    assert iv["welfare"] == {
        "p2p": None, "conventional": None, "central": None, "waiting": ["0d0d0d0d"], "missing": {},
        "partial": False,
    }  # fmt: skip
    mg1.write_text(mg1.read_text() + record(41, SELLER, 0.3, 0.4, 0.0))
    (iv,) = market_of(tmp_path, monkeypatch, enrolled)["intervals"]
    assert iv["welfare"] == {
        "p2p": 1.0, "conventional": 0.5, "central": None, "waiting": [],  # mg1's: -(-1.0), -(-0.5)
        "missing": {"0d0d0d0d": "no MGMC's record names this trading key, which is not an enrolled anonym"},
        "partial": True,
    }  # fmt: skip


def test_an_unenrolled_trader_whose_mgmc_writes_records_is_named_and_counted_by_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mgmc-mg1.jsonl").write_text(record(40, SELLER, -1.0, -0.5, 0.72))
    (tmp_path / "mgmc-mg4.jsonl").write_text(record(40, BUYER, 2.0, 2.5, -0.72))
    (iv,) = market_of(tmp_path, monkeypatch, {SELLER.hex(): "mg1"})["intervals"]
    assert iv["trades"] == [{"seller": "mg1", "buyer": "mg4", "quantity_kwh": 5.0, "price": 0.18}]
    # whole: the physical costs, mg1 -1.0 + 0.72 and mg4 2.0 - 0.72
    assert iv["welfare"] == {
        "p2p": -1.0, "conventional": -2.0, "central": None, "waiting": [], "missing": {}, "partial": False
    }  # fmt: skip


def test_an_enrolled_trader_is_waited_for_until_its_records_say_the_interval_failed_or_went_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrolled = {SELLER.hex(): "mg1", BUYER.hex(): "mg3"}
    (tmp_path / "mgmc-mg1.jsonl").write_text(
        record(40, SELLER, -1.0, -0.5, 0.72) + record(41, SELLER, 0, 0, 0)
    )
    (iv,) = market_of(tmp_path, monkeypatch, enrolled)["intervals"]
    assert (
        iv["welfare"]["waiting"] == ["mg3"] and iv["welfare"]["p2p"] is None
    )  # enrolled: its first may come
    mg3 = tmp_path / "mgmc-mg3.jsonl"
    for written, why in (
        (json.dumps({"interval": 40, "anonym": BUYER.hex(), "error": "failed; see the log"}),
         "its MGMC's record of this interval says it failed"),
        (record(41, BUYER, 0, 0, 0), "its MGMC's records went on past this interval without one"),
    ):  # fmt: skip
        mg3.write_text(written + "\n")
        (iv,) = market_of(tmp_path, monkeypatch, enrolled)["intervals"]
        assert iv["welfare"] == {
            "p2p": 1.0, "conventional": 0.5, "central": None, "waiting": [], "missing": {"mg3": why},
            "partial": True,
        }  # fmt: skip


def test_a_settlement_line_is_no_record_of_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R40-3: an MGMC's settlement line of interval 40 (edge `Settler`: without settle_by_both a refused first
    attempt writes it before the interval's own record; after a restart it may be the interval's only line) says
    nothing of the interval's costs: its MG is still waited for, not missing as 'its record says it failed'."""
    enrolled = {SELLER.hex(): "mg1", BUYER.hex(): "mg3"}
    (tmp_path / "mgmc-mg1.jsonl").write_text(record(40, SELLER, -1.0, -0.5, 0.72))
    mg3 = tmp_path / "mgmc-mg3.jsonl"
    settlement = {"trade": "74" * 32, "settled": False, "attempts": 1, "reason": "refused", "party": "buyer"}
    mg3.write_text(json.dumps({"interval": 40, "settlement": settlement | {"delivered": 4_000}}) + "\n")
    (iv,) = market_of(tmp_path, monkeypatch, enrolled)["intervals"]
    assert iv["welfare"] == {
        "p2p": None, "conventional": None, "central": None, "waiting": ["mg3"], "missing": {},
        "partial": False,
    }  # fmt: skip
    mg3.write_text(mg3.read_text() + record(40, BUYER, 2.0, 2.5, -0.72))  # its record, after the line
    (iv,) = market_of(tmp_path, monkeypatch, enrolled)["intervals"]
    assert iv["welfare"] == {
        "p2p": -1.0, "conventional": -2.0, "central": None, "waiting": [], "missing": {}, "partial": False
    }  # fmt: skip


def test_the_market_view_shows_the_known_welfare_and_names_who_is_missing(
    browser: Any, users_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mgmc-mg1.jsonl").write_text(
        record(40, SELLER, -1.0, -0.5, 0.72) + record(41, SELLER, 0.3, 0.4, 0.0)
    )
    body = json.dumps(market_of(tmp_path, monkeypatch, {SELLER.hex(): "mg1"}))
    with ServedLab(users_file) as served:
        page, errors = market_view(browser, served.url, body)
        expect(page.locator("#welfare-missing")).to_have_text(
            "no interval record will come of 0d0d0d0d (no MGMC's record names this trading key, which is not an"
            " enrolled anonym): the figures are mg1's alone, with their P2P payments",
            timeout=WAIT_MS,
        )
        assert page.locator("#welfare-waiting").count() == 0
        welfare = page.locator("#market .card", has_text="Welfare").locator("td.num")
        assert welfare.all_text_contents() == ["1.000", "0.500", "—"]
        page.context.close()
    assert errors == []
