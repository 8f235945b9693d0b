"""R38-2: a PCC meter's counter that went back is read as one acc32 roll-over only within what the MG's own
connection carries between the two readings: the capacity the DSO posted for it on the chain (`market.capacity`,
Wh per interval) as a power (`counter_roll.posted_w`, `connection_w`), times the readings' gap plus 10 s; where
none is posted, 10 MW as before. So a meter reset from within 30.6 kWh of the top of its register (1-s polls),
which at 10 MW reads as that much energy delivered, is refused for a 1 MW MG (its window 3.06 kWh). Whether a
counter can roll at all is the caller's `rolls` argument to `reading_leaf` since L2 (the daemon passes its
driver's: tests/edge/test_l2_leaf_rolls.py, tests/ledger/test_l2_never_rolls.py)."""

from __future__ import annotations

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from test_m8_counter_rollover import SCALES, leaf, unit

from peergrid_edge.commitments import reading_leaf
from peergrid_edge.meter_signed import meter_signed
from peergrid_ledger.codec import encode
from peergrid_ledger.contracts.market_state import capacity_key
from peergrid_ledger.counter_roll import (
    ACC32,
    MOST_PCC_W,
    connection_w,
    posted_w,
    roll_bound_mwh,
    rolled_over,
)
from peergrid_ledger.metering import COUNTER, Unmetered, counting_leaves, metered, samples
from peergrid_ledger.state import StateTree

EXPORT = COUNTER["seller"]
MG = b"a" * 32  # the MG's anonym
QUARTER_HOUR_MS = 900_000
ONE_MW = 250_000  # Wh per 15-min interval: 1 MW


def chain_with(posted: list[tuple[int, int]]) -> StateTree:
    """A chain state holding the DSO's `market.capacity` entries (from_interval, Wh) for `MG`, as the contract
    writes them (`mkt/capacity/<account>`)."""
    entries = {capacity_key(MG): encode([[start, wh] for start, wh in posted])} if posted else {}
    return StateTree("mgmc", entries)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**12), st.integers(1, 86_400_000), st.integers(0, 3_600_000))
def test_a_meter_counting_at_its_connection_is_always_within_the_bound(
    wh: int, interval_ms: int, gap: int
) -> None:
    """`connection_w` rounds up: what the connection carries over the gap (the capacity pro rata to the time) is
    never above the bound, so a true roll-over of an MG within its capacity is never refused."""
    most_w = connection_w(wh, interval_ms)
    assert most_w * interval_ms >= wh * 3_600_000 > (most_w - 1) * interval_ms
    assert wh * 1000 * gap // interval_ms <= roll_bound_mwh(gap, most_w)


@settings(max_examples=300, deadline=None)
@given(SCALES, st.integers(1, 60_000), st.integers(1, 20 * MOST_PCC_W), st.data())
def test_a_step_back_is_a_roll_over_exactly_when_the_mgs_power_could_count_it(
    sf: int, gap: int, most_w: int, data: st.DataObject
) -> None:
    """A step back from `before` to `after` (whole counts at TotWh_SF sf) is read as what the register counted
    across its top when that is within `roll_bound_mwh(gap, most_w)`, else refused; a lower power never reads
    what a higher refuses, and None is 10 MW."""
    near = st.integers(1, 10**6)  # within some bound of the top (else refused at every power)
    below_top = data.draw(st.one_of(near, st.integers(1, ACC32 - 1)))
    after = data.draw(
        st.one_of(near, st.integers(0, ACC32 - 1 - below_top)).filter(lambda a: a < ACC32 - below_top)
    )
    before, after_mwh = (ACC32 - below_top) * unit(sf), after * unit(sf)
    # its range is taken as the least one holding it: at a finer scale than sf's, it is test_m8's case
    assume(sf == -3 or before >= ACC32 * unit(sf - 1))
    counted = (below_top + after) * unit(sf)
    read = rolled_over(before, after_mwh, gap, most_w)
    event("a roll-over" if read is not None else "refused")
    assert read == (counted if counted <= roll_bound_mwh(gap, most_w) else None)
    if read is not None:
        assert rolled_over(before, after_mwh, gap, most_w + data.draw(st.integers(0, MOST_PCC_W))) == read
    assert rolled_over(before, after_mwh, gap, None) == rolled_over(before, after_mwh, gap, MOST_PCC_W)


def test_r38s_reset_is_refused_for_a_1_mw_mg_with_its_capacity_posted() -> None:
    """R38's Wh meter (TotWh_SF -3 inferred) reset from 4.2 MWh to 0 a second later, and one reset from 20 kWh
    below the top of that range: at 10 MW the second reads as 20 kWh delivered; at the MG's posted 1 MW
    (3.06 kWh a second) neither can be a roll-over."""
    state = chain_with([(0, ONE_MW)])
    most_w = posted_w(state, MG, 7, QUARTER_HOUR_MS)
    assert most_w == 1_000_000
    assert roll_bound_mwh(1_000, most_w) == 3_055_555  # against 30,555,555 at 10 MW
    r38 = [leaf(0, 4_200_000_000, -3), leaf(1_000, 0, -3)]
    near_top = [leaf(0, ACC32 - 20_000_000, -3), leaf(1_000, 0, -3)]  # 20 kWh below 4.29 MWh
    assert rolled_over(4_200_000_000, 0, 1_000, most_w) is None
    assert rolled_over(ACC32 - 20_000_000, 0, 1_000) == 20_000_000  # before: 20 kWh counted for a reset
    assert rolled_over(ACC32 - 20_000_000, 0, 1_000, most_w) is None
    for leaves in (r38, near_top):
        with pytest.raises(Unmetered, match=r"runs backwards between 0 and 1000 ms \(reset or replaced\)"):
            samples(counting_leaves(leaves, "seller"), EXPORT, most_w=most_w)
    assert metered(counting_leaves(near_top, "seller"), (0, 1_000), EXPORT, 1_000) == 20_000  # no capacity
    # a true roll-over within the MG's connection still reads as what the meter counted: 2.5 kWh in a second
    wrap = [leaf(0, ACC32 - 2_000_000, -3), leaf(1_000, 500_000, -3)]
    assert metered(counting_leaves(wrap, "seller"), (0, 1_000), EXPORT, 1_000, most_w=most_w) == 2_500


def test_the_capacity_standing_in_the_interval_is_the_bound_and_none_posted_keeps_10_mw() -> None:
    """`posted_w` reads `market_state.capacity`: the latest entry effective by the interval; none posted (or
    none yet standing there): None, which the rule reads as `MOST_PCC_W`."""
    state = chain_with([(5, ONE_MW), (9, 4 * ONE_MW)])
    assert [posted_w(state, MG, t, QUARTER_HOUR_MS) for t in (4, 5, 8, 9)] == [None, 10**6, 10**6, 4 * 10**6]
    assert posted_w(chain_with([]), MG, 7, QUARTER_HOUR_MS) is None
    assert roll_bound_mwh(1_000, None) == roll_bound_mwh(1_000) == 30_555_555
    assert connection_w(1_667, 6_000) == 1_000_200  # the lab's 6-s intervals: 1 MW rounded up to the Wh


def test_the_leaf_does_not_tell_the_counter_from_the_points() -> None:
    """An MQTT meter's counter (JSON telemetry) never rolls, a Modbus meter's (model 203 acc32) does;
    `reading_leaf` sees the nature's quantities, not the driver's points, and `meter_signed` finds no signed
    block in either, so the two leaves are the same unless the caller says the counter never rolls
    (`rolls=False`, L2: the daemon does for an MQTT driver, `commitments.counters_roll`)."""
    reading = {"power_w": 1_000.0, "energy_wh": 4_294_967.0}
    mqtt = reading_leaf("pcc", "meter", 1.0, reading, meter_signed({"mqtt": {"energy_wh": 4_294_967.0}}))
    modbus = reading_leaf("pcc", "meter", 1.0, reading, meter_signed({"203": {"TotWhExp": 4_294_967}}))
    assert mqtt == modbus


def test_bad_powers_and_capacities_are_refused_not_read() -> None:
    with pytest.raises(ValueError, match="counts nothing"):
        roll_bound_mwh(1_000, 0)
    with pytest.raises(ValueError, match="counts nothing"):
        rolled_over(ACC32 - 5, 1, 1_000, -1)
    with pytest.raises(ValueError, match="no connection's"):
        connection_w(0, QUARTER_HOUR_MS)
    with pytest.raises(ValueError, match="no connection's"):
        connection_w(ONE_MW, 0)
