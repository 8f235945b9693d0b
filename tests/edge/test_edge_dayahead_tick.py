"""The edge agent judges a price's sign on the exchange contract's tick by the contract's one exact
conversion (`exchange.micro_per_wh`, a half tick to the even one), never through a float (review7 F4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_edge_dayahead_session import CONFIG, free_day, trading_key

from peergrid_controller.dayexchange import Book
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.exchange_io import SessionFailed
from peergrid_ledger.contracts import exchange

SCENARIO = free_day(2, 4)


def near_converged_agent(price_nano: int) -> DayAheadAgent:
    """An agent whose book is within `rules_within_kwh` with a sale held in interval 0 at `price_nano`."""
    mg = SCENARIO.microgrids[0]
    members = [trading_key(m.name).public for m in SCENARIO.microgrids]
    agent = DayAheadAgent(
        None, trading_key(mg.name), mg, SCENARIO.interval_hours, members, "s", config=CONFIG
    )  # type: ignore[arg-type]
    book = Book(CONFIG, [price_nano] + [0] * (mg.intervals - 1), 2)
    book.take([(1000,) + (0,) * (mg.intervals - 1), (-1000,) + (0,) * (mg.intervals - 1)])
    book.primal = book.dual = 0.0
    agent.book = book
    return agent


# around zero and at the exact half ticks (0.5 micro per Wh = 500,000 nano per kWh) where a float round differs
PRICES = st.one_of(
    st.integers(-5_000_000, 5_000_000),
    st.integers(-20, 20).map(lambda k: k * 1_000_000 + 500_000),
)


@given(PRICES)
def test_a_sale_below_zero_stops_the_agent_exactly_when_the_contracts_tick_is_below_zero(price: int) -> None:
    agent = near_converged_agent(price)
    if exchange.micro_per_wh(price) < 0:
        with pytest.raises(SessionFailed, match="below zero"):
            agent._rules_unjudged()
    else:
        agent._rules_unjudged()


def test_minus_half_a_tick_is_tick_zero_on_the_chain_and_so_no_judgement() -> None:
    assert exchange.micro_per_wh(-500_000) == 0
    near_converged_agent(-500_000)._rules_unjudged()
    with pytest.raises(SessionFailed):
        near_converged_agent(-1_500_000)._rules_unjudged()
