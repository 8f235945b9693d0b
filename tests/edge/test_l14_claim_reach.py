"""Where an MG's held day has no schedule, its claim holds the largest share of its positions outside its window
that has one (L14, review31 R31-1).

L13 (5330471) claimed the real day's gain there: the capped buyer of tests/edge/test_l13_claim_min.py (a 10-kWh
battery, DSO import 0.5 kW, rationed to 5 of the 10 kWh it answered for interval 1, window 1-2) posting a sale
of 7,000 Wh in interval 3 (the most in its reach: 5 + 4 x 0.5) claimed 200,000, and 7,001 Wh claimed 750,000,
the real day's figure L12's held day exists to remove. Now the held day holds k/n of its positions outside
(bisection, one dispatch a step, n the largest of them in Wh up to 2^16; share 0 is the real day): 7,001 Wh
claims what 7,000 does. Hand day: 1-hour intervals, retail 0.30, feed-in 0.05, closing prices 0.20 0.20 0.20 0.28.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_edge_fee_claim import FEE
from test_l13_claim_min import bought, capped_buyer

import peergrid_edge.dayahead_uplift_claim as claim_code
from peergrid_controller.forward_accept import dispatch
from peergrid_controller.model import ContractRules, Microgrid
from peergrid_edge.dayahead_uplift import UpliftClaim, claim_from


def sale_in_3(wh: int, buyer: Microgrid | None = None, fee: int = 0) -> UpliftClaim:
    """The rationed buyer's claim where its post sells `wh` in interval 3 (outside its window)."""
    figures = dataclasses.replace(bought(5.0, (0, -10_000, 0, wh)), fee=fee)
    return claim_from(capped_buyer() if buyer is None else buyer, 1.0, figures)


@pytest.fixture
def dispatches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, ...]]:
    """Every day the claim dispatches (its committed day, its held days), in order."""
    days: list[tuple[float, ...]] = []
    solve: Callable[..., Any] = dispatch

    def counted(mg: Microgrid, dt: float, kwh: tuple[float, ...]) -> Any:
        days.append(tuple(kwh))
        return solve(mg, dt, kwh)

    monkeypatch.setattr(claim_code, "dispatch", counted)
    return days


def test_one_wh_past_its_reach_claims_what_its_reach_does(caplog: pytest.LogCaptureFixture) -> None:
    """R31-1's pair: 7,000 and 7,001 Wh both claim 0.2 (2 kWh imported at 0.30 it would have bought at 0.20);
    below its reach each Wh it sells held moves the claim by 0.1 per kWh. Before: 7,001 claimed 750,000."""
    caplog.set_level(logging.WARNING, "peergrid.edge.uplift")
    assert [sale_in_3(wh).gain for wh in (6_999, 7_000, 7_001, 7_002)] == [199_900, 200_000, 200_000, 200_000]
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2 and all("7000/700" in m and "0.200000" in m for m in logged), logged
    with_fee = [sale_in_3(wh, fee=FEE) for wh in (7_000, 7_001)]
    assert with_fee[0].gain == with_fee[1].gain > 0 and with_fee[0].day_cost == with_fee[1].day_cost


@settings(max_examples=10, deadline=None)
@given(past=st.integers(1, 13_000), import_kw=st.sampled_from([0.5, 1.0]), fee=st.sampled_from([0, FEE]))
def test_any_post_past_its_reach_claims_what_its_reach_does(past: int, import_kw: float, fee: int) -> None:
    """Its reach in 3 is the 5 kWh it bought and 4 intervals of import (7 or 9 kWh): whatever it posts beyond
    that, its claim is the claim of a post of exactly its reach, which is at most its real day's."""
    buyer = capped_buyer(import_kw)
    reach = round((5 + 4 * import_kw) * 1000)
    claim = sale_in_3(reach + past, buyer, fee)
    assert claim == sale_in_3(reach, buyer, fee)
    assert claim.gain <= claim_from(buyer, 1.0, dataclasses.replace(bought(5.0, ()), fee=fee)).gain


def test_the_bisection_is_bounded(dispatches: list[tuple[float, ...]]) -> None:
    """One dispatch a step, ⌈log2 n⌉ steps at most for the largest position outside of n Wh, never more than
    REACH_STEPS: its committed day, its held day with all of its post, then the steps."""
    sale_in_3(7_001)
    assert len(dispatches) == 2 + 13 and dispatches[1][3] == 7.001 and dispatches[-1][3] == 7.0
    dispatches.clear()
    far = sale_in_3(10**8)  # 100 MWh: n = 2^16 shares of 1,526 Wh each
    assert len(dispatches) == 2 + claim_code.REACH_STEPS
    assert 0 < far.gain <= 200_000  # a share of 6,104 Wh (4/65536): what it reaches, to the share
    assert claim_code.REACH_STEPS == 16


def test_a_held_day_in_its_reach_is_unchanged(
    dispatches: list[tuple[float, ...]], caplog: pytest.LogCaptureFixture
) -> None:
    """Held in full where it has a schedule: no step, nothing logged, L13's figure (6.5 kWh sold held: 1.5 kWh
    imported it would have bought, 0.15)."""
    caplog.set_level(logging.WARNING, "peergrid.edge.uplift")
    assert sale_in_3(6_500).gain == 150_000
    assert len(dispatches) == 2 and not caplog.records


def test_no_share_in_its_reach_claims_its_real_days_gain(
    dispatches: list[tuple[float, ...]], caplog: pytest.LogCaptureFixture
) -> None:
    """Without any import and an empty battery at the start, a sale held in interval 0 has no schedule for any
    share of it (1 Wh is beyond it): the claim is still made, its real day's gain (5 kWh bought at 0.20 it can
    only feed in at 0.05: 0.75), logged."""
    caplog.set_level(logging.WARNING, "peergrid.edge.uplift")
    buyer = capped_buyer(0.0)
    claim = claim_from(buyer, 1.0, bought(5.0, (5_000, -10_000, 0, 0)))
    assert claim.gain == 750_000 == claim_from(buyer, 1.0, bought(5.0, ())).gain
    # its committed day, all of its post held, 12 steps down to 1 Wh; the real day's claim: its committed day
    assert len(dispatches) == 1 + 1 + 12 + 1
    (record,) = [r.getMessage() for r in caplog.records]
    assert "nor does any share of them" in record and "0.750000" in record and "infeasible" in record


def test_a_deviation_without_schedule_holds_what_its_rules_reach(caplog: pytest.LogCaptureFixture) -> None:
    """A cap of 0.15 below the closing 0.20 where it bought: its held day delivers 7 kWh in 3 (the 5 it bought
    and 2 imported), but its deviation may buy nothing inside its window, so only 2 kWh are in its deviation's
    reach. It holds 2/7 of its post (each step its dispatch and deviation) and claims what a post of 2 kWh
    does: the day it bought 5 kWh and feeds in 3 (0.29) against importing 2 for the sale (0.04): 0.25.
    Before: the real day's 0.75."""
    caplog.set_level(logging.WARNING, "peergrid.edge.uplift")
    buyer = dataclasses.replace(capped_buyer(), rules=ContractRules(max_quantity_kwh=20.0, cap_price=0.15))
    claim = sale_in_3(7_000, buyer)
    assert claim.gain == 250_000 == sale_in_3(2_000, buyer).gain
    assert claim_from(buyer, 1.0, bought(5.0, ())).gain == 750_000
    (record,) = [r.getMessage() for r in caplog.records]
    assert "deviation on its held day has no schedule" in record and "(2000/7000)" in record
