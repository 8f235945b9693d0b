"""The day-ahead forecast where the discovery held one tick inside the DSO's prices sits on its edge: that edge
moved half a tick out (forecast.settled_edge, M17), so a plan's values of a later trade, the forecast less or
plus a half tick, fall on the market's ticks: at a surplus a seller's later sale is worth feed-in, as the PV
sellers' is. At a shortage the edge leans a tenth of a tick further in (`PEER_LEAN`, M19): a later sale still
posts at the tick below retail, and a later purchase from a peer is worth a little less than retail, not retail
itself, where a storage MG that could sell now at retail and buy back later was indifferent and held its
energy (ieee33's midday, retail 0.22: strict 0.939106 -> 0.938082 under M17, 0.939106 with the lean).
Elsewhere the free discovery's average, as before."""

from __future__ import annotations

import pytest

from peergrid_controller.forecast import (
    HALF_TICK,
    PEER_LEAN,
    discovery_band,
    indicative_prices,
    settled_edge,
)
from peergrid_controller.market import PRICE_TICK, price_tick
from peergrid_controller.model import (
    Battery,
    CostSegment,
    Genset,
    Load,
    Microgrid,
    PvArray,
    Scenario,
    Tariff,
)
from peergrid_controller.schedule import MgSchedule

HOURS = 4
FEED_IN, RETAIL = 0.05, 0.14
TARIFF = Tariff(retail=(RETAIL,) * HOURS, feed_in=(FEED_IN,) * HOURS)


def load(kw: float) -> Load:
    return Load("load", critical_kw=(kw,) * HOURS, sheddable_kw=(0.0,) * HOURS)


def test_the_band_is_one_tick_inside_the_dso_prices() -> None:
    assert discovery_band(FEED_IN, RETAIL) == pytest.approx((FEED_IN + PRICE_TICK, RETAIL - PRICE_TICK))
    # narrower than two ticks: nothing strictly inside for both sides, the midpoint
    assert discovery_band(0.100, 0.1015) == pytest.approx((0.10075, 0.10075))


def test_an_edge_is_settled_half_a_tick_out_and_the_inside_is_left() -> None:
    band = discovery_band(FEED_IN, RETAIL)
    assert settled_edge(band[0], band) == pytest.approx(FEED_IN + HALF_TICK)
    assert settled_edge(band[1], band) == pytest.approx(RETAIL - HALF_TICK - PEER_LEAN)
    assert settled_edge(0.09, band) is None
    assert settled_edge(0.10075, discovery_band(0.100, 0.1015)) is None  # one price: no edge


def test_a_short_feeder_forecasts_under_half_a_tick_below_retail_and_the_genset_runs() -> None:
    # HEAD's free discovery averaged 0.1353 here (a sale later worth 0.1348, under the genset's 0.137: off)
    genset = Genset("genset", max_kw=50.0, min_kw=0.0, segments=(CostSegment(50.0, 0.137),))
    farm = Microgrid("farm", TARIFF, gensets=(genset,), loads=(load(1.0),))
    scenario = Scenario("night", 1.0, (farm, Microgrid("town", TARIFF, loads=(load(100.0),))))
    forecast = indicative_prices(scenario)
    assert forecast == pytest.approx((RETAIL - HALF_TICK - PEER_LEAN,) * HOURS)
    # a later sale is worth retail less a tick less the lean: it posts on the tick, above the genset's cost
    assert price_tick(forecast[1] - HALF_TICK) == pytest.approx(RETAIL - PRICE_TICK)
    plan = MgSchedule(farm, 1.0, p2p_prices=forecast).solve()
    assert plan.genset_kw[1:] == pytest.approx((50.0,) * (HOURS - 1))
    assert plan.p2p_net_export[1:] == pytest.approx((49.0,) * (HOURS - 1))


def test_a_storage_seller_at_a_surplus_asks_the_tick_the_pv_sellers_ask() -> None:
    # at the band's edge itself (feed-in + a tick) the store valued its stored energy at feed-in + a half
    # tick: its curve's second step started at 0.050501, the tick 0.051 above the PV seller's 0.050, and
    # buyers that took the two as one level could gain by moving their purchase (M16: 6 MGs seed 2, 44-47)
    battery = Battery(
        "battery", 100.0, 50.0, 50.0, efficiency_charge=1.0, efficiency_discharge=1.0, wear_cost=0.0
    )
    store = Microgrid(
        "store", TARIFF, batteries=(battery,), pv=(PvArray("pv", (60.0,) * HOURS),), loads=(load(10.0),)
    )
    solar = Microgrid("solar", TARIFF, pv=(PvArray("pv", (120.0,) * HOURS),), loads=(load(10.0),))
    scenario = Scenario("noon", 1.0, (store, solar, Microgrid("town", TARIFF, loads=(load(30.0),))))
    forecast = indicative_prices(scenario)
    assert forecast == pytest.approx((FEED_IN + HALF_TICK,) * HOURS)
    asks = {}
    for mg in (store, solar):
        sched = MgSchedule(mg, 1.0, p2p_prices=forecast)
        sched.solve()
        curve = sched.response_curve(FEED_IN, RETAIL)
        asks[mg.name] = {price_tick(p) for p, q in zip(curve.prices, curve.quantities, strict=True) if q > 0}
    assert asks == {"store": {FEED_IN}, "solar": {FEED_IN}}


def store_that_can_sell_now() -> Microgrid:
    # PV now, load later: 30 kWh the battery could keep for later, or sell now and buy back from peers later
    battery = Battery(
        "battery",
        100.0,
        50.0,
        50.0,
        efficiency_charge=1.0,
        efficiency_discharge=1.0,
        soc_initial=0.1,
        wear_cost=0.0,
    )
    pv = PvArray("pv", (40.0,) + (0.0,) * (HOURS - 1))
    return Microgrid("store", TARIFF, batteries=(battery,), pv=(pv,), loads=(load(10.0),))


def test_at_the_settled_upper_edge_a_store_sells_now_at_retail_and_buys_back_later() -> None:
    store = store_that_can_sell_now()
    edge = settled_edge(RETAIL - PRICE_TICK, discovery_band(FEED_IN, RETAIL))
    assert edge is not None
    sched = MgSchedule(store, 1.0, p2p_prices=(edge,) * HOURS)
    sched.solve()
    kept = sched.cost_at(RETAIL, limit_kw=0.0)
    sold = sched.cost_at(RETAIL)
    # selling now at retail gains the lean on each kWh bought back from a peer later
    assert kept - sold == pytest.approx(30.0 * PEER_LEAN)


def test_with_a_later_purchase_worth_retail_the_store_is_indifferent() -> None:
    # M17's upper edge: a later purchase worth exactly retail, the DSO's price; selling now gains nothing over
    # keeping the energy, so the plan's LP picks either (on ieee33's midday it kept it: M19)
    store = store_that_can_sell_now()
    sched = MgSchedule(store, 1.0, p2p_prices=(RETAIL - HALF_TICK,) * HOURS)
    sched.solve()
    assert sched.cost_at(RETAIL, limit_kw=0.0) == pytest.approx(sched.cost_at(RETAIL), abs=1e-9)
