"""L2: a reading leaf says whether its meter's counters can roll over (`rolls: false` where they never do: an MQTT
meter's), and metering reads a counter that went back on such a meter as a reset (the window unmetered: nothing
counted), never a roll-over, however small the step; a leaf without the field (a Modbus meter's, every leaf
sealed before L2) reads exactly as before. Before, an MQTT meter's leaf was byte for byte a Modbus one's, so a
reset within the roll-over bound of a register's top counted as delivered energy (up to 3.06 kWh a second at a
posted 1 MW, 30.6 kWh at 10 MW)."""

from __future__ import annotations

from itertools import accumulate, pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger.codec import encode
from peergrid_ledger.counter_roll import (
    ACC32,
    ROLLS,
    counted_forward,
    leaf_rolls,
    roll_bound_mwh,
    rolled_over,
)
from peergrid_ledger.metering import COUNTER, Unmetered, metered, read_leaf, samples

EXPORT = COUNTER["seller"]
ONE_MW = 1_000_000


def leaf(at_ms: int, mwh: int, rolls: bool | None = None) -> bytes:
    """A PCC meter reading leaf as the edge encodes it, its export counter at `mwh`; `rolls` None: no field (a
    Modbus meter's, or any leaf from before L2), False: an MQTT meter's."""
    fields: dict[str, Any] = {"at_ms": at_ms, "device": "pcc", "milli": {EXPORT: mwh, "power_w": 0}}
    fields["nature"] = "meter"
    if rolls is not None:
        fields[ROLLS] = rolls
    return encode(fields)


def test_a_reset_near_the_top_is_a_roll_over_for_a_modbus_meter_and_a_reset_for_an_mqtt_one() -> None:
    """The brief's case: a 1 MW MG (posted), 1-s polls, its meter reset to 0 from 2 kWh below the top of the
    Wh register's range (TotWh_SF -3 inferred). Read as a roll-over it counts 2 kWh that never flowed; from an
    MQTT meter it is a reset: unmetered, nothing counted."""
    before = ACC32 - 2_000_000
    assert rolled_over(before, 0, 1_000, ONE_MW) == 2_000_000 <= roll_bound_mwh(1_000, ONE_MW)
    modbus = [leaf(0, before), leaf(1_000, 0), leaf(2_000, 100_000)]
    mqtt = [leaf(0, before, False), leaf(1_000, 0, False), leaf(2_000, 100_000, False)]
    assert metered(modbus, (0, 2_000), EXPORT, 1_000, most_w=ONE_MW) == 2_100  # 2 kWh phantom, as before
    for most_w in (ONE_MW, None):
        with pytest.raises(
            Unmetered, match=r"between 0 and 1000 ms \(reset or replaced, a counter that never"
        ):
            metered(mqtt, (0, 2_000), EXPORT, 1_000, most_w=most_w)


def test_a_true_roll_over_of_a_modbus_meter_still_counts_what_the_meter_counted() -> None:
    wrap = [leaf(0, ACC32 - 2_000_000), leaf(1_000, 500_000)]
    assert metered(wrap, (0, 1_000), EXPORT, 1_000, most_w=ONE_MW) == 2_500
    assert metered(wrap, (0, 1_000), EXPORT, 1_000, rolls=True) == 2_500
    with pytest.raises(Unmetered, match="runs backwards"):  # a signed meter's (`rolls=False`): as before
        metered(wrap, (0, 1_000), EXPORT, 1_000, rolls=False)


@pytest.mark.parametrize("flagged", [0, 1])
def test_one_reading_of_the_pair_from_a_meter_that_never_rolls_makes_a_step_back_a_reset(
    flagged: int,
) -> None:
    """A step back between a reading that may roll and one that never does (the same device name, its meter
    swapped from Modbus to MQTT, or the other way): no acc32 register rolled over between them."""
    pair = [leaf(0, ACC32 - 1_000), leaf(1_000, 0)]
    pair[flagged] = leaf(1_000 * flagged, [ACC32 - 1_000, 0][flagged], False)
    with pytest.raises(Unmetered, match="never rolls over"):
        samples(pair, EXPORT)


def test_an_explicit_true_reads_as_no_field() -> None:
    """The edge never writes `rolls: true`; a leaf that says it reads as one that says nothing."""
    wrap = [leaf(0, ACC32 - 2_000_000, True), leaf(1_000, 500_000, True)]
    assert samples(wrap, EXPORT) == samples([leaf(0, ACC32 - 2_000_000), leaf(1_000, 500_000)], EXPORT)
    assert leaf_rolls({}) and leaf_rolls({ROLLS: True}) and not leaf_rolls({ROLLS: False})


@pytest.mark.parametrize("junk", [0, 1, None, "false", b"", [], {}])
def test_a_rolls_field_that_is_neither_true_nor_false_is_refused_in_clear_words(junk: Any) -> None:
    with pytest.raises(ValueError, match="rolls field is neither true nor false"):
        leaf_rolls({ROLLS: junk})
    junk_leaf = encode(
        {"at_ms": 1_000, "device": "pcc", "milli": {EXPORT: 2_000}, "nature": "meter", ROLLS: junk}
    )
    readings = [leaf(0, 1_000, False), junk_leaf]
    with pytest.raises(Unmetered, match="rolls field is neither true nor false"):
        samples(readings, EXPORT)
    # a reading that is no meter's, or has no such counter, is passed by, its field too
    other = encode({"at_ms": 0, "device": "pv", "milli": {EXPORT: 5}, "nature": "pv", ROLLS: junk})
    assert samples([other, leaf(0, 1_000, False)], EXPORT) == [(0, 1_000)]


@st.composite
def counters(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """(times ms, counter mWh) of one meter: increasing times, any counter values (steps back too)."""
    gaps = draw(st.lists(st.integers(1, 60_000), min_size=2, max_size=10))
    values = draw(st.lists(st.integers(0, 2 * ACC32), min_size=len(gaps), max_size=len(gaps)))
    return list(accumulate(gaps)), values


@settings(max_examples=300, deadline=None)
@given(counters(), st.sampled_from([None, ONE_MW, 10 * ONE_MW]))
def test_an_mqtt_meter_is_read_as_the_modbus_one_until_its_counter_goes_back_then_refused(
    meter: tuple[list[int], list[int]], most_w: int | None
) -> None:
    """Whatever the readings: with no step back the flag changes nothing (the same samples, or the same refusal
    of a forward jump, L3); with one, the MQTT meter's readings are refused wherever the Modbus meter's may be
    read as a roll-over (or a forward jump before it is refused first)."""
    times, values = meter
    modbus = [leaf(at, v) for at, v in zip(times, values, strict=True)]
    mqtt = [leaf(at, v, False) for at, v in zip(times, values, strict=True)]
    if all(a <= b for a, b in pairwise(values)):
        assert outcome(lambda: samples(mqtt, EXPORT, most_w=most_w)) == outcome(
            lambda: samples(modbus, EXPORT, most_w=most_w)
        )
    else:
        with pytest.raises(Unmetered, match=r"never rolls over|jumps forward"):
            samples(mqtt, EXPORT, most_w=most_w)


def outcome(read: Any) -> object:
    """What a reading gives: its value, or the `Unmetered` reason."""
    try:
        return read()
    except Unmetered as exc:
        return f"Unmetered: {exc}"


@settings(max_examples=200, deadline=None)
@given(counters(), st.sampled_from([None, ONE_MW]))
def test_leaves_without_the_field_read_as_the_rule_before_l2(
    meter: tuple[list[int], list[int]], most_w: int | None
) -> None:
    """An old leaf (no `rolls`) reads as `rolled_over` alone reads it: each step back one roll-over where it
    can be one, else the reset refused (the rule as M9 left it, written out here), and a step forward beyond
    the same bound refused (`counted_forward`, L3)."""
    times, values = meter
    old = [leaf(at, v) for at, v in zip(times, values, strict=True)]
    expected: list[tuple[int, int]] | None = [(times[0], values[0])]
    rolled = 0
    for (t0, c0), (t1, c1) in pairwise(zip(times, values, strict=True)):
        if c1 < c0:
            counted = rolled_over(c0, c1, t1 - t0, most_w)
            if counted is None:
                expected = None
                break
            rolled += c0 + counted - c1
        elif counted_forward(c0, c1, t1 - t0, most_w) is None:
            expected = None
            break
        expected.append((t1, c1 + rolled))
    if expected is None:
        with pytest.raises(Unmetered, match=r"\(reset or replaced\)|jumps forward"):
            samples(old, EXPORT, most_w=most_w)
    else:
        assert samples(old, EXPORT, most_w=most_w) == expected
    assert all(leaf_rolls(read_leaf(one)) for one in old)  # type: ignore[arg-type]
