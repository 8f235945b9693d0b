"""Day-ahead forward trades (forward.py): declines that hold to the end, the contract's bid limit, the agreed
price. Review 4's F1, F6 (pairing) and L2."""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import replace
from fractions import Fraction
from unittest import mock

import pytest
from helpers_ctl import load_only, pv_site
from hypothesis import example, given, settings
from hypothesis import strategies as st

from peergrid_controller import baselines
from peergrid_controller import simulate as simulate_module
from peergrid_controller.bargaining import Venue
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.cli import result_json
from peergrid_controller.dayahead import Allocation, allocate
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.delivery import (
    DeliveryFault,
    FaultError,
    _short,
    fractions,
    parse_fault,
    seeded_faults,
)
from peergrid_controller.forward import ForwardError, _pair, _verify, commit, match, post
from peergrid_controller.market import MAX_REQUESTS, Bid, Offer, Trade, Verdict, wh
from peergrid_controller.model import Scenario
from peergrid_controller.simulate import SimulationConfig, SimulationResult, simulate
from peergrid_controller.synth import synthetic_scenario
from peergrid_controller.uplift import MICRO
from peergrid_controller.venues import chain_venue, exchange_recorder, memory_venue
from peergrid_ledger.contracts import market as contract

DT = 0.25


def declining() -> tuple[Scenario, Allocation]:
    """d has a PV surplus of its own: buying 2.5 kWh at 0.20 only to feed it in at 0.05 loses money, and no
    smaller purchase helps, so it declines (test_ctl_dayahead's scenario)."""
    scenario = Scenario(
        "decline",
        DT,
        (pv_site("a", 40.0, 10.0, n=2), load_only("b", 20.0, n=2), pv_site("d", 30.0, 10.0, n=2)),
    )
    allocation = Allocation(
        (0.2, 0.2), {"a": (7.5, 7.5), "b": (-5.0, -5.0), "d": (-2.5, -2.5)}, 1, 0.0, 0.0, True, 3, 0
    )
    return scenario, allocation


def traders(committed_trades: tuple[tuple[Trade, ...], ...]) -> set[str]:
    return {name for day in committed_trades for tr in day for name in (tr.seller, tr.buyer)}


@pytest.mark.parametrize("reductions", [0, 1, 4])
def test_an_mg_declined_in_the_last_round_keeps_no_trade_and_its_conventional_cost(reductions: int) -> None:
    # with reductions=0 the first refusal is the last round: d used to be listed as declined while its
    # failing trades were still returned, and its day cost was above its conventional one
    scenario, allocation = declining()
    conv = baselines.conventional(scenario)
    committed = commit(scenario, allocation, conv, reductions=reductions)
    assert committed.declined == ("d",)
    assert "d" not in traders(committed.trades)
    assert [[(tr.seller, tr.buyer, tr.quantity_kwh) for tr in day] for day in committed.trades] == [
        [("a", "b", 5.0)],
        [("a", "b", 5.0)],
    ]
    assert committed.day_cost["d"] == pytest.approx(sum(conv.per_interval["d"]))
    assert committed.payments["d"] == (0.0, 0.0)
    for name, costs in conv.per_interval.items():
        assert committed.day_cost[name] <= sum(costs) + 1e-9


def test_a_commitment_above_an_mgs_ceiling_or_trading_a_declined_mg_is_refused_loudly() -> None:
    scenario, allocation = declining()
    conv = baselines.conventional(scenario)
    good = commit(scenario, allocation, conv)
    _verify(good, conv)  # the committed one passes
    worse = replace(good, day_cost={**good.day_cost, "b": sum(conv.per_interval["b"]) + 0.01})
    with pytest.raises(ForwardError, match=r"b.s day would cost .* above its conventional"):
        _verify(worse, conv)
    still = replace(good, declined=("b", "d"))
    with pytest.raises(ForwardError, match="b declined but still trades"):
        _verify(still, conv)


def test_a_buyer_that_declines_leaves_its_seller_trading_with_the_other_buyer() -> None:
    # a would buy from d at 0.20 what it makes itself: it declines in the first (and, with reductions=0,
    # last) round, d's sale shrinks to b's share, and d, still better off than at feed-in, keeps that
    scenario = Scenario(
        "buyer-declines",
        DT,
        (pv_site("a", 30.0, 10.0, n=2), load_only("b", 10.0, n=2), pv_site("d", 40.0, 10.0, n=2)),
    )
    allocation = Allocation(
        (0.2, 0.2), {"a": (-2.5, -2.5), "b": (-2.5, -2.5), "d": (5.0, 5.0)}, 1, 0.0, 0.0, True, 3, 0
    )
    conv = baselines.conventional(scenario)
    for reductions in (0, 2):
        committed = commit(scenario, allocation, conv, reductions=reductions)
        assert committed.declined == ("a",)
        assert [[(tr.seller, tr.buyer, tr.quantity_kwh) for tr in day] for day in committed.trades] == [
            [("d", "b", 2.5)],
            [("d", "b", 2.5)],
        ]
        for name, costs in conv.per_interval.items():
            assert committed.day_cost[name] <= sum(costs) + 1e-9


def many_sellers(k: int) -> tuple[Scenario, Allocation]:
    """k small PV sellers of 1 kWh each and one buyer of k kWh in one interval at 0.20."""
    mgs = (*(pv_site(f"s{i:02d}", 8.0, 4.0, n=1) for i in range(k)), load_only("zbuyer", 400.0, n=1))
    positions = {f"s{i:02d}": (1.0,) for i in range(k)}
    positions["zbuyer"] = (-float(k),)
    return Scenario("many", DT, mgs), Allocation((0.2,), positions, 1, 0.0, 0.0, True, k + 1, 0)


def test_no_buyer_names_more_sellers_than_the_contract_takes_and_the_chain_agrees() -> None:
    scenario, allocation = many_sellers(MAX_REQUESTS + 6)
    committed = commit(scenario, allocation, baselines.conventional(scenario))
    (day,) = committed.trades
    assert committed.declined == ()
    assert len({tr.seller for tr in day if tr.buyer == "zbuyer"}) == MAX_REQUESTS
    assert sum(wh(tr.quantity_kwh) for tr in day) == MAX_REQUESTS * 1000  # balanced: 6 sellers left out
    # before: the chain refused the buyer's bid ("more than 64 items") and the forward stage aborted
    clean = {mg.name: True for mg in scenario.microgrids}
    for venue in (chain_venue(scenario), memory_venue(scenario)):
        assert post(venue, committed, clean) == (day,)  # both sorted by (seller, buyer)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 5000), min_size=1, max_size=40),
    st.lists(st.integers(1, 20000), min_size=1, max_size=6),
    st.integers(1, 8),
)
def test_pairing_is_balanced_within_the_bid_limit_and_deterministic(
    sell_sizes: list[int], buy_sizes: list[int], limit: int
) -> None:
    sells = {f"s{i:02d}": amount for i, amount in enumerate(sell_sizes)}
    buys = {f"b{i}": amount for i, amount in enumerate(buy_sizes)}
    volume = min(sum(sells.values()), sum(buys.values()))
    # balance the two sides as match does (scale the long side down; here: trim it greedily)
    for side in (sells, buys):
        excess = sum(side.values()) - volume
        for name in sorted(side, reverse=True):
            cut = min(side[name], excess)
            side[name] -= cut
            excess -= cut
    trades = _pair(3, 0.2, sells, buys, limit)
    assert trades == _pair(3, 0.2, dict(reversed(sells.items())), dict(reversed(buys.items())), limit)
    sold: dict[str, int] = {}
    bought: dict[str, int] = {}
    named: dict[str, set[str]] = {}
    for tr in trades:
        assert tr.interval == 3 and tr.price == 0.2 and wh(tr.quantity_kwh) > 0
        sold[tr.seller] = sold.get(tr.seller, 0) + wh(tr.quantity_kwh)
        bought[tr.buyer] = bought.get(tr.buyer, 0) + wh(tr.quantity_kwh)
        named.setdefault(tr.buyer, set()).add(tr.seller)
    assert sum(sold.values()) == sum(bought.values())
    assert all(amount <= sells[name] for name, amount in sold.items())
    assert all(amount <= buys[name] for name, amount in bought.items())
    assert all(len(sellers) <= limit for sellers in named.values())
    assert len(trades) == len({(tr.seller, tr.buyer) for tr in trades})  # one trade per pair
    if all(len(sellers) < limit for sellers in named.values()):  # the limit did not bind: all is traded
        assert sum(sold.values()) == volume


def test_matching_a_balanced_interval_trades_everything_when_the_limit_does_not_bind() -> None:
    scenario, allocation = many_sellers(MAX_REQUESTS)
    (day,) = match(scenario, allocation)
    assert len(day) == MAX_REQUESTS and sum(wh(tr.quantity_kwh) for tr in day) == MAX_REQUESTS * 1000


class RepricingVenue:
    """The market contract in memory, but reporting the agreed trades at another price: what `post` must
    catch if a contract ever agreed a price other than λ_t (e.g. a standing offer moved, not replaced)."""

    def __init__(self, inner: Venue) -> None:
        self.inner = inner

    def post_offer(self, offer: Offer) -> Verdict:
        return self.inner.post_offer(offer)

    def post_bid(self, bid: Bid) -> Verdict:
        return self.inner.post_bid(bid)

    def close_round(self) -> list[Trade]:
        return self.inner.close_round()

    def finish(self, interval: int) -> list[Trade]:
        return [replace(tr, price=tr.price + 0.001) for tr in self.inner.finish(interval)]

    def settle(self, trade: Trade, delivered_kwh: float) -> Verdict:
        return self.inner.settle(trade, delivered_kwh)

    def flush(self) -> None:
        self.inner.flush()


def test_post_refuses_trades_agreed_at_another_price() -> None:
    scenario, allocation = declining()
    committed = commit(scenario, allocation, baselines.conventional(scenario))
    clean = {mg.name: True for mg in scenario.microgrids}
    assert post(memory_venue(scenario), committed, clean) == committed.trades  # same venue, same price
    with pytest.raises(ForwardError, match="interval 0: the contract agreed other trades"):
        post(RepricingVenue(memory_venue(scenario)), committed, clean)


# --- delivery faults (delivery.py): settled once for what was delivered, no credit to a non-deliverer ---

GENSET_DAY = synthetic_scenario(8, 12, seed=0, interval_hours=2.0)  # mg003's genset is owed an uplift


DAY_CONFIG = SimulationConfig(market="dayahead", with_central=False)


@functools.cache
def allocated(**venue_options: bool) -> tuple[ChainVenue, Allocation]:
    """GENSET_DAY's allocation, made once per kind of chain venue: its moves are on that venue's chain."""
    venue = ChainVenue(GENSET_DAY, **venue_options)
    return venue, allocate(GENSET_DAY, DAY_CONFIG.dayahead, recorder=exchange_recorder(venue))


def run_day(
    faults: tuple[DeliveryFault, ...] = (), **venue_options: bool
) -> tuple[SimulationResult, ChainVenue]:
    """simulate's day-ahead day on a chain venue with these faults. The faults act only once the day is
    allocated (simulate.py: allocate, then play_day delivers), and the allocation is two thirds of the day's
    solving, so each run plays the day from the allocation made once, on a copy of the chain that holds its
    moves; the rest is simulate's own path. test_run_day_is_simulates_whole_day pins it to the byte."""
    origin, allocation = allocated(**venue_options)
    venue = copy.deepcopy(origin)

    def made(scenario: Scenario, config: DayAheadConfig, recorder: object = None) -> Allocation:
        assert scenario is GENSET_DAY and config == DAY_CONFIG.dayahead and recorder is venue.exchange
        return allocation

    with mock.patch.object(simulate_module, "allocate", made):
        return simulate(GENSET_DAY, replace(DAY_CONFIG, delivery_faults=faults), lambda s: venue), venue


@pytest.mark.parametrize("venue_options", [{}, {"compensate": True}])
def test_run_day_is_simulates_whole_day(venue_options: dict[str, bool]) -> None:
    faults = (DeliveryFault("mg001", 1.0, (3,)), DeliveryFault("mg003", 0.5, (3,)))
    venues: list[ChainVenue] = []

    def factory(s: Scenario) -> ChainVenue:
        venues.append(ChainVenue(s, **venue_options))
        return venues[-1]

    whole = simulate(GENSET_DAY, replace(DAY_CONFIG, delivery_faults=faults), factory)
    quick, venue = run_day(faults, **venue_options)
    assert quick.dayahead is not None and quick.dayahead.shortfall_kwh  # the faults cut trades
    assert result_json(quick) == result_json(whole)
    assert venue.chain.tip == venues[0].chain.tip  # the same blocks on the chain, to the byte
    assert run_day(**venue_options)[1].chain.tip != venue.chain.tip  # each run on its own copy


@functools.cache
def faultless() -> SimulationResult:
    return run_day()[0]


def short_wh(agreed_wh: int, fraction: float) -> int:
    """The test's own shortfall rule, in exact rationals (not delivery._short's float expression): the fewest
    whole Wh that cover `fraction` of the trade, so what is delivered is rounded down to a whole Wh; a product
    at most half a micro-Wh above a whole Wh is that Wh (float noise: 100 · 0.07 is 7.000000000000001)."""
    exact = agreed_wh * Fraction(fraction)
    whole = exact.numerator // exact.denominator
    return whole if exact - whole <= Fraction(1, 2_000_000) else whole + 1


@pytest.mark.parametrize(
    ("agreed_wh", "fraction", "short"),
    [
        (1000, 0.0, 0),
        (1000, 0.5, 500),
        (1000, 0.1, 100),  # 1000 · 0.1 is not exactly 100 in floats
        (100, 0.07, 7),  # 7.000000000000001 in floats: not 8
        (9000, 0.07, 630),  # 630.0000000000001 in floats: not 631
        (700, 0.7, 490),  # 489.99999999999994 in floats: 490
        (7, 0.5, 4),  # 3.5 Wh short: 4 Wh short, 3 Wh delivered (never credit a part Wh not delivered)
        (1, 0.001, 1),  # any fault on a trade costs at least a whole Wh
        (999, 1 / 3, 333),
        (1000, 1 / 3, 334),
        (10, 0.999, 10),
        (1234, 1.0, 1234),
        (50648, 0.25, 12662),
        (50649, 0.25, 12663),  # 12662.25
    ],
)
def test_a_shortfall_is_rounded_up_to_whole_wh_by_hand(agreed_wh: int, fraction: float, short: int) -> None:
    assert _short(agreed_wh, fraction) == short
    assert short_wh(agreed_wh, fraction) == short


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 200_000), st.floats(0.0, 1.0) | st.sampled_from([0.1, 0.2, 0.3, 0.7, 0.9, 1 / 3, 2 / 3])
)
def test_what_is_delivered_is_the_whole_wh_below_the_delivered_share(agreed_wh: int, fraction: float) -> None:
    # bounds, not a formula: delivered = q − short is a whole Wh with q·(1−f) − 1 < delivered ≤ q·(1−f)
    # (up to half a micro-Wh of float noise), i.e. floor(q·(1−f)) — a rounding to nearest, a floor of the
    # shortfall or an unrounded ceil of a float product breaks one of them
    short = _short(agreed_wh, fraction)
    delivered = agreed_wh - short
    share = agreed_wh * (1 - Fraction(fraction))
    noise = Fraction(1, 2_000_000)
    assert isinstance(short, int) and 0 <= delivered <= agreed_wh
    assert share - 1 < delivered <= share + noise
    assert short == short_wh(agreed_wh, fraction)


fault_patterns = st.dictionaries(
    st.tuples(st.sampled_from([mg.name for mg in GENSET_DAY.microgrids]), st.integers(0, 11)),
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.999, 1.0]) | st.floats(0.001, 1.0),
    max_size=6,
)


@settings(max_examples=12, deadline=None)
@given(fault_patterns)
@example({("mg003", 3): 0.5, ("mg001", 3): 1.0})  # the payee and a counterparty both short
def test_any_fault_pattern_settles_each_trade_once_conserves_money_and_pays_no_non_deliverer(
    pattern: dict[tuple[str, int], float],
) -> None:
    faults = tuple(DeliveryFault(mg, f, (t,)) for (mg, t), f in sorted(pattern.items()))
    result, venue = run_day(faults)
    base = faultless()
    d, d0 = result.dayahead, base.dayahead
    assert d is not None and d0 is not None and d0.uplift_credit  # an uplift is at stake
    short: dict[str, int] = {}
    touched: set[str] = set()
    settled = {mg.name: 0 for mg in GENSET_DAY.microgrids}  # micro-units received on the chain for energy
    for r in result.intervals:
        for tr in r.trades:  # the agreed trades: each settled once, for the smaller side's delivery
            q = wh(tr.quantity_kwh)
            own = {n: short_wh(q, pattern.get((n, r.interval), 0.0)) for n in (tr.seller, tr.buyer)}
            for n, s in own.items():
                if s:
                    short[n] = short.get(n, 0) + s
                    touched |= {tr.seller, tr.buyer}
            tid = contract.trade_id(r.interval, venue.keys[tr.seller].public, venue.keys[tr.buyer].public)
            record = contract.trade(venue.chain.view, tid)
            assert record is not None and record["settlement"]["delivered"] == q - max(own.values())
            settled[tr.seller] += record["settlement"]["amount"]
            settled[tr.buyer] -= record["settlement"]["amount"]
    assert {n: round(kwh * 1000) for n, kwh in d.shortfall_kwh.items()} == short
    # no credit to an MG that did not deliver; every other credit paid in full; no charge grew
    assert not set(d.uplift_credit) & set(short)
    assert d.uplift_credit == {n: c for n, c in d0.uplift_credit.items() if n not in short}
    assert d.uplift_withheld == {n: c for n, c in d0.uplift_credit.items() if n in short}
    for name, charge in d0.uplift_charge.items():
        assert d.uplift_charge.get(name, 0.0) <= charge
    # money conserved exactly: the chain's balances are the settlements and the uplift paid, summing to 0
    micro = {n: round(venue.balance(n) * MICRO) for n in settled}
    assert sum(micro.values()) == 0
    for name, amount in settled.items():
        # the imbalance compensation (delivery.py) is posted with the ledger's pay as well
        net = d.uplift_credit.get(name, 0.0) - d.uplift_charge.get(name, 0.0) + d.compensation.get(name, 0.0)
        assert micro[name] == amount + round(net * MICRO)
    # payments cancel: the MGs' costs add up to the physical cost the welfare counts
    costs = result.totals()["mg_cost_p2p"]
    welfare = sum(r.p2p_welfare for r in result.intervals)
    assert sum(costs.values()) == pytest.approx(-welfare, abs=1e-6)  # type: ignore[attr-defined]
    # an MG no fault touched ends exactly where it did without faults, its uplift aside
    base_costs = base.totals()["mg_cost_p2p"]
    for name in set(settled) - touched:
        uplift_change = d0.uplift_charge.get(name, 0.0) - d.uplift_charge.get(name, 0.0)
        assert costs[name] == pytest.approx(base_costs[name] - uplift_change, abs=1e-6)  # type: ignore[index]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (DeliveryFault("nobody", 0.5), "no microgrid named 'nobody'"),
        (DeliveryFault("mg001", -0.1), r"fraction -0\.1 is outside \[0, 1\]"),
        (DeliveryFault("mg001", 1.5), r"fraction 1.5 is outside \[0, 1\]"),
        (DeliveryFault("mg001", math.nan), r"fraction nan is outside \[0, 1\]"),
        (DeliveryFault("mg001", 0.5, (12,)), r"interval 12 is outside 0\.\.11"),
        (DeliveryFault("mg001", 0.5, (-1,)), r"interval -1 is outside 0\.\.11"),
    ],
)
def test_bad_fault_specs_get_clear_errors_before_the_day_is_solved(
    fault: DeliveryFault, message: str
) -> None:
    with pytest.raises(FaultError, match=message):
        fractions(GENSET_DAY, [fault])
    with pytest.raises(FaultError, match=message):
        simulate(
            GENSET_DAY, SimulationConfig(market="dayahead", with_central=False, delivery_faults=(fault,))
        )


def test_overlapping_faults_and_faults_outside_the_day_ahead_market_are_refused() -> None:
    twice = [DeliveryFault("mg001", 0.5, (2, 3)), DeliveryFault("mg001", 0.2, (3,))]
    with pytest.raises(FaultError, match="mg001's interval 3 is given twice"):
        fractions(GENSET_DAY, twice)
    with pytest.raises(FaultError, match="day-ahead market's forward trades only"):
        simulate(GENSET_DAY, SimulationConfig(delivery_faults=(DeliveryFault("mg001", 0.5),)))
    with pytest.raises(FaultError, match="random_faults must be >= 0"):
        simulate(GENSET_DAY, SimulationConfig(market="dayahead", random_faults=-1))


def test_fault_text_and_seeded_patterns() -> None:
    assert parse_fault("mg1:0.5:3,5-7") == DeliveryFault("mg1", 0.5, (3, 5, 6, 7))
    assert parse_fault("mg1:1") == DeliveryFault("mg1", 1.0)
    for bad in ("mg1", ":0.5", "mg1:half", "mg1:0.5:3-x", "mg1:0.5:1:2"):
        with pytest.raises(FaultError, match="delivery fault"):
            parse_fault(bad)
    names = [mg.name for mg in GENSET_DAY.microgrids]
    drawn = seeded_faults(names, 12, seed=4, count=3)
    assert drawn == seeded_faults(list(reversed(names)), 12, seed=4, count=3)  # seed alone decides
    assert len({f.mg for f in drawn}) == 3
    fractions(GENSET_DAY, drawn)  # always a valid spec
    assert seeded_faults(names, 12, seed=4, count=0) == ()
    for fault in (*drawn, DeliveryFault("mg1", 1 / 3), DeliveryFault("mg1", 0.0, (0,))):
        assert parse_fault(str(fault)) == fault  # the report's form reads back
