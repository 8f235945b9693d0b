"""An MGMC's make-whole claim is the lesser of its real day's gain and its held day's (L13, review30 R30-1/2/3/8).

b141462 (L12) valued the claim of an MG whose intervals couple on a held day: outside its trading window both
days keep the positions it answered the session with (its stepped post). That removed mg5's 8.02 on the lab's
day, but those positions bind nothing (the chain refuses trades outside a stated window), so a post the MG never
makes could raise its claim (R30-1), and a held day out of the MG's reach left no claim at all (R30-3). The claim
is now min(held, real): its real day (nothing traded outside its window) bounds it, and where the held day has
no schedule it holds the largest share of its positions outside that has one (L14, review31 R31-1; the real day's
gain where no share has: tests/edge/test_l14_claim_reach.py), logged. Since M1 an MGMC that states a window
answers nothing outside it, so its held day is its real day and both give what the market denied (R30-2's
root fix; tests/edge/test_m1_window_session.py has the sessions). Hand days of tests/edge/test_edge_fee_claim.py
(1-hour intervals, retail 0.30, feed-in 0.05, closing prices 0.20 0.20 0.20 0.28, window chain intervals 1-2).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_edge_fee_claim import FEE, NAME, PRICES, SOLO, WINDOW, cleared, figures, store

from peergrid_controller.dayexchange import DayAheadConfig, answer
from peergrid_controller.dayjudge import OwnRules
from peergrid_controller.daymodel import DayModel
from peergrid_controller.market import Trade
from peergrid_controller.model import Battery, ContractRules, Genset, Load, Microgrid, Tariff
from peergrid_edge.dayahead_uplift import ClaimFigures, claim_for, claim_from

HONEST = (0, 14_000, 0, 0)  # Wh: it sells its 14 kWh of PV in interval 1 and posts nothing outside 1-2
MADE_UP = (0, 14_000, 0, 10_000)  # the same and a sale of 10 kWh in interval 3 it never makes (outside 1-2)


def sold(kwh: float, fee: int, positions: tuple[int, ...]) -> ClaimFigures:
    return dataclasses.replace(figures(kwh, fee, positions), bound=6_000_000)  # the chain's: 20 x 0.15 x 2


@pytest.mark.parametrize("fee", [0, FEE], ids=["fee0", "fee1e6"])
def test_a_post_outside_its_window_raises_no_claim(fee: int) -> None:
    """R30-1: the store sells its 14 kWh at 0.20 in interval 1, all it can sell inside its window, and clears
    all of it: nothing was denied, its real day is its best there. With a made-up sale of 10 kWh at 0.28 in
    interval 3 on its post, the held day alone claimed 10 x (0.28 - 0.20) (+ the fee: 1,000,000 / 1,010,000);
    the real day's gain, 0, bounds it."""
    honest = claim_from(store(), 1.0, sold(14.0, fee, HONEST))
    claim = claim_from(store(), 1.0, sold(14.0, fee, MADE_UP))
    assert honest.gain == claim.gain == 0 and abs(claim.deviation_gain) < 1e-6, claim
    assert claim.day_cost == honest.day_cost == pytest.approx(-2.8 + fee * 14 / 10**9, abs=1e-9)


def test_a_made_up_post_read_off_a_real_chain_claims_nothing() -> None:
    """R30-1 on a LocalChain: SOLO posts MADE_UP, accepts its 14 kWh stating its window 1-2, the clear; its
    claim reads the post off the chain (before: 1,000,000, which `uplift.claim` takes under its bound)."""
    claim = claim_for(store(), 1.0, cleared(14_000, MADE_UP).state, NAME, SOLO.public)
    assert claim.gain == 0 and abs(claim.deviation_gain) < 1e-6, claim


@settings(max_examples=25, deadline=None)
@given(
    before=st.integers(-20_000, 20_000),
    after=st.integers(-20_000, 20_000),
    cleared_kwh=st.sampled_from([2.0, 4.0, 14.0]),
    fee=st.sampled_from([0, FEE]),
)
def test_no_post_outside_its_window_claims_more_than_its_real_day(
    before: int, after: int, cleared_kwh: float, fee: int
) -> None:
    """Whatever it posts outside its window (interval 0 and 3, within its max_quantity; some beyond its reach:
    its held day then has no schedule), its claim is at most its real day's (positions () hold nothing)."""
    real = claim_from(store(), 1.0, sold(cleared_kwh, fee, ()))
    claim = claim_from(store(), 1.0, sold(cleared_kwh, fee, (before, int(cleared_kwh * 1000), 0, after)))
    assert claim.gain <= real.gain and claim.day_cost == real.day_cost


def capped_buyer(max_import_kw: float = 0.5) -> Microgrid:
    """A 10-kWh lossless battery, no PV, no load; its DSO import capped at `max_import_kw`."""
    battery = Battery(
        "b", 10.0, 10.0, 10.0, 1.0, 1.0, soc_min=0.0, soc_max=1.0, soc_initial=0.0, wear_cost=0.0
    )
    return Microgrid("buyer", Tariff((0.30,) * 4, (0.05,) * 4, max_import_kw=max_import_kw), batteries=(battery,),
                     loads=(Load("none", (0.0,) * 4, (0.0,) * 4),), rules=ContractRules(max_quantity_kwh=20.0))  # fmt: skip


def bought(kwh: float, positions: tuple[int, ...], n: int = 4) -> ClaimFigures:
    trades = tuple((Trade(t, "peer", "buyer", kwh, 0.20),) if t == 1 else () for t in range(n))
    return ClaimFigures("S", 0, PRICES, (), trades, WINDOW, None, 10**12, 0, positions)


def test_a_held_day_out_of_reach_holds_what_it_reaches(caplog: pytest.LogCaptureFixture) -> None:
    """R30-3: the buyer answered 'buy 10 kWh in 1, sell 10 in 3' and was rationed to 5. Its held day must
    deliver 10 kWh in 3 with at most 7 in reach (its 5 bought and 0.5 kWh imported each interval): no schedule.
    Before 5330471 claim_from raised ScheduleError and UpliftStage.claim posted nothing; 5330471 claimed its
    real day's gain (5 kWh bought at 0.20 it can only feed in at 0.05: 0.75), the figure L12's held day exists
    to remove, and one Wh past its reach jumped to it from 0.2 (review31 R31-1). Since L14 its held day holds
    7/10 of its post, the most it reaches (a sale of 7 kWh in 3): the rationing cost it 2 kWh imported at 0.30
    it would have bought at 0.20, 0.2, the figure of a post of exactly 7 kWh. Logged with why and the share."""
    caplog.set_level(logging.WARNING, "peergrid.edge.uplift")
    claim = claim_from(capped_buyer(), 1.0, bought(5.0, (0, -10_000, 0, 10_000)))
    assert claim.gain == 200_000 and claim.day_cost == pytest.approx(0.75, abs=1e-9)
    assert claim.gain == claim_from(capped_buyer(), 1.0, bought(5.0, (0, -10_000, 0, 7_000))).gain
    assert claim_from(capped_buyer(), 1.0, bought(5.0, ())).gain == 750_000  # its real day's, the bound
    (record,) = [r for r in caplog.records if "no schedule" in r.getMessage()]
    assert (
        "S" in record.getMessage()
        and "infeasible" in record.getMessage()
        and "0.700000 of them (7000/10000)" in record.getMessage()
    )


def answered(mg: Microgrid, prices: tuple[float, ...], window: range | None) -> tuple[int, ...]:
    """The MG's day-ahead answer (Wh) at `prices` as its MGMC posts it, stating `window` or none: its day solved
    with nothing traded outside the window (`OwnRules`' range there [0, 0]; `allocate` and the edge alike)."""
    cfg = DayAheadConfig()
    rules = OwnRules(mg, 1.0, len(prices), cfg.fee_margin, cfg.resolution_kwh, window=window)
    return answer(DayModel(mg, 1.0), prices, rules.bounds(), rules.fees())[1]


def both_days(mg: Microgrid, day: ClaimFigures) -> tuple[int, int]:
    """Its claim on its held day's rule (its answer held outside its window) and on its real day's alone."""
    return claim_from(mg, 1.0, day).gain, claim_from(mg, 1.0, dataclasses.replace(day, positions=())).gain


def test_an_answer_within_its_window_is_paid_what_the_market_denied_on_both_days() -> None:
    """R30-2, fixed at its root (M1): an MGMC that states a window answers the session as a day that trades
    only inside it, so its answer holds nothing outside, its held day is its real day, and both rules give one
    figure: what rationing inside the window cost it. Before, answering the whole session, neither day
    isolated it (the pin this test replaces): (a) the battery buyer (import uncapped) answered 'buy 10 in 1,
    sell 10 in 3', was rationed to 5, and was paid 0.5 (held) where rationing saved it 0.75 (real); (b) the
    genset whose minimum up time crosses the window's edge answered 'sell 10 in 2 and 10 in 3' and, 5 of 10
    cleared in 2, was paid 1.75 (held; real 2.25) on a real day that cost it 0.25."""
    buyer = capped_buyer(max_import_kw=math.inf)
    assert answered(buyer, PRICES, None) == (0, 0, -10_000, 10_000)  # its whole day's: arbitrage across 3
    assert answered(buyer, PRICES, WINDOW) == (0, 0, 0, 0)  # (a) nothing to buy for a sale it cannot make
    # a buyer with a 10-kWh load in interval 3 fills its battery inside the window at 0.20 (whole day alike);
    # rationed to 5 of 10 it imports 5 at 0.30: both days 5 x (0.30 - 0.20)
    load = dataclasses.replace(buyer, loads=(Load("load", (0.0, 0.0, 0.0, 10.0), (0.0,) * 4),))
    posted = answered(load, PRICES, WINDOW)
    assert posted == (0, 0, -10_000, 0)
    half = tuple(
        (Trade(t, "peer", "buyer", -q / 2000, PRICES[t]),) if q else () for t, q in enumerate(posted)
    )
    assert both_days(load, ClaimFigures("S", 0, PRICES, (), half, WINDOW, None, 10**12, 0, posted)) == (
        500_000,
        500_000,
    )
    # (b) the 10-kW genset (fuel 0.10/kWh, min up 2) answers its window, 10 kWh in 1 and in 2, nothing in 3;
    # 5 of 10 cleared in 2 it still runs at 10 kW there and feeds in 5: both days 5 x (0.20 - 0.05)
    n, prices = 5, (0.20, 0.20, 0.20, 0.28, 0.10)
    gen = Microgrid("gen", Tariff((0.30,) * n, (0.05,) * n),
                    gensets=(Genset("g", 10.0, 10.0, (), min_kw_cost_per_h=1.0, min_up_intervals=2),),
                    loads=(Load("none", (0.0,) * n, (0.0,) * n),), rules=ContractRules(max_quantity_kwh=20.0))  # fmt: skip
    assert answered(gen, prices, None) == (10_000, 10_000, 10_000, 10_000, 0)
    posted = answered(gen, prices, WINDOW)
    assert posted == (0, 10_000, 10_000, 0, 0)
    cleared = tuple(
        (Trade(t, "gen", "peer", {1: 10.0, 2: 5.0}[t], 0.20),) if t in (1, 2) else () for t in range(n)
    )
    day = ClaimFigures("S", 0, prices, (), cleared, WINDOW, None, 10**12, 0, posted)
    assert both_days(gen, day) == (750_000, 750_000)
    assert claim_from(gen, 1.0, day).day_cost == pytest.approx(
        -1.25, abs=1e-9
    )  # 3.25 earned less 2.0 of fuel


def test_a_clean_session_claims_its_real_days_gain() -> None:
    """R30-8, documented: a clean session (two books) holds nothing (one book of positions cannot say which
    book a held sale is in, and `deviation_gains(held=)` refuses clean prices), so its claim is its real day's:
    the hand day's battery plan for interval 3 still shows as 10 x 0.15 denied, as on one book before
    b141462. The min cannot lower it: there is no held day to take the lesser of."""
    clean = dataclasses.replace(figures(4.0, 0), clean=PRICES)
    assert claim_from(store(), 1.0, clean).gain == 1_500_000
    assert claim_from(store(), 1.0, dataclasses.replace(clean, positions=())).gain == 1_500_000


def test_positions_all_zero_outside_its_window_solve_no_held_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """Since M1 an MGMC that states its window posts nothing outside it: its held day (zeros held outside) is its
    real day (nothing traded outside), so it is not solved again; the claim is the real day's gain."""
    import peergrid_edge.dayahead_uplift_claim as claim_module

    real = claim_from(capped_buyer(max_import_kw=math.inf), 1.0, bought(5.0, ()))
    assert real.gain == 750_000  # rationed: it answered 10 kWh in 1 and cleared 5
    monkeypatch.setattr(claim_module, "_held_gain", lambda *args: pytest.fail("the held day was solved"))
    zeros = claim_from(capped_buyer(max_import_kw=math.inf), 1.0, bought(5.0, (0, -10_000, 0, 0)))
    assert zeros.gain == real.gain and zeros.day_cost == real.day_cost
