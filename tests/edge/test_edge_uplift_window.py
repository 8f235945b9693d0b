"""An MGMC's make-whole claim deviates only in the chain intervals it trades (L8's finding).

A lab MGMC takes part in a run of the day inside the session (the session covers the day from interval 0, the
MGMC trades 36-37): over the whole session its deviation gain credited it for "trading at the closing prices"
where it never could (mg1 claimed 318.45 with trades in 2 of 96 intervals). A hand-checkable day on a stub chain
state: one PV MG, 10 kW in each of 4 one-hour intervals, no load, feed-in 0.05, closing price 0.20 everywhere,
committed to sell 4 kWh in chain interval 1. Deviating alone it would sell all its PV at 0.20 instead of 0.05:
6 kWh × 0.15 in its traded interval, 10 kWh × 0.15 in each other interval it may trade in.
"""

from __future__ import annotations

from typing import Any

import pytest

from peergrid_controller.model import Load, Microgrid, PvArray, Tariff
from peergrid_edge import dayahead_uplift
from peergrid_edge.dayahead_uplift import claim_for

ME, PEER = b"\x01" * 32, b"\x02" * 32
NANO = 10**9  # nano-currency per currency unit (the session's prices: nano per kWh)


def solo(n: int = 4) -> Microgrid:
    return Microgrid(
        "solo", Tariff((0.30,) * n, (0.05,) * n), pv=(PvArray("pv", (10.0,) * n),),
        loads=(Load("none", (0.0,) * n, (0.0,) * n),),
    )  # fmt: skip


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A stub replica: session 'S' of 4 intervals from chain interval 0 at 0.20, the trades in `chain`."""
    record = {"intervals": 4, "first_interval": 0, "prices": [NANO // 5] * 4, "members": [ME, PEER]}
    held: dict[str, Any] = {"record": record, "trades": [(1, 4000)]}
    monkeypatch.setattr(
        dayahead_uplift.exchange_state, "session", lambda _s, name: record if name == "S" else None
    )
    monkeypatch.setattr(dayahead_uplift.uplift, "unbounded_interval", lambda *_a: None)
    monkeypatch.setattr(dayahead_uplift.uplift, "gain_bound", lambda *_a: 10**15)  # far above any gain here
    monkeypatch.setattr(dayahead_uplift.exchange_state, "trading_window", lambda *_a: None)  # none stated

    def trades(_state: Any, _record: Any, _name: str) -> list[dict[str, Any]]:
        return [{"seller": ME, "buyer": PEER, "interval": k, "quantity": wh, "price": 200}
                for k, wh in held["trades"]]  # fmt: skip

    monkeypatch.setattr(dayahead_uplift.uplift, "session_trades", trades)
    return held


def test_a_window_inside_the_session_claims_the_deviation_there_alone(chain: dict[str, Any]) -> None:
    whole = claim_for(solo(), 1.0, None, "S", ME)
    assert whole.gain == 5_400_000  # 6 × 0.15 + 3 × 10 × 0.15: intervals it never traded in count
    mine = claim_for(solo(), 1.0, None, "S", ME, window=range(1, 3))  # chain intervals 1-2, mid-session
    assert mine.deviation_gain == pytest.approx(6 * 0.15 + 10 * 0.15, abs=1e-6)
    assert mine.gain == 2_400_000
    # the surplus is the whole day's either way: outside the window both days are the conventional one
    assert mine.surplus == whole.surplus == 600_000
    assert mine.conventional == pytest.approx(-2.0) and mine.day_cost == pytest.approx(-2.6)


def test_a_window_covering_the_session_is_the_whole_days_claim(chain: dict[str, Any]) -> None:
    assert claim_for(solo(), 1.0, None, "S", ME, window=range(0, 96)) == claim_for(solo(), 1.0, None, "S", ME)


def test_an_interval_it_holds_a_trade_in_counts_even_outside_its_window(chain: dict[str, Any]) -> None:
    """A trade outside the window (it should not exist) is never left out of what it could deviate from."""
    claim = claim_for(solo(), 1.0, None, "S", ME, window=range(2, 3))
    assert claim.gain == 2_400_000  # interval 1 (its trade: 6 × 0.15) and 2 (10 × 0.15)
    assert claim_for(solo(), 1.0, None, "S", ME, window=range(5, 9)).gain == 900_000  # its trade's alone


def test_a_window_that_holds_no_interval_of_the_session_and_no_trade_claims_no_gain(
    chain: dict[str, Any],
) -> None:
    chain["trades"] = []
    claim = claim_for(solo(), 1.0, None, "S", ME, window=range(36, 40))
    assert claim.gain == 0 and claim.deviation_gain == pytest.approx(0.0, abs=1e-6)


def test_a_gain_over_the_chains_bound_is_claimed_at_it_and_an_unbounded_one_at_zero(
    chain: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review18 C-2: the chain refuses a gain above its bound whole, so the claim is capped at the bound (0 on
    a chain whose DSO priced nothing and that names no `uplift_max_spread`); the surplus is claimed as it is.
    A member without a max_quantity rule claims 0 whatever the bound (review17 U-C)."""
    whole = claim_for(solo(), 1.0, None, "S", ME)
    for bound in (1_000_000, 0):
        monkeypatch.setattr(dayahead_uplift.uplift, "gain_bound", lambda *_a, b=bound: b)
        capped = claim_for(solo(), 1.0, None, "S", ME)
        assert (capped.gain, capped.bound, capped.surplus) == (bound, bound, whole.surplus)
    monkeypatch.setattr(dayahead_uplift.uplift, "gain_bound", lambda *_a: 10**15)
    monkeypatch.setattr(dayahead_uplift.uplift, "unbounded_interval", lambda *_a: 0)
    assert claim_for(solo(), 1.0, None, "S", ME).gain == 0
