"""The forecast the guarded agent plans on (`guard.forecast_for`) holds each interval's price within the MG's own
bounds [feed-in, retail + the feeder's clean premium] (review17 K-B): an MGMC that trades with itself at any
price (its node key offering, its anonym buying, on a chain that does not bind trades to anonyms) no longer
sets every honest MG's forecast beyond a price it could ever trade at, and on a chain that enrols anonyms its
node key's trade does not count at all; an honest forecast is unchanged."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from edge_helpers import pv_battery_schedule
from hypothesis import given
from hypothesis import strategies as st
from test_trader import traded_chain

from peergrid_controller.model import ContractRules, Microgrid, Tariff
from peergrid_edge import peer_forecast
from peergrid_edge.chain_bargaining import previous_price
from peergrid_edge.guard import forecast_for, lookback_intervals, market_forecast, within_bounds
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

N = 12
RETAIL = tuple(0.20 + 0.01 * k for k in range(N))  # bounds that differ per interval
FEED_IN = tuple(0.04 + 0.002 * k for k in range(N))


def priced_mg(premium: float = 0.0) -> Microgrid:
    mg, _ = pv_battery_schedule(N)
    return replace(mg, tariff=Tariff(RETAIL, FEED_IN), rules=replace(mg.rules, clean_premium=premium))


def agent(
    state: Any,
    mg: Microgrid,
    peer_premium: float = 0.0,
    forecast: str = "market",
    genesis: Any = None,
    dt: float = 0.25,
) -> SimpleNamespace:
    """A stand-in trading agent: the fields `forecast_for` reads (its settings, day-ahead stage, replica with
    its MGMC chain's genesis where given, MG and the feeder's scenario, whose largest clean premium is the
    curve's, and its interval's hours: 15 minutes, a day's lookback of 96 intervals, unless `dt`)."""
    peer = replace(mg, name="peer", rules=ContractRules(clean_premium=peer_premium))
    replicas = {} if genesis is None else {"mgmc": SimpleNamespace(app=SimpleNamespace(genesis=genesis))}
    return SimpleNamespace(
        s=SimpleNamespace(forecast=forecast), dayahead=None, mg=mg, dt=dt,
        ledger=SimpleNamespace(state=lambda role: state, replicas=replicas),
        scenario=SimpleNamespace(intervals=N, microgrids=(mg, peer)),
    )  # fmt: skip


def self_traded_chain(t: int) -> LocalChain:
    """R17's K-B: on a chain without settle_by_both an MGMC's node key (role mgmc) offers 10^7 Wh at 10^6
    micro-units per Wh and its own anonym buys it all; an honest seller's 6 kWh at 0.120 trade beside it."""
    authority, honest_s, honest_b, node, anon = (Keypair.generate() for _ in range(5))
    genesis = Genesis(chain="mgmc-k3", time=0, authorities=(authority.public,),
                      accounts=(*(Account(k.public, ("anonym",), balance=10**9)
                                  for k in (honest_s, honest_b, anon)),
                                Account(node.public, ("mgmc",), balance=0)),
                      contracts=("market",), params=Params(credit_limit=0))  # fmt: skip
    chain = LocalChain(genesis, sealer=authority)
    for key, kind, body in (
        (honest_s, "offer", {"interval": t, "round": 0, "price": 120, "quantity": 6000, "clean": True}),
        (node, "offer", {"interval": t, "round": 0, "price": 10**6, "quantity": 10**7, "clean": True}),
        (
            honest_b,
            "bid",
            {"interval": t, "round": 0, "demands": [{"seller": honest_s.public, "quantity": 6000}]},
        ),
        (anon, "bid", {"interval": t, "round": 0, "demands": [{"seller": node.public, "quantity": 10**7}]}),
        (honest_s, "trade", {"interval": t}),
    ):
        assert chain.sign_and_submit(key, kind, body).ok, kind
    chain.seal()
    return chain


def test_a_self_trade_at_any_price_moves_no_forecast_past_retail_plus_premium() -> None:
    chain = self_traded_chain(3)
    assert market_forecast(None, chain.state, 4, N) == pytest.approx([999.4] * (N - 4))  # unclipped
    mg = priced_mg()
    got = forecast_for(agent(chain.state, mg, peer_premium=0.03), 4)
    # each interval at its own retail + the feeder's premium (the peer's 0.03), not 999 per kWh
    assert got == pytest.approx([RETAIL[k] + 0.03 for k in range(4, N)])


def test_on_a_chain_that_enrols_anonyms_a_node_keys_trade_does_not_count() -> None:
    """Honest MGMCs trade under their anonyms there: the node key's trade with its own anonym is left out,
    and the forecast is the honest trade's 0.120 (within every interval's bounds)."""
    chain = self_traded_chain(3)
    got = forecast_for(agent(chain.state, priced_mg(), genesis=chain.genesis), 4)
    assert got == pytest.approx([0.120] * (N - 4))
    # the same trades on a chain whose genesis enrols no anonym (its MGMCs trade under their node keys): all
    # count, held within the bounds
    bare = replace(chain.genesis, accounts=tuple(replace(a, roles=("mgmc",)) for a in chain.genesis.accounts))
    got = forecast_for(agent(chain.state, priced_mg(), genesis=bare), 4)
    assert got == pytest.approx([RETAIL[k] for k in range(4, N)])


def test_the_honest_forecast_is_unchanged() -> None:
    chain, _ = traded_chain(7)  # 0.130 per kWh agreed in interval 7
    mg = priced_mg()
    assert forecast_for(agent(chain.state, mg), 9) == pytest.approx([0.130] * (N - 9))
    assert forecast_for(agent(chain.state, mg, genesis=chain.genesis), 9) == pytest.approx([0.130] * (N - 9))
    assert forecast_for(agent(chain.state, mg), 7) is None  # nothing agreed before: still no forecast
    assert forecast_for(agent(chain.state, mg, forecast="none"), 9) is None


def test_a_forecast_below_feed_in_is_raised_to_it() -> None:
    mg = priced_mg(premium=0.01)
    assert within_bounds([0.0, 0.1, 9.0], mg, 9, 0.01) == pytest.approx([FEED_IN[9], 0.1, RETAIL[11] + 0.01])


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=N), st.floats(0, 0.1))
def test_every_price_is_within_its_intervals_bounds_and_one_within_them_stays(
    prices: list[float], premium: float
) -> None:
    mg = priced_mg()
    t = N - len(prices)
    held = within_bounds(prices, mg, t, premium)
    for i, (price, got) in enumerate(zip(prices, held, strict=True)):
        lo, hi = FEED_IN[t + i], RETAIL[t + i] + premium
        assert lo <= got <= hi
        assert got == price or not lo <= price <= hi


def test_the_latest_agreed_price_is_looked_for_a_day_back_at_most() -> None:
    """The scan for the latest agreed price reads a day's intervals before t (`lookback_intervals`), not every
    one back to 0: at 6-h intervals a day is 4, so interval 7's 0.130 is the forecast up to interval 11, and
    from 12 on (7 is 5 intervals back) there is none. At today's 15 minutes (96) nothing in a 12-interval
    day changes: the honest forecast above."""
    chain, _ = traded_chain(7)
    mg = priced_mg()
    assert lookback_intervals(6.0) == 4 and lookback_intervals(0.25) == 96 and lookback_intervals(48.0) == 1
    assert forecast_for(agent(chain.state, mg, dt=6.0), 11) == pytest.approx([0.130])
    long_day = replace(mg, tariff=Tariff(RETAIL * 2, FEED_IN * 2))
    stand_in = agent(chain.state, long_day, dt=6.0)
    stand_in.scenario.intervals = 2 * N
    assert forecast_for(stand_in, 12) is None
    assert market_forecast(None, chain.state, 12, 2 * N) == pytest.approx([0.130] * 12)  # unbounded: found
    assert market_forecast(None, chain.state, 12, 2 * N, lookback=5) == pytest.approx([0.130] * 12)
    assert market_forecast(None, chain.state, 12, 2 * N, lookback=4) is None


def test_a_forecast_on_a_long_chain_reads_a_days_intervals_not_all_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a 2,000-interval day whose only trades are in interval 0, the forecast at interval 1999 reads 96
    intervals' trades at 15 minutes (before: 1,999, the scan back to interval 0, E23's measure)."""
    chain, _ = traded_chain(0)
    read: list[int] = []

    def counting(state: Any, k: int, counted: Any = None) -> float | None:
        read.append(k - 1)
        return previous_price(state, k, counted)

    monkeypatch.setattr(peer_forecast, "previous_price", counting)  # where market_forecast looks it up
    assert market_forecast(None, chain.state, 1999, 2000, lookback=lookback_intervals(0.25)) is None
    assert read == list(range(1998, 1998 - 96, -1))
    read.clear()
    assert market_forecast(None, chain.state, 96, 2000, lookback=96) == pytest.approx([0.130] * 1904)
    assert read == list(range(95, -1, -1))  # interval 0 is the 96th back: still read
