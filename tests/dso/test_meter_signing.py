"""Meter-signed PCC readings (`peergrid_ledger.meter_signing`): the one canonical message a meter signs, and what
the DSO counts of an MG whose meter signs (`signed_leaves`, `counted_leaves`): the meter's counters at the
meter's time, an unsigned meter reading left out (the gap rule then decides), or `Unmetered` with the reason for
a forged, malformed, foreign or replayed meter reading."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_edge.commitments import reading_leaf
from peergrid_edge.meter_signed import Unsigned
from peergrid_ledger import hashing
from peergrid_ledger.codec import decode, encode
from peergrid_ledger.keys import Keypair
from peergrid_ledger.meter_signing import (
    FIELD,
    SignedReading,
    counted_leaves,
    meter_keypair,
    reading_digest,
    sign_reading,
    signed_field,
    signed_from_field,
    signed_leaves,
    verify_reading,
)
from peergrid_ledger.metering import Unmetered, metered

METER = meter_keypair(7, "mg1", "pcc")
U64 = st.integers(0, 2**64 - 1)


def signed_leaf(
    at_ms: int, export_wh: int, import_wh: int, signed_at: int | None = None, key: Keypair = METER
) -> bytes:
    """A PCC meter leaf as the edge makes it: its 203 counters (mWh) and the meter's signed reading."""
    signed = sign_reading(key, "mg1-pcc", at_ms if signed_at is None else signed_at, export_wh, import_wh)
    reading = {"power_w": 0.0, "energy_wh": float(export_wh), "import_wh": float(import_wh)}
    return reading_leaf("pcc", "meter", at_ms / 1000, reading, signed)


def with_field(leaf: bytes, **change: object) -> bytes:
    """The leaf with its signed field's values changed (the signature kept): what a lying MGMC seals."""
    fields = decode(leaf)
    return encode({**fields, FIELD: {**fields[FIELD], **change}})


@given(st.text(min_size=1, max_size=64), U64, U64, U64)
def test_a_signed_reading_verifies_and_any_changed_value_does_not(
    meter: str, at: int, exp: int, imp: int
) -> None:
    signed = sign_reading(METER, meter, at, exp, imp)
    assert verify_reading(METER.public, signed)
    assert signed_from_field(decode(encode(signed_field(signed)))) == signed  # the leaf's field round-trips
    for changed in (
        SignedReading(meter, at, exp ^ 1, imp, signed.signature),
        SignedReading(meter, at, exp, imp ^ 1, signed.signature),
        SignedReading(meter, at ^ 1, exp, imp, signed.signature),
        SignedReading(meter + "x", at, exp, imp, signed.signature),
    ):
        assert not verify_reading(METER.public, changed)
    assert not verify_reading(meter_keypair(8, "mg1", "pcc").public, signed)  # another meter's key


def test_the_message_is_domain_separated_from_every_ledger_digest() -> None:
    message = encode(["peergrid/meter-reading/1", "m", 1, 2, 3])
    assert reading_digest("m", 1, 2, 3) == hashlib.sha256(message).digest()
    assert message[0] == 0x85 and hashing.prefix(hashing.TX, "mgmc")[0] == 0x83  # disjoint preimages
    with pytest.raises(ValueError, match=r"0\.\.2"):
        reading_digest("m", -1, 2, 3)
    with pytest.raises(ValueError, match="meter id"):
        reading_digest("", 1, 2, 3)
    assert meter_keypair(7, "mg1", "pcc").public == METER.public != meter_keypair(7, "mg2", "pcc").public


def test_signed_readings_count_at_the_meters_values_not_the_mgmcs() -> None:
    leaves = [signed_leaf(t, 1000 + t // 1000, 50) for t in range(0, 70_001, 10_000)]
    counted = signed_leaves(leaves, METER.public, 2_000)
    assert metered(counted, (10_000, 60_000), "energy_wh", 15_000) == 50
    # the MGMC's own 203 counters (milli) are not believed: inflated, they change nothing
    inflated = [encode({**decode(leaf), "milli": {"energy_wh": 9_000_000_000}}) for leaf in leaves]
    assert metered(signed_leaves(inflated, METER.public, 2_000), (10_000, 60_000), "energy_wh", 15_000) == 50
    # counted at the meter's time: a leaf stamped 1.5 s off is read where the meter signed it
    skewed = [signed_leaf(t + 1_500, 1000 + t // 1000, 50, signed_at=t) for t in range(0, 70_001, 10_000)]
    assert metered(signed_leaves(skewed, METER.public, 2_000), (10_000, 60_000), "energy_wh", 15_000) == 50
    other = reading_leaf("pv1", "pv", 5.0, {"power_w": 3.0})
    assert signed_leaves([other], METER.public, 2_000) == [other]  # other natures pass as they are


def test_a_forged_counter_with_the_signature_kept_is_refused_with_the_reason() -> None:
    leaves = [signed_leaf(t, 1000 + t // 1000, 50) for t in range(0, 70_001, 10_000)]
    leaves[3] = with_field(leaves[3], export_wh=5000)  # a seller reporting more export than it had
    with pytest.raises(Unmetered, match="at 30000 ms: its signature does not verify"):
        signed_leaves(leaves, METER.public, 2_000)


def test_a_replayed_old_signed_reading_is_caught_by_the_time_check() -> None:
    old = sign_reading(METER, "mg1-pcc", 10_000, 1010, 50)
    replay = reading_leaf("pcc", "meter", 40.0, {"energy_wh": 1010.0}, old)  # sealed again at 40 s
    with pytest.raises(Unmetered, match="at 40000 ms was signed at 10000 ms, more than 2000 ms away"):
        signed_leaves([signed_leaf(0, 1000, 50), replay], METER.public, 2_000)
    assert signed_leaves([replay], METER.public, 30_000)  # within a (generous) bound it counts


def test_an_unsigned_meter_reading_is_left_out_and_the_gap_rule_decides() -> None:
    """One poll whose signed block failed is sealed unsigned (its 203 counters only, and why): it is left out,
    not believed and not refused, so the signed readings around it still measure the window when they are
    close enough (`max_gap_ms`), and do not when the gap it leaves is too long."""
    leaves = [signed_leaf(t, 1000 + t // 1000, 50) for t in range(0, 70_001, 5_000)]
    leaves[6] = reading_leaf(
        "pcc", "meter", 30.0, {"energy_wh": 9e6}, Unsigned("64204 failed: exception code 4")
    )
    counted = counted_leaves(leaves, METER.public, 2_000)
    assert counted.unsigned_at == (30_000,) and len(counted.leaves) == len(leaves) - 1
    assert "the MGMC says '64204 failed: exception code 4'" in counted.why_unsigned()
    assert metered(counted.leaves, (10_000, 60_000), "energy_wh", 15_000) == 50  # its 9e6 never counted
    unsigned_all = [
        reading_leaf("pcc", "meter", t / 1000, {"energy_wh": 1e3}) for t in range(0, 70_001, 5_000)
    ]
    assert counted_leaves(unsigned_all, METER.public, 2_000).leaves == []  # nothing the meter signed
    around_start = [  # the polls at 5, 10 and 15 s unsigned: 20 s without a signed reading around the start
        reading_leaf("pcc", "meter", t / 1000, {"energy_wh": 1.0})
        if 5_000 <= t <= 15_000
        else signed_leaf(t, 1000 + t // 1000, 50)
        for t in range(0, 70_001, 5_000)
    ]
    with pytest.raises(Unmetered, match="at most 15000 ms apart around 10000 ms"):
        metered(signed_leaves(around_start, METER.public, 2_000), (10_000, 60_000), "energy_wh", 15_000)


@given(st.lists(st.booleans(), min_size=15, max_size=15))
def test_leaving_unsigned_readings_out_never_counts_more_than_the_meter_signed(unsigned: list[bool]) -> None:
    """Whichever polls come unsigned (their 203 counters inflated), what is counted is either the meter's signed
    advance over the window or no measurement: never a number the MGMC's own counters made."""
    times = range(0, 70_001, 5_000)
    leaves = [
        reading_leaf("pcc", "meter", t / 1000, {"energy_wh": 9e6 + t})
        if off
        else signed_leaf(t, 1000 + t // 1000, 50)
        for t, off in zip(times, unsigned, strict=True)
    ]
    counted = counted_leaves(leaves, METER.public, 2_000)
    assert counted.unsigned_at == tuple(t for t, off in zip(times, unsigned, strict=True) if off)
    try:
        assert metered(counted.leaves, (10_000, 60_000), "energy_wh", 15_000) == 50
    except Unmetered as exc:
        assert "apart around" in str(exc)


def test_forged_foreign_and_malformed_meter_readings_leave_the_party_unmetered() -> None:
    """Tampering refuses the party even among good signed readings: a signed reading that does not verify, or
    is malformed, is evidence, not a missing reading."""
    foreign = signed_leaf(1_000, 1, 1, key=meter_keypair(9, "mg1", "pcc"))
    with pytest.raises(Unmetered, match="does not verify"):
        signed_leaves([foreign], METER.public, 2_000)
    good = signed_leaf(1_000, 1, 1)
    unsigned = reading_leaf("pcc", "meter", 2.0, {"energy_wh": 1.0})
    with pytest.raises(Unmetered, match="at 3000 ms: its signature does not verify"):
        signed_leaves(
            [good, unsigned, with_field(signed_leaf(3_000, 1, 1), export_wh=2)], METER.public, 2_000
        )
    for change, why in (
        ({"sig": b"\0" * 63}, "not 64 bytes"),
        ({"sig": "ab" * 64}, "not 64 bytes"),
        ({"export_wh": -1}, r"0\.\.2"),
        ({"at_ms": "1000"}, r"0\.\.2"),
        ({"meter": ""}, "meter id"),
    ):
        with pytest.raises(Unmetered, match=f"malformed signed reading: .*{why}"):
            signed_leaves([with_field(good, **change)], METER.public, 2_000)
    fields = decode(good)
    missing = encode({**fields, FIELD: {k: v for k, v in fields[FIELD].items() if k != "sig"}})
    with pytest.raises(Unmetered, match="malformed signed reading: the signed reading is not"):
        signed_leaves([missing], METER.public, 2_000)
    with pytest.raises(Unmetered, match="does not decode"):
        signed_leaves([good[:-1]], METER.public, 2_000)
    with pytest.raises(ValueError, match="bound_ms"):
        signed_leaves([good], METER.public, -1)
