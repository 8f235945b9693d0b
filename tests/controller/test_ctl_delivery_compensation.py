"""Imbalance compensation (delivery.py): the side whose shortfall cuts a forward trade pays its counterparty the
DSO's price of the cover, so an MG that delivered all its own energy ends no worse off than its commitment."""

from __future__ import annotations

import functools

import pytest
from helpers_ctl import load_only, pv_site
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_ctl_dayahead_forward import GENSET_DAY, faultless, run_day

from peergrid_controller import baselines
from peergrid_controller.dayahead import Allocation
from peergrid_controller.delivery import Delivery, DeliveryFault, deliver
from peergrid_controller.forward import Commitment, commit
from peergrid_controller.model import Scenario
from peergrid_controller.uplift import MICRO, Payment
from peergrid_ledger.contracts import market as contract

DT = 0.25
PRICE = 0.2  # retail 0.25, feed-in 0.05 (helpers_ctl.tariff)


@functools.cache
def two_mgs() -> tuple[Scenario, Commitment]:
    """a sells b 5 kWh at 0.20 in each of two quarter-hours (a's PV surplus is 7.5 kWh, b's load 5 kWh)."""
    scenario = Scenario("comp", DT, (pv_site("a", 40.0, 10.0, n=2), load_only("b", 20.0, n=2)))
    allocation = Allocation((PRICE, PRICE), {"a": (5.0, 5.0), "b": (-5.0, -5.0)}, 1, 0.0, 0.0, True, 2, 0)
    committed = commit(scenario, allocation, baselines.conventional(scenario))
    assert [[(tr.seller, tr.buyer, tr.quantity_kwh) for tr in day] for day in committed.trades] == [
        [("a", "b", 5.0)],
        [("a", "b", 5.0)],
    ]
    return scenario, committed


def played(faults: dict[tuple[str, int], float]) -> Delivery:
    scenario, committed = two_mgs()
    return deliver(scenario, committed, committed.trades, faults)


def test_a_seller_short_pays_its_buyer_retail_less_the_price_for_each_missing_wh() -> None:
    d = played({("a", 0): 0.5})  # 2,500 Wh not delivered in interval 0
    assert d.compensation == (Payment("a", "b", 2500 * 50),)  # (0.25 − 0.20) per kWh = 50 micro per Wh
    assert d.payments["b"][0] == pytest.approx(-2.5 * PRICE + 0.125)
    assert d.payments["a"][0] == pytest.approx(2.5 * PRICE - 0.125)
    # b covered the 2.5 kWh at retail: its day costs exactly what it would have with the trade delivered
    _, committed = two_mgs()
    assert d.day_cost("b") == pytest.approx(committed.day_cost["b"], abs=1e-9)


def test_a_buyer_that_does_not_take_pays_its_seller_the_price_less_feed_in() -> None:
    d = played({("b", 1): 0.2})  # 1,000 Wh not taken in interval 1
    assert d.compensation == (Payment("b", "a", 1000 * 150),)  # (0.20 − 0.05) per kWh
    _, committed = two_mgs()
    # a sold the 1 kWh at feed-in instead: made whole to the micro-unit
    assert d.day_cost("a") == pytest.approx(committed.day_cost["a"], abs=1e-9)


def test_when_both_sides_fall_short_only_the_excess_is_compensated_and_pairs_are_netted() -> None:
    assert played({("a", 0): 0.5, ("b", 0): 0.5}).compensation == ()  # each got what it then wanted
    d = played({("a", 0): 0.5, ("b", 0): 0.2})  # a 2,500 short, b 1,000: a owes b for 1,500 Wh
    assert d.compensation == (Payment("a", "b", 1500 * 50),)
    # a owes b 2,500·50 in interval 0, b owes a 1,000·150 in interval 1: one payment, the difference
    assert played({("a", 0): 0.5, ("b", 1): 0.2}).compensation == (Payment("b", "a", 150_000 - 125_000),)


def test_no_fault_no_compensation_and_money_is_conserved() -> None:
    assert played({}).compensation == ()
    d = played({("a", 0): 1.0, ("b", 1): 0.3})
    for t in range(2):
        assert sum(d.payments[name][t] for name in d.payments) == pytest.approx(0.0, abs=1e-12)


# --- the whole day-ahead mode on the chain: the compensation is posted, and a deliverer never ends worse off ---

# the 8-MG genset day of test_ctl_dayahead_forward, on the chain venue (its `run_day` and `faultless`)


@settings(max_examples=8, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.sampled_from([mg.name for mg in GENSET_DAY.microgrids]), st.integers(0, 11)),
        st.sampled_from([0.1, 0.5, 1.0]) | st.floats(0.001, 1.0),
        min_size=1,
        max_size=5,
    )
)
@example({("mg001", 3): 1.0})
def test_an_mg_that_delivered_ends_no_worse_than_its_commitment_whoever_let_it_down(
    pattern: dict[tuple[str, int], float],
) -> None:
    faults = tuple(DeliveryFault(mg, f, (t,)) for (mg, t), f in sorted(pattern.items()))
    result, venue = run_day(faults)
    d, d0 = result.dayahead, faultless().dayahead
    assert d is not None and d0 is not None
    costs, base = result.totals()["mg_cost_p2p"], faultless().totals()["mg_cost_p2p"]
    assert isinstance(costs, dict) and isinstance(base, dict)
    for name in costs:
        if name in d.shortfall_kwh:
            continue
        # its uplift charge can only shrink (a defaulting payee's credit withheld) and its cover is paid for
        assert costs[name] <= base[name] + 1e-6, name
        assert name not in d.worse_than_conventional
    # the compensation went through the chain's payments contract: balances still sum to zero
    micro = [round(venue.balance(mg.name) * MICRO) for mg in GENSET_DAY.microgrids]
    assert sum(micro) == 0
    # and each MG's balance is its settlements, its uplift and its compensation, to the micro-unit
    settled = {mg.name: 0 for mg in GENSET_DAY.microgrids}
    for r in result.intervals:
        for tr in r.trades:
            tid = contract.trade_id(r.interval, venue.keys[tr.seller].public, venue.keys[tr.buyer].public)
            record = contract.trade(venue.chain.view, tid)
            assert record is not None
            settled[tr.seller] += record["settlement"]["amount"]
            settled[tr.buyer] -= record["settlement"]["amount"]
    for mg, got in zip(GENSET_DAY.microgrids, micro, strict=True):
        name = mg.name
        net = d.uplift_credit.get(name, 0.0) - d.uplift_charge.get(name, 0.0) + d.compensation.get(name, 0.0)
        assert got == settled[name] + round(net * MICRO), name
    assert sum(d.compensation.values()) == pytest.approx(0.0, abs=1e-9)


def test_each_trades_own_shortfalls_are_given_for_the_chain_to_compute_the_same_figure() -> None:
    assert played({}).shortfalls == {}
    d = played({("a", 0): 0.5, ("b", 0): 0.2, ("b", 1): 0.3})
    assert d.shortfalls == {(0, "a", "b"): (2500, 1000), (1, "a", "b"): (0, 1500)}
    # the contract's rule on them (micro-units per Wh: price 200, b's retail 250, a's feed-in 50) is the figure
    owed = {t: contract.compensation(200, s, b, 250, 50) for (t, _, _), (s, b) in d.shortfalls.items()}
    assert owed == {0: ("seller", 1500 * 50), 1: ("buyer", 1500 * 150)}
    assert d.compensation == (Payment("b", "a", 1500 * 150 - 1500 * 50),)
