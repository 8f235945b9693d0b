"""An MGMC interval record whose cost is NaN or Infinity (Python's json reads both) was taken as a cost: the market
route (FastAPI 0.165, pydantic) answered it as null, so the page showed that MG's P2P cost as '—' and its saving
as the conventional cost alone, and the interval's welfare as '—' with no word why (closing23 said the page
answered 500: not with this FastAPI; the figures were wrong instead). Now the record is unreadable, named with its
MG and field, left out of the costs and the welfare (its MG missing, with why, trader or not: C4, R42-5), and the
rest of the interval is shown. `LiveMarket` over a stand-in replica, through the app's market route, then the page in headless
Chromium."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from console.helpers import PASSWORD, ServedLab, browser_tests, market_view
from console.lab_client import lab_client
from console.test_c3_market_welfare import BUYER, SELLER, scripted_market
from peergrid_dso.console.live_market import LiveMarket, unreadable_cost

expect, pytestmark = browser_tests()

ENROLLED = {SELLER.hex(): "mg1", BUYER.hex(): "mg3"}  # mg1 sells to mg3; mg5 trades nothing
WAIT_MS = 30_000  # a bound against hanging, not a figure tested


def record(t: int, key: bytes | None, **costs: Any) -> str:
    doc = {"interval": t} | ({"anonym": key.hex()} if key else {}) | costs
    return json.dumps(doc) + "\n"  # json writes nan as NaN, inf as Infinity, as an MGMC's json would


def live_market(records: Path, monkeypatch: pytest.MonkeyPatch, **more: Any) -> LiveMarket:
    """Interval 40: one trade mg1 -> mg3 (5 kWh at 0.18, 4 delivered); `more`: LiveMarket's own arguments."""
    return scripted_market(records, monkeypatch, ENROLLED, **more)


def write_records(folder: Path) -> None:
    """mg1's record is sound; mg3's (a trader) has a NaN cost; mg5's (no trade) an infinite payment."""
    (folder / "mgmc-mg1.jsonl").write_text(
        record(40, SELLER, cost_p2p=-1.0, cost_conventional=-0.5, p2p_money=0.72)
    )
    (folder / "mgmc-mg3.jsonl").write_text(
        record(40, BUYER, cost_p2p=math.nan, cost_conventional=2.5, p2p_money=-0.72)
    )
    (folder / "mgmc-mg5.jsonl").write_text(
        record(40, None, cost_p2p=0.5, cost_conventional=0.5, p2p_money=math.inf)
    )


def test_the_market_route_answers_with_the_unreadable_records_named(
    users_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    write_records(records)
    with lab_client(users_file) as c:
        c.app.state.console.live_market = live_market(records, monkeypatch)  # type: ignore[attr-defined]
        assert (
            c.post("/console/api/login", json={"username": "vera", "password": PASSWORD}).status_code == 200
        )
        answer = c.get("/console/api/market")
    assert answer.status_code == 200, answer.text[:300]
    (iv,) = answer.json()["intervals"]
    assert iv["unreadable"] == {
        "mg3": "cost_p2p is NaN, not a finite number",
        "mg5": "p2p_money is Infinity, not a finite number",
    }
    assert iv["trades"] == [{"seller": "mg1", "buyer": "mg3", "quantity_kwh": 5.0, "price": 0.18}]
    assert iv["cost_p2p"] == {"mg1": -1.0} and iv["cost_conventional"] == {"mg1": -0.5}
    assert iv["welfare"] == {
        "p2p": 1.0, "conventional": 0.5, "central": None, "waiting": [],  # mg1's alone: -(-1.0), -(-0.5)
        "missing": {
            "mg3": "its MGMC's record of this interval is unreadable: cost_p2p is NaN, not a finite number",
            "mg5": "its MGMC's record of this interval is unreadable: p2p_money is Infinity, not a finite number",
        },
        "partial": True,
    }  # fmt: skip


def test_a_record_written_again_readable_counts_and_the_last_one_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_records(tmp_path)
    mg3 = tmp_path / "mgmc-mg3.jsonl"
    mg3.write_text(mg3.read_text() + record(40, BUYER, cost_p2p=2.0, cost_conventional=2.5, p2p_money=-0.72))
    (iv,) = live_market(tmp_path, monkeypatch).report()["intervals"]
    assert iv["unreadable"] == {"mg5": "p2p_money is Infinity, not a finite number"}
    assert (
        iv["welfare"]["p2p"] == -1.0
        and list(iv["welfare"]["missing"]) == ["mg5"]
        and iv["welfare"]["partial"]
    )  # mg1 and mg3 counted, mg5 (no trade, unreadable) left out: -(-1+2)
    mg3.write_text(
        mg3.read_text() + record(40, BUYER, cost_p2p=-math.inf, cost_conventional=2.5, p2p_money=0)
    )
    (iv,) = live_market(tmp_path, monkeypatch).report()["intervals"]
    assert (
        iv["unreadable"]["mg3"] == "cost_p2p is -Infinity, not a finite number"
        and "mg3" not in iv["cost_p2p"]
    )


@pytest.mark.parametrize(
    ("costs", "why"),
    [
        ({"cost_p2p": 1.0, "cost_conventional": 1.0}, "p2p_money is missing"),
        ({"cost_p2p": "1.5", "cost_conventional": 1.0, "p2p_money": 0}, 'cost_p2p is "1.5", not a number'),
        ({"cost_p2p": True, "cost_conventional": 1.0, "p2p_money": 0}, "cost_p2p is true, not a number"),
        ({"cost_p2p": 1, "cost_conventional": 10**400, "p2p_money": 0}, "cost_conventional is 100000000000..., beyond a float's range"),
        ({"cost_p2p": 1, "cost_conventional": -2.5, "p2p_money": 0}, None),
    ],
)  # fmt: skip
def test_unreadable_cost_names_the_field_and_why(costs: dict[str, Any], why: str | None) -> None:
    assert unreadable_cost({"interval": 3} | costs) == why


def test_the_market_page_renders_with_the_unreadable_record_named(
    browser: Any, users_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_records(tmp_path)
    body = json.dumps(live_market(tmp_path, monkeypatch).report(), allow_nan=False)
    with ServedLab(users_file) as served:
        page, errors = market_view(browser, served.url, body)
        expect(page.locator("#records-unreadable")).to_have_text(
            "unreadable interval record of mg3 (cost_p2p is NaN, not a finite number); mg5 (p2p_money is Infinity,"
            " not a finite number): left out of the costs and the welfare",
            timeout=WAIT_MS,
        )
        expect(page.locator("#welfare-missing")).to_contain_text(
            "mg3 (its MGMC's record of this interval is unreadable"
        )
        assert page.locator("#trades tbody tr").count() == 1
        assert page.locator("#costs tbody tr td:first-child").all_text_contents() == ["mg1"]
        page.context.close()
    assert errors == []
