"""The public per-MGMC moves: the interval price call, roles, the IR guard, the genset option, withdrawal, the
buyers' smoothed expected fill."""

from __future__ import annotations

import itertools

import pytest
from helpers_ctl import genset_site
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller.bargaining import MemoryVenue, bargain
from peergrid_controller.builder import MgState
from peergrid_controller.commitment import Options, envelope, flipped
from peergrid_controller.curve import ResponseCurve, guarded
from peergrid_controller.market import Bid
from peergrid_controller.model import ContractRules
from peergrid_controller.moves import (
    BargainingConfig,
    ExpectedFill,
    Participant,
    adjust,
    interval_price,
    make_offer,
    open_seller,
    prices_kept,
    role,
    same_requests,
)
from peergrid_controller.schedule import MgSchedule

LO, HI = 0.05, 0.30


@st.composite
def curves(draw: st.DrawFn) -> ResponseCurve:
    """A random non-decreasing step curve on [LO, HI] (buyer, seller, or storage that does both)."""
    n = draw(st.integers(1, 5))
    cents = sorted(set(draw(st.lists(st.integers(5, 29), min_size=n, max_size=n))))
    prices = tuple([LO] + [c / 100 for c in cents if c / 100 > LO])
    steps = draw(st.lists(st.floats(0.0, 20.0), min_size=len(prices), max_size=len(prices)))
    start = draw(st.floats(-30.0, 10.0))
    quantities = tuple(itertools.accumulate(steps, initial=start))[1:]
    return ResponseCurve(prices, quantities, HI)


@given(st.lists(curves(), min_size=1, max_size=6))
@settings(max_examples=80, deadline=None)
def test_the_interval_price_is_the_lowest_tick_where_the_market_is_not_short(
    group: list[ResponseCurve],
) -> None:
    def net(p: float) -> float:
        return sum(c.at(p) for c in group)

    price = interval_price(net, LO, HI)
    ticks = [round(LO + k * 0.001, 3) for k in range(round((HI - LO) / 0.001) + 1)]
    expected = next((p for p in ticks if net(p) >= 0), HI)
    assert price == pytest.approx(expected)


@given(curves(), curves(), st.floats(LO, HI))
@settings(max_examples=150, deadline=None)
def test_a_guarded_curve_never_trades_beyond_the_conventional_alternative(
    planned: ResponseCurve, conventional: ResponseCurve, price: float
) -> None:
    safe = guarded(planned, conventional)
    q = safe.at(price)
    # individual rationality: against its conventional alternative the trade never loses money
    assert price * q - conventional.cost_of_export(q) >= -1e-6
    c = conventional.at(price)
    assert min(c, 0.0) - 1e-9 <= q <= max(c, 0.0) + 1e-9
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(safe.quantities))


def test_roles_follow_the_interval_price_not_the_mid_price() -> None:
    # storage buys below 0.139 and sells 25 kWh above; two load sites need 30 kWh at any price: the market is
    # short everywhere, so the call gives the top price, where storage sells and the load sites buy
    storage = Participant("st", ResponseCurve((0.05, 0.139), (-20.0, 25.0), 0.25), ContractRules(), True)
    loads = [
        Participant(n, ResponseCurve((0.05,), (-15.0,), 0.25), ContractRules(), True) for n in ("a", "b")
    ]
    people = [storage, *loads]
    price = interval_price(lambda p: sum(x.curve.at(p) for x in people), 0.05, 0.25)
    assert price == pytest.approx(0.25)  # short at every price: 25 < 30, so sellers get the top price
    assert role(storage, price) == "seller" and role(loads[0], price) == "buyer"
    outcome = bargain(people, 0, 0.05, 0.25, MemoryVenue({p.name: p.rules for p in people}))
    assert outcome.converged
    assert sum(t.quantity_kwh for t in outcome.trades) == pytest.approx(25.0, abs=0.01)
    assert all(t.seller == "st" for t in outcome.trades)


def test_storage_that_would_buy_at_the_mid_price_sells_when_the_call_says_so() -> None:
    # at the mid price 0.15 the storage site imports, yet with 40 kWh of demand it should sell at 0.16+
    storage = Participant("st", ResponseCurve((0.05, 0.16), (-10.0, 30.0), 0.25), ContractRules(), True)
    load = Participant("ld", ResponseCurve((0.05,), (-40.0,), 0.25), ContractRules(), True)
    outcome = bargain([storage, load], 0, 0.05, 0.25, MemoryVenue({"st": storage.rules, "ld": load.rules}))
    assert outcome.converged
    ((trade),) = outcome.trades
    assert (trade.seller, trade.buyer) == ("st", "ld")
    assert trade.quantity_kwh == pytest.approx(30.0, abs=0.01)
    assert trade.price >= 0.16


def test_a_seller_whose_supply_vanishes_withdraws_with_a_zero_offer() -> None:
    seller = Participant("s", ResponseCurve((0.05, 0.12), (0.0, 8.0), 0.25), ContractRules(), True)
    cfg = BargainingConfig()
    state = open_seller(seller, 0.05, 0.25, cfg)
    assert state.lower == pytest.approx(0.12)  # IR: never below its first unit's cost
    assert make_offer(seller, 0.10, 0).quantity_kwh == 0.0  # below its cost it offers nothing: a withdrawal
    state.price = 0.2
    assert not adjust(state, seller, offered=8.0, asked=2.0, cfg=cfg)  # unsold: lowers its price
    assert state.price < 0.2 and state.price >= state.lower


def test_the_genset_option_shows_a_start_up_the_price_pays_for() -> None:
    site = genset_site("g", n=4)
    state = MgState.initial(site)
    planned = MgSchedule(site, 1.0, state=state)
    planned.solve()
    assert flipped(site, state, planned.commitment()) is not None
    options = Options.build(site, 1.0, 0, state, planned, None)
    assert options.alternative is not None
    curve = options.curve(0.05, 0.30, limit_kw=1e9)
    # P2P energy at 0.06 is cheaper than its 0.15 fuel: it stops the genset and buys its 50 kW load; above its
    # cost it runs the genset and sells the rest
    assert curve.at(0.06) == pytest.approx(-50.0)
    assert curve.at(0.29) > 0
    assert not options.choose(curve.at(0.06)).commitment()[0][0]
    assert options.choose(curve.at(0.29)).commitment()[0][0]


def test_the_envelope_takes_the_cheaper_option_at_each_price() -> None:
    a = ResponseCurve((0.05,), (-10.0,), 0.3)  # costs 1.0 at 0.05, imports 10 at any price
    b = ResponseCurve((0.05,), (20.0,), 0.3)  # costs 4.0 at 0.05, exports 20 at any price
    merged, uses_b = envelope(a, 1.0, b, 4.0, 0.05, 0.3)
    # cost_a(p) = 1 + 10 (p - 0.05), cost_b(p) = 4 - 20 (p - 0.05): equal at p = 0.15
    assert merged.at(0.10) == pytest.approx(-10.0)
    assert merged.at(0.20) == pytest.approx(20.0)
    assert not uses_b(0.14) and uses_b(0.16)


def test_after_settle_after_rounds_a_sold_out_seller_no_longer_raises() -> None:
    seller = Participant("s", ResponseCurve((0.05,), (10.0,), 0.30), ContractRules(), True)
    cfg = BargainingConfig(settle_after=3)
    state = open_seller(seller, 0.05, 0.30, cfg, 0.10)
    prices = []
    for _ in range(6):
        adjust(state, seller, 10.0, 10.0, cfg)  # sold out every round
        prices.append(state.price)
    assert prices[0] < prices[1] < prices[2]  # it raised while it was learning
    assert prices[3] == prices[4] == prices[5] == prices[2]  # then stayed put
    assert adjust(state, seller, 10.0, 10.0, cfg)  # content
    assert not adjust(state, seller, 10.0, 4.0, cfg)  # but it still lowers when it sells less
    assert state.price < prices[5]


# ------------------------------------------------------------------------- the buyers' expected fill (issue 7)


def test_the_expected_fill_halves_towards_what_was_seen_until_prices_have_rested_two_rounds() -> None:
    fills = ExpectedFill()
    offered, asked = {"a": 10.0, "b": 10.0, "c": 5.0}, {"a": 20.0, "b": 5.0}
    # a rationed seller (a served half) counts for the mean of 1 and 1/2; one not rationed, or not asked, for 1
    assert fills.observe(offered, asked, content=False) == {"a": 0.75, "b": 1.0, "c": 1.0}
    assert fills.observe(offered, asked, content=True) == {"a": 0.625, "b": 1.0, "c": 1.0}
    # the second round in a row in which no seller moved: buyers count on the fill they got
    assert fills.observe(offered, asked, content=True) == {"a": 0.5, "b": 1.0, "c": 1.0}
    assert fills.quiet == 2
    # a seller moves: smoothing again, from the last estimate
    assert fills.observe(offered, {"a": 40.0}, content=False) == {"a": 0.375, "b": 1.0, "c": 1.0}
    assert fills.quiet == 0
    # a seller that posts no offer drops out of the estimate (a buyer then counts on 1, as make_bid reads it)
    assert fills.observe({"b": 10.0}, asked, content=False) == {"b": 1.0}


@given(
    curves(),
    st.floats(0.06, 0.29),
    st.lists(st.tuples(st.floats(0.0, 30.0), st.floats(0.0, 40.0)), min_size=1, max_size=40),
    st.integers(1, 30),
)
@settings(max_examples=200, deadline=None)
def test_a_seller_is_content_exactly_when_its_posted_price_stays_on_its_tick(
    curve: ResponseCurve, start: float, responses: list[tuple[float, float]], settle_after: int
) -> None:
    """What the edge reads off the chain (`kept_prices`) for `ExpectedFill`: no seller moved its price."""
    seller = Participant("s", curve, ContractRules(), True)
    cfg = BargainingConfig(settle_after=settle_after)
    state = open_seller(seller, LO, HI, cfg, start)
    for offered, asked in responses:
        before = make_offer(seller, state.price, 1).price
        content = adjust(state, seller, offered, asked, cfg)
        after = make_offer(seller, state.price, 1).price
        assert content == (after == before) == prices_kept({"s": before, "o": 0.1}, {"s": after, "o": 0.1})


def test_prices_count_as_kept_only_when_every_seller_posts_the_same_price_again() -> None:
    before = {"a": 0.110, "b": 0.115}
    assert prices_kept(before, {"a": 0.1100000001, "b": 0.115})  # the same tick
    assert not prices_kept(before, {"a": 0.109, "b": 0.115})
    assert not prices_kept(before, {"a": 0.110})  # a seller left: not a quiet round
    assert not prices_kept({"a": 0.110}, before)  # one joined


def test_same_requests_ignores_what_is_within_the_quantity_tolerance() -> None:
    cfg = BargainingConfig(quantity_tolerance=0.01)
    bid = Bid("x", 1, (("a", 5.0), ("b", 2.0)))
    assert same_requests(bid, Bid("x", 1, (("a", 5.005), ("b", 2.0))), cfg)
    assert not same_requests(bid, Bid("x", 1, (("a", 5.0),)), cfg)  # b no longer asked
    assert not same_requests(bid, Bid("x", 1, (("a", 5.0), ("b", 2.0), ("c", 0.5))), cfg)
