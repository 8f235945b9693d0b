"""review13 F3: with genesis `settle_tolerance_permille` two statements agree only within the lower of the
absolute tolerance and that ‰ of the trade, and on a priced trade none of the undelivered energy may be left
unowned (`market_closing._tolerances`): a buyer can no longer take a small trade for nothing, nor waive the
compensation, by under-stating within an absolute allowance."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import make_genesis
from test_settle_both import BUYER, SELLER, Clock, both_chain, trades_of
from test_settle_compensation import priced

from peergrid_ledger import query
from peergrid_ledger.genesis import Genesis, GenesisError, Params


def _run(buyer_says: int, seller: tuple[int, int] = (400, 0), buyer_short: int = 0, **params: int) -> str:
    """The 400 Wh priced trade; the seller states `seller` (delivered, short), the buyer `buyer_says`."""
    c = both_chain(**params)
    clock = Clock(c)
    priced(c, clock)
    tid, _ = trades_of(c, clock)
    assert clock.send(SELLER, {"trade": tid, "delivered": seller[0], "short": seller[1]}).ok
    assert clock.send(BUYER, {"trade": tid, "delivered": buyer_says, "short": buyer_short}).ok
    status = query.settlement(c.state, tid)
    assert status is not None
    return str(status["state"])


def test_a_buyer_cannot_take_a_small_trade_within_the_absolute_tolerance() -> None:
    assert _run(0, tolerance=500) == "settled"  # today's rule: 0 of 400 agrees within 500
    assert _run(0, tolerance=500, settle_tolerance_permille=20) == "disputed"  # 2 % of 400: 8 Wh


def test_meters_within_the_relative_cap_still_agree() -> None:
    # 400 Wh at 20 ‰: 8 Wh; the seller owns what its meter says it fell short
    assert (
        _run(393, seller=(400, 0), buyer_short=0, tolerance=500, settle_tolerance_permille=20) == "disputed"
    )
    assert _run(392, seller=(392, 8), tolerance=500, settle_tolerance_permille=20) == "settled"
    assert _run(400, seller=(392, 8), tolerance=500, settle_tolerance_permille=20) == "settled"  # 8 apart


def test_unowned_energy_is_exact_on_a_priced_trade() -> None:
    # both meters say 398, nobody owns the 2 Wh: today's 5 Wh tolerance waives it, the relative rule does not
    assert _run(398, seller=(398, 0), tolerance=5) == "settled"
    assert _run(398, seller=(398, 0), tolerance=5, settle_tolerance_permille=100) == "disputed"
    assert _run(398, seller=(398, 2), tolerance=5, settle_tolerance_permille=100) == "settled"


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 400), st.integers(0, 1000))
def test_an_understatement_the_seller_does_not_share_agrees_only_within_the_cap(
    said: int, permille: int
) -> None:
    state = _run(said, tolerance=500, settle_tolerance_permille=permille or 1)
    # the seller owns no shortfall: any under-statement leaves energy nobody owns, however close the meters
    assert (state == "settled") == (said == 400)


def test_the_permille_is_a_late_settle_param() -> None:
    both = {"settle_by_both": 1, "settle_interval_ms": 900_000}
    assert "settle_tolerance_permille" not in make_genesis(params=Params(**both)).to_value()["params"]
    with pytest.raises(GenesisError, match="settle_tolerance_permille: only with settle_by_both"):
        Params(settle_tolerance_permille=5)
    with pytest.raises(GenesisError, match="settle_tolerance_permille: expected 0 to 1000"):
        Params(**both, settle_tolerance_permille=1001)
    set_ = make_genesis(params=Params(**both, settle_tolerance_permille=20))
    assert Genesis.decode(set_.encode()).params.settle_tolerance_permille == 20
