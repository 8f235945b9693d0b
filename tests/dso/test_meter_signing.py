"""Meter-signed PCC readings (`peergrid_ledger.meter_signing`): the one canonical message a meter signs, and what
the DSO counts of an MG whose meter signs (`signed_leaves`, `counted_leaves`): the meter's counters at the
meter's time; a meter reading the meter did not sign (none carried, or a forged, malformed or foreign one) left
out with its reason, the gap rule then deciding, never a refusal of the party (review15 M1); a replayed one
counted at its true time, its offset from the MGMC's stamp noted."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
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


def test_a_forged_counter_with_the_signature_kept_is_left_out_with_the_reason() -> None:
    leaves = [signed_leaf(t, 1000 + t // 1000, 50) for t in range(0, 70_001, 10_000)]
    leaves[3] = with_field(leaves[3], export_wh=5000)  # a seller reporting more export than it had
    counted = counted_leaves(leaves, METER.public, 2_000)
    assert counted.unsigned_at == (30_000,) and len(counted.leaves) == len(leaves) - 1
    assert counted.bad_signed == (
        (30_000, "does not verify under the meter's key (values changed after signing, or another meter)"),
    )
    assert "at 30000 ms does not verify under the meter's key" in counted.why_unsigned()
    # the signed readings either side (20 s apart, max_gap 25 s) still measure the window: the meter's 50
    assert metered(counted.leaves, (10_000, 60_000), "energy_wh", 25_000) == 50
    with pytest.raises(Unmetered, match="at most 15000 ms apart around 30000 ms"):  # too far apart
        metered(counted.leaves, (10_000, 30_000), "energy_wh", 15_000)


def test_a_replayed_old_signed_reading_counts_at_its_true_time_and_is_noted() -> None:
    """An old signed reading sealed again 30 s later is a true point of the meter's counter curve, counted
    where the meter signed it: it changes no measurement. Its distance from the MGMC's stamp is only noted
    (the stamp is the MGMC's own: an MGMC that set it to the signed time would pass any bound on it)."""
    leaves = [signed_leaf(t, 1000 + t // 1000, 50) for t in range(0, 70_001, 10_000)]
    old = sign_reading(METER, "mg1-pcc", 10_000, 1010, 50)
    replay = reading_leaf("pcc", "meter", 40.0, {"energy_wh": 1010.0}, old)  # sealed again at 40 s
    counted = counted_leaves([*leaves, replay], METER.public, 2_000)
    assert counted.unsigned_at == () and counted.off_clock == ((40_000, 10_000),)
    assert "stamped 40000 ms, signed 10000 ms, -30000 ms" in counted.why_off_clock()
    assert metered(counted.leaves, (10_000, 60_000), "energy_wh", 15_000) == 50
    assert counted_leaves([replay], METER.public, 30_000).off_clock == ()  # within the bound: no note


@pytest.mark.parametrize("drift_ms", [1_900, 2_100, -2_500, 30_000])
def test_a_meter_clock_off_the_mgmcs_settles_alike_within_or_past_the_bound(drift_ms: int) -> None:
    """review15 M1: a meter clock 2.1 s (or 30 s) off the Pi's used to refuse the party as tampering, 1.9 s
    not. Both now count at the meter's time: the window is measured on the meter's clock, the same 50 Wh."""
    leaves = [
        signed_leaf(t - drift_ms, 1000 + t // 1000, 50, signed_at=t) for t in range(40_000, 150_001, 10_000)
    ]
    counted = counted_leaves(leaves, METER.public, 2_000)
    assert counted.unsigned_at == () and len(counted.leaves) == len(leaves)
    assert bool(counted.off_clock) is (abs(drift_ms) > 2_000)
    assert metered(counted.leaves, (60_000, 110_000), "energy_wh", 15_000) == 50


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


def test_forged_foreign_and_malformed_signed_readings_are_left_out_each_with_its_reason() -> None:
    """A signed reading that does not verify, or is malformed, is no stronger evidence than none (an MGMC can
    leave any reading out by sealing it unsigned): left out with the reason, never a refusal of the party.
    A leaf that does not decode is the MGMC's own encoding: still `Unmetered`."""
    foreign = signed_leaf(1_000, 1, 1, key=meter_keypair(9, "mg1", "pcc"))
    counted = counted_leaves([foreign], METER.public, 2_000)
    assert (
        counted.leaves == []
        and counted.unsigned_at == (1_000,)
        and "does not verify" in counted.bad_signed[0][1]
    )
    good = signed_leaf(1_000, 1, 1)
    unsigned = reading_leaf("pcc", "meter", 2.0, {"energy_wh": 1.0})
    counted = counted_leaves(
        [good, unsigned, with_field(signed_leaf(3_000, 1, 1), export_wh=2)], METER.public, 2_000
    )
    assert len(counted.leaves) == 1 and counted.unsigned_at == (2_000, 3_000)
    assert [at for at, _ in counted.bad_signed] == [3_000]
    for change, why in (
        ({"sig": b"\0" * 63}, "not 64 bytes"),
        ({"sig": "ab" * 64}, "not 64 bytes"),
        ({"export_wh": -1}, r"0\.\.2"),
        ({"at_ms": "1000"}, r"0\.\.2"),
        ({"meter": ""}, "meter id"),
    ):
        [(at, reason)] = counted_leaves([with_field(good, **change)], METER.public, 2_000).bad_signed
        assert at == 1_000 and re.search(f"is malformed: .*{why}", reason), reason
    fields = decode(good)
    missing = encode({**fields, FIELD: {k: v for k, v in fields[FIELD].items() if k != "sig"}})
    [(_, reason)] = counted_leaves([missing], METER.public, 2_000).bad_signed
    assert "is malformed: the signed reading is not" in reason
    with pytest.raises(Unmetered, match="does not decode"):
        signed_leaves([good[:-1]], METER.public, 2_000)
    with pytest.raises(ValueError, match="bound_ms"):
        signed_leaves([good], METER.public, -1)


# the MGMC's ways with one meter reading: the meter's own, unsigned (its 203 counters inflated), a signed
# value changed (the signature kept), signed under its own key, malformed, an honest reading of another time
# sealed again (a replay, of a whole second: the meter's curve is 1 Wh a second), stamped at any time
WAYS = ("honest", "unsigned", "forged", "foreign", "malformed", "replayed")


def _reading(way: str, t: int, stamp: int, replay_of: int) -> bytes:
    inflated = 9_000_000 + t
    if way == "unsigned":
        return reading_leaf("pcc", "meter", stamp / 1000, {"energy_wh": float(inflated)})
    if way == "foreign":
        return signed_leaf(stamp, inflated, 50, signed_at=t, key=meter_keypair(9, "mg1", "pcc"))
    if way == "replayed":
        return signed_leaf(stamp, 1000 + replay_of // 1000, 50, signed_at=replay_of)
    leaf = signed_leaf(stamp, 1000 + t // 1000, 50, signed_at=t)
    if way == "forged":
        return with_field(leaf, export_wh=inflated)
    if way == "malformed":
        return with_field(leaf, export_wh=-inflated)
    return leaf


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(WAYS), st.integers(-60_000, 60_000), st.integers(0, 70).map(lambda k: k * 1000)
        ),
        min_size=15,
        max_size=15,
    )
)
def test_what_is_counted_is_the_meters_signed_curve_never_the_mgmcs_counters(
    polls: list[tuple[str, int, int]],
) -> None:
    """Whatever the MGMC does with each poll (hypothesis: 15 polls, 5 s apart, each one of WAYS, stamped off
    by up to a minute, a replay of any time), the counted energy is the meter's own linear advance (50 Wh over
    the window) or no measurement: never a number the MGMC's own counters or its key made, and never a
    refusal of the party."""
    leaves = [
        _reading(way, t, max(0, t + stamp_off), replay_of)
        for (way, stamp_off, replay_of), t in zip(polls, range(0, 70_001, 5_000), strict=True)
    ]
    counted = counted_leaves(leaves, METER.public, 2_000)
    left_out = [way in ("unsigned", "forged", "foreign", "malformed") for way, _, _ in polls]
    assert len(counted.unsigned_at) == sum(left_out) and len(counted.leaves) == len(leaves) - sum(left_out)
    assert len(counted.bad_signed) == sum(way in ("forged", "foreign", "malformed") for way, _, _ in polls)
    try:
        assert metered(counted.leaves, (10_000, 60_000), "energy_wh", 15_000) == 50
    except Unmetered as exc:
        assert "apart around" in str(exc)
