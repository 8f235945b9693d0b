"""The settled upper edge leans a tenth of a tick in (`PEER_LEAN`, M19) except in the day's falling tail, where
the DSO's price falls later in the day and never rises above the interval's own (`forecast.leans`, M20): there
it is M17's edge, retail less a half tick. Before a dearer price (ieee33's 0.22 midday before the 0.30 evening)
the lean sells a store's spare energy to short peers now; in the evening peak before the night it emptied the
stores at the peak's start and left its end to the DSO (6 MGs seed 1, 68-83: strict 0.706096 without the lean,
0.701488 with it). A flat day has no tail and leans throughout (M19's test)."""

from __future__ import annotations

import pytest

from peergrid_controller.forecast import (
    HALF_TICK,
    PEER_LEAN,
    discovery_band,
    indicative_prices,
    leans,
    settled_edge,
)
from peergrid_controller.market import PRICE_TICK, price_tick
from peergrid_controller.model import CostSegment, Genset, Load, Microgrid, Scenario, Tariff
from peergrid_controller.schedule import MgSchedule

FEED_IN, NIGHT, PEAK = 0.05, 0.14, 0.30


def short_feeder(retail: tuple[float, ...]) -> tuple[Scenario, Microgrid]:
    # a genset MG (0.137/kWh) that sells and a town that buys twice what it can: the feeder is short all day
    hours = len(retail)
    tariff = Tariff(retail=retail, feed_in=(FEED_IN,) * hours)
    genset = Genset("genset", max_kw=50.0, min_kw=0.0, segments=(CostSegment(50.0, 0.137),))

    def load(kw: float) -> Load:
        return Load("load", critical_kw=(kw,) * hours, sheddable_kw=(0.0,) * hours)

    farm = Microgrid("farm", tariff, gensets=(genset,), loads=(load(1.0),))
    return Scenario("short", 1.0, (farm, Microgrid("town", tariff, loads=(load(100.0),)))), farm


def test_the_tail_is_where_the_price_only_falls_to_the_days_end() -> None:
    evening = (NIGHT, PEAK, PEAK, NIGHT, NIGHT)
    assert [leans(evening, t) for t in range(5)] == [True, False, False, True, True]
    assert all(leans((NIGHT,) * 4, t) for t in range(4))  # flat: no tail
    # a dearer price later ends the tail: the 0.22 midday before the evening peak leans
    day = (NIGHT, 0.22, PEAK, 0.22, NIGHT)
    assert [leans(day, t) for t in range(5)] == [True, True, False, False, True]


def test_without_the_lean_the_upper_edge_is_m17s() -> None:
    band = discovery_band(FEED_IN, PEAK)
    assert settled_edge(band[1], band, lean=False) == pytest.approx(PEAK - HALF_TICK)
    assert settled_edge(band[1], band) == pytest.approx(PEAK - HALF_TICK - PEER_LEAN)
    assert settled_edge(band[0], band, lean=False) == pytest.approx(
        FEED_IN + HALF_TICK
    )  # the lower edge: as is
    assert settled_edge(0.2, band, lean=False) is None


def test_the_evening_peak_before_the_night_forecasts_retail_less_half_a_tick() -> None:
    retail = (PEAK, PEAK, NIGHT, NIGHT)
    scenario, farm = short_feeder(retail)
    forecast = indicative_prices(scenario)
    leaned = NIGHT - HALF_TICK - PEER_LEAN
    assert forecast == pytest.approx((PEAK - HALF_TICK, PEAK - HALF_TICK, leaned, leaned))
    # a later sale still posts at the tick below retail, and the genset still runs for it
    assert [price_tick(f - HALF_TICK) for f in forecast] == pytest.approx([r - PRICE_TICK for r in retail])
    plan = MgSchedule(farm, 1.0, p2p_prices=forecast).solve()
    assert plan.genset_kw[1:] == pytest.approx((50.0,) * 3)


def test_before_a_dearer_price_the_edge_leans() -> None:
    retail = (NIGHT, NIGHT, PEAK, PEAK)
    scenario, _ = short_feeder(retail)
    assert indicative_prices(scenario) == pytest.approx(tuple(r - HALF_TICK - PEER_LEAN for r in retail))
