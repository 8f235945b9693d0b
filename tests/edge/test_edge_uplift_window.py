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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid_controller.model import Load, Microgrid, PvArray, Tariff
from peergrid_edge import dayahead_uplift
from peergrid_edge.dayahead_uplift import claim_for
from peergrid_ledger.codec import encode
from peergrid_ledger.contracts import market
from peergrid_ledger.contracts.market_state import rules_key, tariff_key
from peergrid_ledger.contracts.uplift import gain_bound

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
    unbounded = claim_for(solo(), 1.0, None, "S", ME)
    assert (unbounded.gain, unbounded.bound, unbounded.surplus) == (0, None, whole.surplus)


class Store(dict[bytes, bytes]):
    """A state reader over a plain dict (`get` is dict's): the member's cover prices and rules."""


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_an_honest_claim_is_never_above_the_chains_bound(data: st.DataObject) -> None:
    """The bound's soundness on random days: a PV and load MG (no owner rule) whose chain rule covers its net
    (max_quantity = its largest |PV - load| in Wh), closing prices on the tick between its feed-in and retail
    (the DSO's cover prices), an IR sale of part of its surplus in one interval: its honest gain, uncapped, is
    at most `uplift.gain_bound` - so the edge's cap (review18 C-2) takes nothing from an MG whose rule covers its
    DERs, and `widest_spread` as the chain's spread bounds it too."""
    n = 4
    pv = data.draw(st.lists(st.integers(0, 10), min_size=n, max_size=n))
    load = data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    micro = data.draw(st.lists(st.integers(50, 300), min_size=n, max_size=n))  # micro-units per Wh
    mg = Microgrid(
        "solo", Tariff((0.30,) * n, (0.05,) * n), pv=(PvArray("pv", tuple(map(float, pv))),),
        loads=(Load("load", tuple(map(float, load)), (0.0,) * n),),
    )  # fmt: skip
    surplus = [t for t in range(n) if pv[t] > load[t]]
    sale = []
    if surplus:
        t = data.draw(st.sampled_from(surplus))
        sale = [(t, data.draw(st.integers(1, (pv[t] - load[t]) * 1000)))]
    record = {
        "intervals": n,
        "first_interval": 0,
        "prices": [m * 10**6 for m in micro],
        "members": [ME, PEER],
    }
    store = Store({tariff_key(ME, t): encode([300, 50]) for t in range(n)})
    quantity = max(max(abs(p - q) for p, q in zip(pv, load, strict=True)) * 1000, 1)
    store[rules_key(ME)] = encode([[0, {**market.NO_RULES, "max_quantity": quantity}]])
    trades = [
        {"seller": ME, "buyer": PEER, "interval": t, "quantity": wh, "price": micro[t]} for t, wh in sale
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dayahead_uplift.exchange_state, "session", lambda _s, _name: record)
        patch.setattr(dayahead_uplift.exchange_state, "trading_window", lambda *_a: None)
        patch.setattr(dayahead_uplift.uplift, "session_trades", lambda *_a: trades)
        patch.setattr(dayahead_uplift.uplift, "unbounded_interval", lambda *_a: None)
        patch.setattr(dayahead_uplift.uplift, "gain_bound", lambda *_a: 10**15)  # uncapped: the honest figure
        honest = claim_for(mg, 1.0, store, "S", ME)
    assert honest.gain <= gain_bound(store, record, ME)
    assert honest.gain <= gain_bound(Store({rules_key(ME): store[rules_key(ME)]}), record, ME, None, 250)
