"""The clean book of the day-ahead exchange (cleanbook.py, dayrounds.Exchange's clean session, dayahead.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from helpers_ctl import battery_site, flat, genset_site, load_only, pv_site
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller.cleanbook import CleanDayModel, clean_kind, clean_session
from peergrid_controller.dayahead import allocate
from peergrid_controller.dayexchange import DayAheadConfig, DayAheadError, keeps_clean, nano
from peergrid_controller.dayrounds import Exchange
from peergrid_controller.dayrules import clean_cap_fees
from peergrid_controller.forward import match
from peergrid_controller.forward_accept import dispatch
from peergrid_controller.matching import accepted_clean_wh, book_accepts, closing_price
from peergrid_controller.model import ContractRules, Scenario
from peergrid_controller.simulate import SimulationConfig, simulate
from peergrid_controller.venues import chain_venue, exchange_recorder, memory_venue
from peergrid_ledger.contracts import exchange

DT = 0.25
N = 4
CLEAN = DayAheadConfig(clean_book=True)
GREEN = ContractRules(clean_only=True, clean_premium=0.02)


def day(green: ContractRules = GREEN) -> Scenario:
    """A PV seller (20 kW surplus), a genset MG (cheap surplus, never clean), a clean-only buyer and a plain
    buyer (20 kW each)."""
    return Scenario(
        "clean",
        DT,
        (
            pv_site("pv", 30.0, 10.0, n=N),
            genset_site("gen", n=N),
            load_only("green", 20.0, n=N, rules=green),
            load_only("grey", 20.0, n=N),
        ),
    )


def physical(scenario: Scenario, positions: dict[str, tuple[float, ...]]) -> float:
    return sum(dispatch(mg, DT, positions[mg.name]).cost for mg in scenario.microgrids)


def test_kinds_and_session() -> None:
    scenario = day()
    # grey has no genset: it may sell clean (it has nothing to sell)
    assert [clean_kind(mg) for mg in scenario.microgrids] == ["seller", "none", "buyer", "seller"]
    assert clean_session(scenario)
    assert not clean_session(day(ContractRules()))


def test_a_day_without_a_clean_only_member_is_unchanged_by_the_clean_book() -> None:
    scenario = day(ContractRules(clean_premium=0.02))
    assert allocate(scenario, CLEAN) == allocate(scenario)
    assert allocate(scenario, CLEAN).clean_positions == {}


def test_the_clean_only_buyer_buys_clean_from_the_seller_without_a_genset() -> None:
    scenario = day()
    off, on = allocate(scenario), allocate(scenario, CLEAN)
    assert off.clean_positions == {} and off.positions["green"] == (0.0,) * N  # today: it buys nothing
    assert len(on.clean_prices) == N and set(on.clean_positions) == {mg.name for mg in scenario.microgrids}
    g, c = on.positions, on.clean_positions
    for t in range(N):
        assert abs(sum(q[t] for q in g.values())) <= 0.02  # each book balances apart
        assert abs(sum(q[t] for q in c.values())) <= 0.02
        assert c["green"][t] == pytest.approx(-5.0, abs=0.02)  # its 20 kW, all clean
        assert g["green"][t] >= 0.0  # never general
        assert c["gen"][t] == 0.0 and c["grey"][t] == 0.0  # a genset MG never sells clean, grey has none
        assert c["pv"][t] >= 0.0
        assert c["pv"][t] == 0.0 or g["pv"][t] >= -0.001  # the side rule: no general purchase beside it
        assert on.clean_prices[t] <= 0.25 + 0.02 + 1e-9  # within the buyer's cap on a clean kWh
    assert on.clean_intervals["pv"] == tuple(v > 0 for v in c["pv"])
    # the physical welfare is higher with the clean book: the buyer's 5 kWh a quarter-hour come from PV,
    # not from the DSO at retail
    both = {name: tuple(a + b for a, b in zip(g[name], c[name], strict=True)) for name in g}
    assert physical(scenario, both) < physical(scenario, dict(off.positions)) - 1.0


def test_the_exact_side_rule_gives_the_same_day() -> None:
    scenario = day()
    fixed, exact = allocate(scenario, CLEAN), allocate(scenario, replace(CLEAN, clean_side="exact"))
    assert exact.clean_intervals == {}  # nothing decided once: the switch is a binary in every solve
    for name, c in exact.clean_positions.items():
        assert c == pytest.approx(fixed.clean_positions[name], abs=0.02)


def test_a_seller_switched_off_sells_no_clean_and_one_switched_on_buys_nothing() -> None:
    # the seller alone, the clean price above the general one: where its switch is on it sells clean only
    # up to its sale, and buys nothing; where off, no clean at all
    seller = pv_site("pv", 30.0, 10.0, n=N)
    model = CleanDayModel(seller, DT, clean_intervals=(True, False, True, False))
    model.trade([0.1] * N + [0.2] * N, [-40.0] * N, [40.0] * N)
    q = model.solve()
    g, c = q[:N], q[N:]
    assert c[1] == c[3] == 0.0
    assert c[0] == pytest.approx(5.0) and c[2] == pytest.approx(5.0)  # its whole 20 kW surplus, clean
    assert min(g[0], g[2]) >= -1e-9


def test_the_clean_only_buyers_cap_on_a_clean_kwh_is_cap_plus_premium() -> None:
    mg = load_only(
        "green", 20.0, n=N, rules=ContractRules(cap_price=0.2, clean_only=True, clean_premium=0.03)
    )
    assert clean_cap_fees(mg, (0.05,) * N) == pytest.approx((0.02,) * N)  # retail 0.25 less 0.23
    assert clean_cap_fees(mg, (0.05, 0.0, 0.05, 0.0)) == pytest.approx(
        (0.02, 0.0, 0.02, 0.0)
    )  # dropped stays
    assert clean_cap_fees(mg, None) is None
    rich = replace(mg, rules=replace(mg.rules, clean_premium=0.1))
    assert clean_cap_fees(rich, (0.05,) * N) is None  # cap + premium above retail: no fee left


def test_bad_side_and_a_recorder_without_a_clean_book_are_refused() -> None:
    with pytest.raises(DayAheadError, match="clean_side"):
        DayAheadConfig(clean_side="sticky")
    with pytest.raises(DayAheadError, match="clean_decisions"):
        DayAheadConfig(clean_decisions=0)
    ex = Exchange(day(), CLEAN, flat(0.15, N), recorder=object(), clean=True)  # type: ignore[arg-type]
    with pytest.raises(DayAheadError, match="clean book"):
        ex.open()


def test_a_clean_day_is_played_with_both_books_matched_committed_and_agreed_on_the_memory_venue() -> None:
    scenario = day()
    config = SimulationConfig(market="dayahead", dayahead=CLEAN)
    on = simulate(scenario, config, venue_factory=memory_venue)
    off = simulate(scenario, replace(config, dayahead=DayAheadConfig()), venue_factory=memory_venue)
    allocation = allocate(scenario, CLEAN)
    for t, interval in enumerate(on.intervals):
        clean = [tr for tr in interval.trades if tr.buyer == "green"]
        assert [(tr.seller, tr.quantity_kwh) for tr in clean] == [("pv", pytest.approx(5.0, abs=0.02))]
        # the clean trade at the clean book's price, the others at the general one, both on the tick
        assert clean[0].price == closing_price(allocation.clean_prices[t]) / 1000
        assert all(
            tr.price == closing_price(allocation.prices[t]) / 1000
            for tr in interval.trades
            if tr.buyer != "green"
        )
        assert all(tr.buyer != "green" for tr in off.intervals[t].trades)  # today it buys nothing
    assert on.dayahead is not None and on.dayahead.declined == () and on.dayahead.stable
    assert on.dayahead.worse_than_conventional == {}
    assert on.dayahead.max_deviation_gain <= 0.01 * 4 * 5  # a tick per kWh traded, loosely
    welfare = sum(i.p2p_welfare for i in on.intervals)
    assert welfare > sum(i.p2p_welfare for i in off.intervals) + 1.0


def test_the_clean_book_is_matched_apart_and_folded_into_the_days_intervals() -> None:
    scenario = day()
    allocation = allocate(scenario, CLEAN)
    accepts = book_accepts(scenario, allocation)
    assert all(len(row) == 2 * N for row in accepts.values())
    assert accepts["green"][:N] == (0,) * N and all(v < 0 for v in accepts["green"][N:])
    assert accepts["gen"][N:] == (0,) * N  # a genset MG sells no clean
    trades = match(scenario, allocation)
    assert len(trades) == N and all(tr.interval == t for t, day_ in enumerate(trades) for tr in day_)
    ids = [tr.trade_id for day_ in trades for tr in day_]
    assert len(ids) == len(set(ids))
    # a clean-only MG's clean purchase above its cap + premium is cut to nothing, at it kept
    capped = day(replace(GREEN, cap_price=0.25))
    dear = replace(allocation, clean_prices=(0.27, 0.271, 0.27, 0.271))
    assert accepted_clean_wh(capped, dear)["green"] == (-5000, 0, -5000, 0)


def test_a_clean_day_on_the_chain_venue_is_the_in_memory_one() -> None:
    scenario = day()
    venue = chain_venue(scenario)
    recorder = exchange_recorder(venue)
    assert keeps_clean(recorder)
    on_chain, in_memory = allocate(scenario, CLEAN, recorder=recorder), allocate(scenario, CLEAN)
    # all the same but the chain's verdict round (one round of answers more, abandoned by the close)
    assert replace(on_chain, iterations=0, solves=0) == replace(in_memory, iterations=0, solves=0)
    session = exchange.session(venue.chain.view, venue.exchange.session)  # type: ignore[attr-defined]
    assert session is not None and session["clean"] and session["closed"]
    assert session["clean_prices"] == tuple(nano(p) for p in in_memory.clean_prices)
    config = SimulationConfig(market="dayahead", dayahead=CLEAN)
    chain_day = simulate(scenario, config, venue_factory=chain_venue)
    memory_day = simulate(scenario, config, venue_factory=memory_venue)
    assert [i.trades for i in chain_day.intervals] == [i.trades for i in memory_day.intervals]
    assert all(any(tr.buyer == "green" for tr in i.trades) for i in chain_day.intervals)
    assert chain_day.dayahead is not None and chain_day.dayahead.moves_on_chain


@settings(max_examples=25, deadline=None)
@given(
    general=st.lists(st.floats(0.02, 0.35), min_size=8, max_size=8),
    premium=st.lists(st.floats(-0.02, 0.08), min_size=8, max_size=8),
    switch=st.one_of(st.none(), st.lists(st.booleans(), min_size=8, max_size=8)),
)
def test_a_seller_never_sells_clean_beside_a_general_purchase(
    general: list[float], premium: list[float], switch: list[bool] | None
) -> None:
    # a battery MG that buys cheap and sells dear, at any two books' prices: its switch decided (a list),
    # relaxed (None: its answer projected) or exact, every answer keeps c >= 0, c > 0 => g >= 0, and x
    # within its physical limits; a switch off sells no clean
    n = 8
    seller = battery_site("bat", n=n)
    prices = [*general, *(max(g + p, 0.0) for g, p in zip(general, premium, strict=True))]
    models = [CleanDayModel(seller, DT, clean_intervals=switch), CleanDayModel(seller, DT, side="exact")]
    # the same MG clean-only: it never buys general, and never buys clean beside a general sale (the books
    # are matched apart: a clean purchase resold as general would be cut apart)
    buyer = CleanDayModel(replace(seller, rules=GREEN), DT)
    buyer.trade(prices, [-40.0] * n, [40.0] * n)
    q = buyer.solve()
    assert all(g >= -1e-9 and (c >= -1e-9 or g <= 1e-9) for g, c in zip(q[:n], q[n:], strict=True))
    for model in models:
        model.trade(prices, [-40.0] * n, [40.0] * n)
        q = model.solve()
        g, c = q[:n], q[n:]
        for t in range(n):
            assert c[t] >= -1e-9
            assert c[t] <= 1e-9 or g[t] >= -1e-9
            assert -40.0 * DT - 1e-6 <= g[t] + c[t] <= 40.0 * DT + 1e-6
            if switch is not None and model is models[0] and not switch[t]:
                assert c[t] == 0.0


def test_the_sellers_decide_again_a_public_number_of_times() -> None:
    # who changed its switch is private, so every re-decision is followed by a run whether or not any did:
    # two more decisions of the two sellers (pv, grey) and two more runs of at least one round of 4 answers
    scenario = day()
    once = allocate(scenario, replace(CLEAN, clean_decisions=1))
    thrice = allocate(scenario, replace(CLEAN, clean_decisions=3))
    assert thrice.solves - once.solves >= 2 * 2 + 2 * 4
    assert thrice.clean_intervals == once.clean_intervals  # nothing to change on this day
