"""The peer prices the trading agent's day is planned on with `market.forecast` "market" (split from
`guard.py`, whose budget and curves plan on them).

Promises: `market_forecast` gives the day-ahead session's final prices where it completed, else the latest
agreed price on the MGMC chain within a day's intervals before t (flat over the rest of the day;
`FORECAST_LOOKBACK_H`), else None (no forecast: the plan does not lean on peers and the guard holds it against
the conventional day only). Every MGMC derives the same from its own replica; `forecast_for` counts only
trades between anonyms on a chain that enrols them (`anonym_trades`: a node key's trade is an MGMC trading
with itself) and holds each interval's price within the MG's own [feed-in, retail + premium]
(`within_bounds`: never its trade outside). Pure apart from the chain state it is given; never reads clocks
or I/O. `forecast_for` takes the chain's interval t and reads the MG's model at t's profile index
(`interval_plan.profile_index`), to t's day's end; `within_bounds` takes that profile index.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from peergrid_controller.model import Microgrid
from peergrid_edge import interval_plan
from peergrid_edge.chain_book import previous_price
from peergrid_ledger import keyspace as ks
from peergrid_ledger import query

NANO = 1e9  # the exchange's prices are nano-currency per kWh

FORECAST_LOOKBACK_H = 24.0
"""How far back the forecast looks for the latest agreed price: a day of the scenario's intervals. A price
older than the day it would be planned over says nothing of it, and the scan stays bounded on a long chain
(before, it read every interval back to 0 on each forecast: on a 2,000-interval chain whose only trades were
in interval 0, 5.4 ms a forecast, 7.2 s over the day's 1,999; E23)."""


def lookback_intervals(dt: float) -> int:
    """The intervals of `FORECAST_LOOKBACK_H` at `dt` hours an interval (at least one)."""
    return max(1, math.ceil(FORECAST_LOOKBACK_H / dt - 1e-9))


def market_forecast(
    session_prices: Sequence[int] | None,
    state: Any,
    t: int,
    intervals: int,
    counted: Callable[[dict[str, Any]], bool] | None = None,
    lookback: int | None = None,
) -> list[float] | None:
    """Expected peer prices (currency per kWh) for chain intervals t .. `intervals` - 1 (t's day's end, the agent's
    `interval_plan.day_end`): the completed day-ahead
    session's final prices (one per interval of the day; a clean session's general book first), else the
    latest interval before t, and at most `lookback` before it (None: back to interval 0), with agreed trades
    on the chain, its price held flat, else None. `counted`: which agreed trades count (`anonym_trades`; None:
    all, `previous_price`'s figure)."""
    if session_prices is not None and len(session_prices) >= intervals:
        return [p / NANO for p in session_prices[t:intervals]]
    oldest = 0 if lookback is None else max(0, t - lookback)  # the earliest interval read
    for k in range(t, oldest, -1):  # `previous_price(k)` is interval k - 1's
        price = previous_price(state, k, counted)
        if price is not None:
            return [price] * (intervals - t)
    return None


def anonym_trades(genesis: Any, state: Any) -> Callable[[dict[str, Any]], bool] | None:
    """On an MGMC chain whose genesis enrols anonyms, only a trade between two anonyms counts for the
    forecast: every honest MGMC trades under its anonym there, so a trade with an MGMC's node key (role
    mgmc) is one MGMC trading with itself at a price of its choosing (review17 K-B: the contract takes it
    where settle_by_both is off). None (every trade counts) on a chain that enrols none: its MGMCs trade
    under their node keys. Roles are read off the state, so an anonym enrolled since genesis counts too."""
    if not any(ks.ROLE_ANONYM in account.roles for account in genesis.accounts):
        return None

    def anonym(key: bytes) -> bool:
        account = query.account(state, key)
        return account is not None and ks.ROLE_ANONYM in account.roles

    return lambda trade: anonym(trade["seller"]) and anonym(trade["buyer"])


def forecast_for(agent: Any, t: int) -> list[float] | None:
    """`market_forecast` for the trading agent's interval t where its `market.forecast` is "market" (its
    completed day-ahead session's prices, else its replica's MGMC chain: trades between anonyms only where
    the chain enrols them, `anonym_trades`, within a day's intervals before t, `lookback_intervals` of its
    `dt`), each interval's price held within the MG's own bounds (`within_bounds`); None otherwise. A test's
    stand-in settings that do not name the field plan without one, as before."""
    # a test's stand-in agent may have no settings, or stand-in settings without the field (`guard._setting`)
    if getattr(getattr(agent, "s", None), "forecast", "none") != "market":
        return None
    session = agent.dayahead.prices if agent.dayahead is not None and agent.dayahead.completed else None
    state = agent.ledger.state("mgmc")
    replicas = getattr(agent.ledger, "replicas", {})  # a test's stand-in replica may have none: all count
    counted = anonym_trades(replicas["mgmc"].app.genesis, state) if "mgmc" in replicas else None
    lookback = lookback_intervals(agent.dt)
    n = agent.scenario.intervals
    forecast = market_forecast(session, state, t, interval_plan.day_end(t, n), counted, lookback)
    premium = max(m.rules.clean_premium for m in agent.scenario.microgrids)  # the feeder's, as the curve's
    if forecast is None:
        return None
    return within_bounds(forecast, agent.mg, interval_plan.profile_index(t, n), premium)


def within_bounds(forecast: Sequence[float], mg: Microgrid, t: int, premium: float) -> list[float]:
    """The forecast for profile indices t on, each price held within the MG's own bounds of its interval, [feed-in,
    retail + the feeder's clean premium] (`interval_curve`'s; `chain_book.opening_price` holds the same
    figure so): a price outside them can never be this MG's P2P trade. Without it one MGMC trading with
    itself at any price (its node key and its anonym, on a chain that does not bind trades to anonyms) set
    every honest MG's forecast, and they withheld supply to sell "later" at it (review17 K-B)."""
    return [min(max(price, mg.tariff.feed_in[t + i]), mg.tariff.retail[t + i] + premium)
            for i, price in enumerate(forecast)]  # fmt: skip
