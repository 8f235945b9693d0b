"""D5: the ledger's metering and meter signing over readings decoded once (`metering.read_leaf`:
`samples_of`, `counting_readings`, `metered_readings`, `meter_signing.counted_readings`) read exactly as their
bytes entries do (`samples`, `counting_leaves`, `metered`, `counted_leaves`): the same values, the same
`Unmetered` reason at the same leaf, the same counted leaves and notes. The DSO decodes each sealed leaf once
per decision and hands the decoded readings on (dso-server `sealed_readings.meter_readings`); the edge keeps
the bytes entries. Since the bytes entries now decode and call the decoded ones, both are held to an oracle:
the bytes reading as it was before D5 (df654c8's `samples`, `counting_leaves` and `counted_leaves`, each
decoding its leaves itself), kept here as `_before_*`, with L3's refusal of a forward jump beyond what the
connection carries (`counter_roll.counted_forward`, 10 MW here: no capacity posted)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger.codec import DecodeError, decode, encode
from peergrid_ledger.counter_roll import bound_words, counted_forward
from peergrid_ledger.meter_signing import (
    FIELD,
    Counted,
    counted_leaves,
    counted_readings,
    meter_keypair,
    sign_reading,
    signed_field,
    signed_from_field,
    verify_reading,
)
from peergrid_ledger.metering import (
    COUNTER,
    METER,
    Undecoded,
    Unmetered,
    counter_at,
    counting_leaves,
    counting_readings,
    metered,
    metered_readings,
    read_leaf,
    samples,
    samples_of,
)

# --- the oracle: the bytes reading before D5 (df654c8), each function decoding its leaves itself -----------


def _before_sample(leaf: bytes, counter: str) -> tuple[str, int, int] | None:
    try:
        fields = decode(leaf)
    except DecodeError as exc:
        raise Unmetered(f"a reading does not decode ({exc})") from None
    if not isinstance(fields, dict) or not isinstance(fields.get("milli"), dict):
        raise Unmetered("a reading is not a reading leaf")
    value, at, device = fields["milli"].get(counter), fields.get("at_ms"), fields.get("device")
    if fields.get("nature") != METER or value is None:
        return None
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (value, at))
    if ok and isinstance(device, str):
        return device, at, value
    raise Unmetered(f"a meter reading's time, device or {counter} counter is not what a meter reports")


def _before_samples(leaves: list[bytes], counter: str) -> list[tuple[int, int]]:
    found, devices = [], set()
    for leaf in leaves:
        sample = _before_sample(leaf, counter)
        if sample is not None:
            devices.add(sample[0])
            found.append((sample[1], sample[2]))
    if len(devices) > 1:
        raise Unmetered(f"more than one meter ({', '.join(sorted(devices))}): which is the PCC is not known")
    found.sort()
    for (at0, c0), (at1, c1) in pairwise(found):
        if c1 < c0:
            raise Unmetered(
                f"the {counter} counter runs backwards between {at0} and {at1} ms (reset or replaced)"
            )
        if counted_forward(c0, c1, at1 - at0) is None:  # L3
            raise Unmetered(
                f"the {counter} counter jumps forward {c1 - c0} mWh between {at0} and {at1} ms, more than the "
                f"MG's connection carries then ({bound_words(at1 - at0)}): a scale factor raised or a meter "
                "replaced, not energy"
            )
    return found


def _before_counting(leaves: list[bytes], party: str) -> list[bytes]:
    counter = COUNTER[party]
    if party != "seller" and not any(_before_sample(leaf, counter) for leaf in leaves):
        return leaves
    counted = []
    for leaf in leaves:
        if _before_sample(leaf, counter) is None:
            fields = decode(leaf)
            if (
                isinstance(fields, dict)
                and fields.get("nature") == METER
                and isinstance(fields.get("milli"), dict)
            ):
                leaf = encode({**fields, "milli": {**fields["milli"], counter: 0}})
        counted.append(leaf)
    return counted


def _before_metered(leaves: list[bytes], window: tuple[int, int], counter: str, gap: int) -> object:
    found = _before_samples(leaves, counter)
    if not found and any(_before_sample(leaf, c) for leaf in leaves for c in COUNTER.values()):
        raise Unmetered(f"no PCC meter reading carries the {counter} counter")
    return (counter_at(found, window[1], gap) - counter_at(found, window[0], gap)) / 1000


def _before_counted(leaves: list[bytes], public_key: bytes, bound_ms: int) -> tuple[Any, ...]:
    counted, unsigned, bad, off, said, verified = [], [], [], [], None, 0
    for leaf in leaves:
        try:
            fields = decode(leaf)
        except DecodeError as exc:
            raise Unmetered(f"a reading does not decode ({exc})") from None
        if not isinstance(fields, dict) or fields.get("nature") != METER:
            counted.append(leaf)
            continue
        at = fields.get("at_ms")
        if not isinstance(at, int) or isinstance(at, bool) or not isinstance(fields.get("milli"), dict):
            raise Unmetered("a meter reading is not a reading leaf")
        if FIELD not in fields:
            why = fields.get("unsigned")
            said = why if said is None and isinstance(why, str) else said
            unsigned.append(at)
            continue
        try:
            signed = signed_from_field(fields[FIELD])
        except ValueError as exc:
            unsigned.append(at)
            bad.append((at, f"is malformed: {exc}"))
            continue
        if not verify_reading(public_key, signed):
            unsigned.append(at)
            bad.append(
                (at, "does not verify under the meter's key (values changed after signing, or another meter)")
            )
            continue
        if abs(signed.at_ms - at) > bound_ms:
            off.append((at, signed.at_ms))
        milli = {
            **fields["milli"],
            "energy_wh": signed.export_wh * 1000,
            "import_wh": signed.import_wh * 1000,
        }
        counted.append(encode({**fields, "at_ms": signed.at_ms, "milli": milli}))
        verified += 1
    return counted, tuple(unsigned), said, tuple(bad), tuple(off), verified


KEY = meter_keypair(5, "mg1", "pcc")
OTHER = meter_keypair(6, "mg1", "pcc")


def outcome(read: Callable[[], object]) -> object:
    """What a reading gives: its value, or the `Unmetered` reason (any other exception propagates)."""
    try:
        return read()
    except Unmetered as exc:
        return f"Unmetered: {exc}"


@st.composite
def reading(draw: st.DrawFn) -> bytes:
    """One leaf an MGMC may seal: a PCC meter reading (signed by its meter, by another key, with a garbled
    signed field, unsigned with or without a reason, a counter missing, its time or counter malformed, a
    second meter), another nature's reading, a reading that is no reading leaf, or bytes that do not
    decode."""
    kind = draw(st.sampled_from(["signed", "foreign", "garbled_sig", "unsigned", "said", "no_import",
                                 "bad_time", "bad_counter", "second_meter", "pv", "no_milli", "list",
                                 "undecodable"]))  # fmt: skip
    at = draw(st.integers(0, 60_000))
    export, imp = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
    milli: dict[str, Any] = {COUNTER["seller"]: export * 1000, COUNTER["buyer"]: imp * 1000, "power_w": 0}
    fields: dict[str, Any] = {"at_ms": at, "device": "pcc", "milli": milli, "nature": "meter"}
    if kind in ("signed", "foreign", "garbled_sig"):
        signed_at = at + draw(st.integers(-5_000, 5_000))
        signed_export = export + draw(st.integers(0, 3))
        keypair = KEY if kind != "foreign" else OTHER
        field = signed_field(sign_reading(keypair, "pcc", max(0, signed_at), signed_export, imp))
        fields["signed"] = field if kind != "garbled_sig" else {**field, "sig": b"\x00" * 3}
    elif kind == "said":
        fields["unsigned"] = "the meter's signed block failed"
    elif kind == "no_import":
        del milli[COUNTER["buyer"]]
    elif kind == "bad_time":
        fields["at_ms"] = draw(st.sampled_from([-1, True, "soon"]))
    elif kind == "bad_counter":
        milli[COUNTER["seller"]] = draw(st.sampled_from([-5, False, "lots"]))
    elif kind == "second_meter":
        fields["device"] = "pcc2"
    elif kind == "pv":
        fields.update(device="pv1", nature="pv", milli={"power_w": export})
    elif kind == "no_milli":
        fields["milli"] = draw(st.sampled_from([3, "garbled", [1]]))
    elif kind == "list":
        return encode([at, export])
    elif kind == "undecodable":
        return draw(st.sampled_from([b"\xff\x01", b"", b"\xa1\x61"]))
    return encode(fields)


READINGS = st.lists(reading(), max_size=12)
WINDOWS = st.tuples(st.integers(0, 60_000), st.integers(0, 30_000)).map(lambda p: (p[0], p[0] + p[1]))


@settings(max_examples=400, deadline=None)
@given(READINGS, st.sampled_from(sorted(COUNTER)))
def test_samples_and_counting_read_the_same_decoded(leaves: list[bytes], party: str) -> None:
    readings = [read_leaf(leaf) for leaf in leaves]
    counter = COUNTER[party]
    before = outcome(lambda: _before_samples(leaves, counter))
    assert (
        outcome(lambda: samples_of(readings, counter)) == before == outcome(lambda: samples(leaves, counter))
    )
    assert outcome(lambda: counting_leaves(leaves, party)) == outcome(lambda: _before_counting(leaves, party))
    by_bytes = outcome(lambda: [read_leaf(leaf) for leaf in _before_counting(leaves, party)])
    assert outcome(lambda: counting_readings(readings, party)) == by_bytes


@settings(max_examples=400, deadline=None)
@given(READINGS, st.sampled_from(sorted(COUNTER)), WINDOWS, st.integers(1, 40_000))
def test_metered_reads_the_same_decoded(
    leaves: list[bytes], party: str, window: tuple[int, int], gap: int
) -> None:
    readings = [read_leaf(leaf) for leaf in leaves]

    def by_bytes() -> object:
        return metered(counting_leaves(leaves, party), window, COUNTER[party], gap)

    def decoded() -> object:
        return metered_readings(counting_readings(readings, party), window, COUNTER[party], gap)

    def before() -> object:
        return _before_metered(_before_counting(leaves, party), window, COUNTER[party], gap)

    assert outcome(decoded) == outcome(by_bytes) == outcome(before)


def _same_count(by_bytes: Counted[bytes], decoded: Counted[Any]) -> None:
    assert [read_leaf(leaf) for leaf in by_bytes.leaves] == decoded.leaves
    for name in ("unsigned_at", "said", "bad_signed", "off_clock", "verified", "meter_times"):
        assert getattr(by_bytes, name) == getattr(decoded, name), name


@settings(max_examples=400, deadline=None)
@given(READINGS, st.integers(0, 6_000), WINDOWS, st.integers(1, 40_000))
def test_a_signing_meters_count_is_the_same_decoded(
    leaves: list[bytes], bound_ms: int, window: tuple[int, int], gap: int
) -> None:
    """`counted_readings` counts, refuses and notes as `counted_leaves` does, its counted readings the same
    as the bytes entry's decoded, and the energy read from either is the same."""
    readings = [read_leaf(leaf) for leaf in leaves]
    before = outcome(lambda: _before_counted(leaves, KEY.public, bound_ms))
    if isinstance(before, str):  # refused: by every entry, in the same words
        assert outcome(lambda: counted_leaves(leaves, KEY.public, bound_ms)) == before
        assert outcome(lambda: counted_readings(readings, KEY.public, bound_ms)) == before
        return
    by_bytes = counted_leaves(leaves, KEY.public, bound_ms)
    fields = ("leaves", "unsigned_at", "said", "bad_signed", "off_clock", "verified")
    assert tuple(getattr(by_bytes, name) for name in fields) == before
    decoded = counted_readings(readings, KEY.public, bound_ms)
    _same_count(by_bytes, decoded)
    assert by_bytes.brackets(window, gap) == decoded.brackets(window, gap)
    for counter in COUNTER.values():
        from_decoded = outcome(lambda c=counter: metered_readings(decoded.leaves, window, c, gap))
        assert from_decoded == outcome(lambda c=counter: metered(by_bytes.leaves, window, c, gap))


def test_a_leaf_that_does_not_decode_is_refused_in_the_same_words() -> None:
    """The one `Undecoded` stands where the leaf would: every entry raises the codec's reason for it."""
    garbled = b"\xff\x01"
    found = read_leaf(garbled)
    assert isinstance(found, Undecoded)
    for read in (
        lambda: samples_of([found], "energy_wh"),
        lambda: counted_readings([found], KEY.public, 0),
        lambda: metered_readings([found], (0, 1), "energy_wh", 10),
    ):
        assert outcome(read) == outcome(lambda: samples([garbled], "energy_wh"))
        assert str(outcome(read)).startswith("Unmetered: a reading does not decode (")


def test_counting_leaves_keeps_the_bytes_it_does_not_change() -> None:
    """The bytes entry gives back the very leaves it does not change, re-encoding only the readings it sets
    a missing counter on (a buyer's list as given where no reading shows an import counter)."""
    pv = encode({"at_ms": 1, "device": "pv1", "milli": {"power_w": 3}, "nature": "pv"})
    no_import = encode({"at_ms": 2, "device": "pcc", "milli": {"energy_wh": 5}, "nature": "meter"})
    leaves = [pv, no_import]
    assert counting_leaves(leaves, "buyer") is leaves
    seller = counting_leaves(leaves, "seller")
    assert seller[0] is pv and decode(seller[1])["milli"] == {"energy_wh": 5}  # it had its counter
    buyer_too = [*leaves, encode({"at_ms": 3, "device": "pcc", "milli": {"import_wh": 0}, "nature": "meter"})]
    assert decode(counting_leaves(buyer_too, "buyer")[1])["milli"] == {"energy_wh": 5, "import_wh": 0}


def test_a_verified_readings_meter_time_is_what_brackets_reads() -> None:
    """`Counted.meter_times` holds each counted reading's signed time, joined in order: `brackets` reads
    them without decoding a leaf."""
    leaves = [
        encode(
            {
                "at_ms": at,
                "device": "pcc",
                "milli": {"energy_wh": 0, "import_wh": 0},
                "nature": "meter",
                "signed": signed_field(sign_reading(KEY, "pcc", at + 100, 0, 0)),
            }
        )
        for at in (0, 10_000)
    ]
    one, two = (counted_leaves([leaf], KEY.public, 0) for leaf in leaves)
    joined = one.joined(two)
    assert joined.meter_times == (100, 10_100) and joined.brackets((100, 10_100), 10_000)
    assert not joined.brackets((0, 10_100), 10_000)  # the meter's time, not the MGMC's stamp
