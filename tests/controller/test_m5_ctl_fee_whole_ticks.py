"""The controller takes the fee the chain takes, no other (issue #7, sub-tick fees): `exchange_fee.check` is the
chain's `market_fee.check_fee`, so `DayAheadConfig`, `peergrid-market simulate --exchange-fee` and a member's
session fee accept exactly the multiples of the tick (10^6 nano/kWh) in [0, 10^7]."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_controller import exchange_fee
from peergrid_controller.dayexchange import DayAheadConfig, DayAheadError
from peergrid_ledger.contracts import market_fee

TICK = 10**6
FEES = st.integers(0, 10).map(lambda ticks: ticks * TICK) | st.integers(-(10**8), 10**8)


@given(FEES)
def test_the_controller_takes_a_fee_exactly_when_the_chain_does(fee: int) -> None:
    takes = 0 <= fee <= market_fee.MAX_FEE and fee % TICK == 0
    try:
        market_fee.check_fee(fee)
    except ValueError as chain_says:
        assert not takes
        with pytest.raises(ValueError) as controller_says:
            exchange_fee.check(fee)
        assert str(controller_says.value) == str(chain_says)
        with pytest.raises(
            DayAheadError, match=f"exchange_fee must be a whole number of ticks .* got {fee}$"
        ):
            DayAheadConfig(exchange_fee=fee)
    else:
        assert takes and exchange_fee.check(fee) == DayAheadConfig(exchange_fee=fee).exchange_fee == fee


def test_the_message_names_the_value_and_what_is_allowed() -> None:
    with pytest.raises(DayAheadError) as refused:
        DayAheadConfig(exchange_fee=250_000)
    assert str(refused.value) == (
        "exchange_fee must be a whole number of ticks (multiples of 1,000,000 nano-currency per kWh, 1 micro-unit"
        " per Wh) in [0, 10,000,000], got 250000"
    )
