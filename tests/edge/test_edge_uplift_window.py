"""An MGMC's make-whole claim counts only the session's intervals in its own window (U3).

A lab MGMC trades only its window of the day (first_interval .. last_interval); the deviation gain over the
whole session credited it for "trading at the closing prices" where it never could (L8: mg1 claimed 318.45
with trades only in intervals 36-37). A hand-checkable day on a stub chain state: one PV MG, 10 kW in each of
4 one-hour intervals, no load, feed-in 0.05, closing price 0.20 everywhere, committed to sell 4 kWh in the
first interval. Deviating alone it would sell all its PV at 0.20 instead of 0.05: 6 kWh × 0.15 in the first
interval and 10 kWh × 0.15 in each other one of its day.
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
    """A stub replica: session 'S' of 4 intervals from chain interval 36 at 0.20, the trades in `chain`."""
    record = {"intervals": 4, "first_interval": 36, "prices": [NANO // 5] * 4, "members": [ME, PEER]}
    held: dict[str, Any] = {"record": record, "trades": [(36, 4000)]}
    monkeypatch.setattr(
        dayahead_uplift.exchange_state, "session", lambda _s, name: record if name == "S" else None
    )
    monkeypatch.setattr(dayahead_uplift.uplift, "unbounded_interval", lambda *_a: None)

    def trades(_state: Any, _record: Any, _name: str) -> list[dict[str, Any]]:
        return [{"seller": ME, "buyer": PEER, "interval": k, "quantity": wh, "price": 200}
                for k, wh in held["trades"]]  # fmt: skip

    monkeypatch.setattr(dayahead_uplift.uplift, "session_trades", trades)
    return held


def test_a_two_interval_window_claims_its_deviation_over_those_two_alone(chain: dict[str, Any]) -> None:
    whole = claim_for(solo(), 1.0, None, "S", ME)
    assert whole.gain == 5_400_000  # 6 × 0.15 + 3 × 10 × 0.15: the flaw, intervals it never traded in
    mine = claim_for(solo(), 1.0, None, "S", ME, window=range(36, 38))
    assert mine.deviation_gain == pytest.approx(6 * 0.15 + 10 * 0.15, abs=1e-6)
    assert mine.gain == 2_400_000
    # the surplus has no such flaw: outside the window both days are the same (no storage here)
    assert mine.surplus == whole.surplus == 600_000  # conventional -2.0 (-1.0) less committed -2.6 (-1.6)
    assert mine.conventional == pytest.approx(-1.0) and mine.day_cost == pytest.approx(-1.6)


def test_a_window_covering_the_session_is_the_whole_days_claim(chain: dict[str, Any]) -> None:
    whole = claim_for(solo(), 1.0, None, "S", ME)
    assert claim_for(solo(), 1.0, None, "S", ME, window=range(36, 36 + 96)) == whole


def test_a_window_short_of_a_trade_still_counts_that_trade(chain: dict[str, Any]) -> None:
    """A trade past the window (it should not exist) is never dropped from its committed day: the claim
    counts through it."""
    chain["trades"] = [(36, 4000), (38, 10_000)]
    claim = claim_for(solo(), 1.0, None, "S", ME, window=range(36, 37))
    assert claim.gain == 2_400_000  # intervals 36-38: 6 × 0.15 + 10 × 0.15 + 0 (it sold all at 0.20)


@pytest.mark.parametrize("window", [range(37, 39), range(36, 36), range(36, 40, 2)])
def test_a_window_not_a_run_from_the_sessions_first_interval_is_a_clear_error(
    chain: dict[str, Any], window: range
) -> None:
    with pytest.raises(ValueError, match="not a run of the session's intervals from its first, 36"):
        claim_for(solo(), 1.0, None, "S", ME, window=window)
