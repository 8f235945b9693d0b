"""L2 at the DSO and the edge: a seller whose PCC meter is an MQTT one (its leaves say `rolls: false`) and was
reset mid-window is unmetered on both sides, however near its counter stood to the top of an acc32 range: the
DSO leaves the dispute unresolved and the MGMC states nothing, where the same readings from a Modbus meter read
as a roll-over (R38-2's phantom: ~19.8 kWh at 10 MW, settled at the agreed 500 Wh) and a reset within the MG's
posted 1 MW (2 kWh below the top) still does. A Modbus counter that truly rolls over counts the roll, the same
Wh on both sides. Both read by the one rule (`metering.samples_of` with `counter_roll.leaf_rolls`), the DSO
through the small form it keeps of each leaf (`sealed_pass`), which keeps the flag: a hypothesis property holds
that form to the leaves decoded whole, a `rolls` field of any value included."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid_dso.disputes import Unresolved, Vouched
from peergrid_dso.sealed_pass import meter_readings
from peergrid_edge.commitments import reading_leaf
from peergrid_ledger.codec import DecodeError, decode, encode
from peergrid_ledger.counter_roll import ACC32, ROLLS, roll_bound_mwh

from . import test_disputes
from .test_disputes import END_MS, START_MS, ramp
from .test_m8_rollover_dispute import rolling
from .test_m9_capacity_roll import MW_AT_60_S, capped_market, decided, edge_statement
from .test_sealed_intake import SIGNER, a_leaf, full_pass, read_alike

Readings = list[tuple[float, float | None, float]]


@pytest.fixture
def mqtt_meters(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every PCC leaf the tests' MGMCs seal is an MQTT meter's, as the edge daemon seals it (`rolls: false`)."""
    monkeypatch.setattr(test_disputes, "reading_leaf", functools.partial(reading_leaf, rolls=False))
    yield


def reset_below_top(below_top_wh: int, wh: float = 480.0) -> Readings:
    """The seller's readings every 10 s around the window, its register standing `below_top_wh` below the top of
    its range (TotWh_SF 0) until its meter is reset mid-window and counts on from 0 (left out of the leaf at 0)."""
    middle = (START_MS + END_MS) / 2000
    out: Readings = []
    for at, exported, imported in ramp(wh, export=True):
        moved = round(exported - 1e6)
        register = ACC32 - below_top_wh + moved if at < middle else moved - round(wh / 2)
        out.append((at, float(register) or None, imported))
    return out


def outcome(posted: int | None, seller: Readings) -> tuple[Vouched | Unresolved, int | None]:
    m = capped_market({"s": seller, "b": ramp(455.0, export=False)}, posted)
    return decided(m), edge_statement(m, seller)


@pytest.mark.parametrize("posted", [None, MW_AT_60_S])
@pytest.mark.parametrize("below_top_wh", [20_000, 2_000])
def test_a_modbus_meters_reset_near_the_top_reads_as_a_roll_over_where_the_bound_allows(
    below_top_wh: int, posted: int | None
) -> None:
    """Before L2, and still for a Modbus meter: within the bound (10 MW: 55.6 kWh over 10 s polls; 1 MW posted:
    5.6 kWh) the reset is read as a roll-over, its phantom hiding the seller's 20 Wh shortfall on both sides;
    beyond it refused on both."""
    decision, stated = outcome(posted, reset_below_top(below_top_wh))
    bound = roll_bound_mwh(10_000, None if posted is None else 1_000_020)
    if below_top_wh * 1000 < bound:
        assert isinstance(decision, Vouched) and decision.seller is not None
        assert decision.seller.energy_wh > below_top_wh - 500  # the reset counted as delivered
        assert stated == decision.seller.share_wh == 500
    else:
        assert isinstance(decision, Unresolved) and "runs backwards" in decision.why
        assert stated is None


@pytest.mark.usefixtures("mqtt_meters")
@pytest.mark.parametrize("posted", [None, MW_AT_60_S])
@pytest.mark.parametrize("below_top_wh", [20_000, 2_000])
def test_an_mqtt_meters_reset_counts_nothing_at_the_dso_and_the_edge(
    below_top_wh: int, posted: int | None
) -> None:
    """The same readings from an MQTT meter: a reset wherever its counter stood and whatever the bound, no Wh
    counted for it on either side: the DSO leaves the trade unresolved, naming the reset; the MGMC states
    nothing."""
    decision, stated = outcome(posted, reset_below_top(below_top_wh))
    assert isinstance(decision, Unresolved)
    assert "energy_wh counter runs backwards" in decision.why and "never rolls over" in decision.why
    assert stated is None


def test_a_modbus_counter_that_rolls_over_counts_the_roll_the_same_on_both_sides() -> None:
    decision, stated = outcome(MW_AT_60_S, rolling())
    assert isinstance(decision, Vouched) and decision.seller is not None
    assert decision.seller.energy_wh == Fraction(480)
    assert stated == decision.seller.share_wh == 480


@pytest.mark.usefixtures("mqtt_meters")
def test_an_mqtt_meter_that_never_went_back_is_settled_as_a_modbus_one() -> None:
    """The flag changes nothing where the counter only rises: 480 Wh delivered, the same on both sides."""
    seller = ramp(480.0, export=True)
    decision, stated = outcome(MW_AT_60_S, seller)
    assert isinstance(decision, Vouched) and decision.seller is not None
    assert decision.seller.energy_wh == Fraction(480)
    assert stated == decision.seller.share_wh == 480


ROLLS_VALUES = (
    st.just(False) | st.just(True) | st.none() | st.integers(0, 1) | st.text(max_size=3) | st.just([])
)


@st.composite
def a_flagged_leaf(draw: st.DrawFn) -> bytes:
    """`test_sealed_intake.a_leaf` (an MGMC's leaf, junk in any field metering reads), with a `rolls` field of any
    value where it decodes to a map (mostly false, as an MQTT meter's)."""
    made = draw(a_leaf())
    try:
        fields: Any = decode(made)
    except DecodeError:
        return made
    if not isinstance(fields, dict) or not draw(st.booleans()):
        return made
    return encode({**fields, ROLLS: draw(st.just(False) | ROLLS_VALUES)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(a_flagged_leaf(), max_size=12), st.sampled_from([3, 12]))
def test_the_small_form_keeps_whether_a_meter_rolls(leaves: list[bytes], most: int) -> None:
    """The DSO's small form of a set (`sealed_pass.meter_readings`) reads as the leaves decoded whole, a `rolls`
    field of any value included: the same energies and refusals, word for word."""
    small, full = meter_readings(leaves, most), full_pass(leaves, most)
    assert (small is None) == (full is None)
    if small is None or full is None:
        return
    assert small[1].to_json() == full[1].to_json()
    assert read_alike(small[0], SIGNER.public) == read_alike(full[0], SIGNER.public)


def test_the_small_form_of_an_mqtt_meters_reset_is_refused_as_the_leaves_are() -> None:
    """Without the flag in the small form the DSO would read the reset below as a roll-over (1.5 Wh counted)."""
    leaves = [reading_leaf("pcc", "meter", at, {"energy_wh": wh}, rolls=False) for at, wh in
              ((10.0, ACC32 / 1000 - 1), (20.0, 0.5), (40.0, 1.5), (60.0, 2.5))]  # fmt: skip
    small, full = meter_readings(leaves, 12), full_pass(leaves, 12)
    assert small is not None and full is not None
    (seller, _), _, _ = read_alike(small[0], SIGNER.public)
    assert read_alike(small[0], SIGNER.public) == read_alike(full[0], SIGNER.public)
    assert seller[0] == "Unmetered" and "never rolls over" in seller[1]
