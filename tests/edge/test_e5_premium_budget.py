"""E5 (M15's fault on the edge): the strict guard charges a clean purchase to the buyer's day budget at its price
less the owner's premium, as the buyer's curve judged it (`moves.make_bid`), not at the full price.

U5's feeder (tests/helpers_u5.py, shared with tests/controller/test_m15_premium_budget.py): one clean
seller (`solar`), a genset MG, and `factory`, clean-only with a 0.03 premium. Each MG's trading agent
(`MarketAgent.run_interval`) trades the morning from 07:00 on one real MGMC chain (the test_edge_guard
harness). Charged in full, the first premium purchase held `factory`'s budget below standing still and it
bought no more clean energy. The record keeps `cost_p2p` in real money and names the premium paid
(`clean_premium_paid`); a restart charges the same.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from helpers_u5 import u5_feeder
from test_edge_dayahead_session import ledger_for, run_on
from test_edge_forward import venue_keys
from test_edge_guard import agent_for

from peergrid_controller.scenario import build_scenario
from peergrid_edge import guard
from peergrid_edge.resume_spend import PREMIUM_PAID, spend_of
from peergrid_ledger.genesis import Params

FIRST, LAST = 28, 36  # 07:00 - 09:00: the morning U5's factory was shut out of


def strict_morning(tmp_path: Path, premium: float) -> dict[str, list[dict[str, Any]]]:
    """Every MG's records of intervals FIRST..LAST - 1, each agent strict with no allowance."""
    scenario = build_scenario(u5_feeder(premium))
    ledger, keys_ = ledger_for(
        tmp_path, scenario, key_of=venue_keys(scenario), params=Params(credit_limit=10**12)
    )
    records = {mg.name: tmp_path / f"{mg.name}.jsonl" for mg in scenario.microgrids}
    agents = {
        mg.name: agent_for(ledger, keys_[mg.name], scenario, mg.name, records[mg.name], "strict", 0.0)
        for mg in scenario.microgrids
    }

    async def play() -> None:
        for t in range(FIRST, LAST):
            await asyncio.wait_for(asyncio.gather(*(a.run_interval(t) for a in agents.values())), 120)

    run_on(ledger, play)
    return {n: [json.loads(line) for line in p.read_text().splitlines()] for n, p in records.items()}


def bought_kwh(lines: list[dict[str, Any]], anonym: str) -> dict[int, float]:
    return {
        r["interval"]: sum(tr["quantity_kwh"] for tr in r["trades"] if tr["buyer"] == anonym) for r in lines
    }


@pytest.fixture(scope="module")
def morning(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    return strict_morning(tmp_path_factory.mktemp("premium"), 0.03)


def test_a_strict_premium_buyer_keeps_buying_clean_after_its_first_premium_purchase(
    morning: dict[str, list[dict[str, Any]]],
) -> None:
    lines = [r for r in morning["factory"] if "interval" in r and "cost_p2p" in r]
    anonym = lines[0]["anonym"]
    bought = bought_kwh(lines, anonym)
    first = min(t for t, kwh in bought.items() if kwh > 1.0)  # its first (premium) purchase
    later = {t: kwh for t, kwh in bought.items() if t > first and kwh > 1.0}
    print(bought)
    # before (charged in full, judged with real money): one purchase more at 31, then nothing from 32 to 35
    # (28: 33.2 kWh, 31: 38.7); now it buys whenever the clean seller sells (31: 38.7, 34: 44.2 kWh)
    assert len(later) >= 2 and sum(later.values()) > 60.0, bought
    assert all(r["guard"]["dispatch"] == "plan" for r in lines if bought[r["interval"]] > 1.0)
    # the record: cost_p2p in real money, the premium on each clean kWh, the budget charged the difference
    spent = 0.0
    for r in lines:
        premium = r.get(PREMIUM_PAID, 0.0)
        clean_kwh = sum(tr["quantity_kwh"] for tr in r["trades"] if tr["buyer"] == anonym)
        assert premium == pytest.approx(0.03 * clean_kwh)  # the factory is clean-only: every kWh is clean
        assert (PREMIUM_PAID in r) == (clean_kwh > 0)
        spent += r["cost_p2p"] - premium
        assert r["budget_left"] == pytest.approx(r["budget_day"] - spent)
        assert r["guard"]["dso_cost"] == pytest.approx(0.0, abs=1e-9)  # no DSO here: the guard's own choice
    # a restart charges the same: its records' spend is the running budget's
    text = (json.dumps(r) for r in morning["factory"])
    spend, errors = spend_of(text, LAST)
    assert errors == [] and spend.resumed == pytest.approx((lines[0]["budget_day"], spent))


def test_sellers_and_buyers_without_a_premium_record_none(morning: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("solar", "diesel"):
        lines = morning[name]
        assert all(PREMIUM_PAID not in r for r in lines), name
        spent = 0.0
        for r in lines:
            spent += r["cost_p2p"]
            assert r["budget_left"] == pytest.approx(r["budget_day"] - spent)


def test_premium_paid_is_the_premium_on_the_clean_kwh_this_mg_bought_only() -> None:
    me, other, seller = b"me", b"other", b"seller"
    trades = [
        (b"1", {"seller": seller, "buyer": me, "quantity": 10_000, "price": 250, "clean": True}),
        (b"2", {"seller": seller, "buyer": me, "quantity": 4_000, "price": 200, "clean": False}),
        (b"3", {"seller": seller, "buyer": other, "quantity": 6_000, "price": 220, "clean": True}),
        (b"4", {"seller": me, "buyer": other, "quantity": 5_000, "price": 220, "clean": True}),
    ]
    assert guard.premium_paid(trades, me, 0.03) == pytest.approx(0.3)
    assert guard.premium_paid(trades, me, 0.0) == 0.0


def test_a_recorded_premium_is_credited_on_resume_and_a_bad_one_refused() -> None:
    good = [
        {"interval": 3, "budget_day": 10.0, "cost_p2p": 2.0, PREMIUM_PAID: 0.5},
        {"interval": 4, "budget_day": 10.0, "cost_p2p": 1.0},
    ]
    spend, errors = spend_of((json.dumps(r) for r in good), 5)
    assert errors == [] and spend.resumed == pytest.approx((10.0, 2.5))
    for bad in (-0.1, "0.5", float("inf"), 10**400):  # 10**400: no float holds it (math.isfinite raised)
        line = json.dumps({"interval": 3, "budget_day": 10.0, "cost_p2p": 2.0, PREMIUM_PAID: bad})
        spend, errors = spend_of([line], 5)
        assert len(errors) == 1 and PREMIUM_PAID in errors[0], errors
        assert spend.torn is not None  # the cost cannot be known: the guard resumes with no allowance left
