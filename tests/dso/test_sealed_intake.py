"""D5 (P9's 72 ms): the DSO node makes the one pass over a commitment interval's leaves where it takes them in
(`dispute_node.offer_readings` -> `sealed_pass.take_in`), keeps the pass's result with the root and count it
checked them against (`SealedSet`), not the leaves, and a resolve reads that (`sealed_readings.
commitment_readings`): no leaf decoded, no Merkle root computed, per resolve. The decision is the one the
leaves give, record and all, whatever they hold; a set that is not the chain's commitment is refused as before.
On a real MGMC chain (tests/dso's market), leaves as the edge makes them."""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid_dso import sealed_readings
from peergrid_dso.disputes import Unresolved, Vouched, resolve, to_json
from peergrid_dso.readings_tally import ReadingsCount, count_decoded, tally_of
from peergrid_dso.sealed_pass import SealedSet, meter_readings, take_in
from peergrid_ledger import codec, merkle, meter_signing, metering, query
from peergrid_ledger.codec import decode, encode

from .test_disputes import CLOCK, Market, chain_time, ramp
from .test_disputes_node import final_blocks, hand_over, settler_for
from .test_disputes_readings import dispute, signed_leaves
from .test_readings_padding import garbage_signed
from .test_sealed_decoded_once import pv_leaves

MOST = CLOCK.most_meter_readings


def taken_in(m: Market) -> dict[tuple[bytes, int], SealedSet]:
    """Every set of `m` as the node takes it in (checked against the chain's record, read once)."""
    taken = {}
    for (node, bucket), leaves in m.sealed.items():
        record = query.der_commitment(m.chain.state, node, bucket)
        assert record is not None and merkle.root(list(leaves)) == record["root"]
        taken[(node, bucket)] = take_in(leaves, record, MOST)
    return taken


def _honest() -> list[bytes]:
    return signed_leaves(ramp(300.0, export=True))


def _broken_meter() -> list[bytes]:
    honest = _honest()
    return [*honest[:5], encode({**decode(honest[5]), "milli": "garbled"}), *honest[6:]]


# the seller's sealed leaves, and those without a time (sealed in commitment interval 17, the window's)
SELLERS: dict[str, Callable[[], tuple[list[bytes], list[bytes]]]] = {
    "honest": lambda: (_honest(), []),
    "pv beside": lambda: (_honest() + pv_leaves(_honest(), 2_000), []),
    "padded": lambda: (_honest() + garbage_signed(_honest()[0], MOST + 1, 17), []),
    "broken meter leaf": lambda: (_broken_meter(), []),
    "undecodable leaf": lambda: (_honest(), [b"\xff\x01"]),
    "no reading leaf": lambda: (_honest(), [encode([1, 2])]),
    "one unsigned": lambda: (signed_leaves(ramp(300.0, True), unsigned_at=[ramp(300.0, True)[5][0]]), []),
}


def record(decision: Any) -> dict[str, Any]:
    return to_json(decision)


@pytest.mark.parametrize("signing", [True, False])
@pytest.mark.parametrize("seller", sorted(SELLERS))
def test_a_resolve_from_the_sets_taken_in_is_the_one_from_the_leaves(seller: str, signing: bool) -> None:
    """Whatever the seller sealed (honest, 2,000 PV leaves beside, padded past the bound, a broken or
    undecodable leaf, a leaf that is no reading, an unsigned poll), read as signing or not, before and after
    the deadline: the decision from the taken-in sets is the leaves' decision, record bytes and all."""
    m, tid, meters = dispute(*SELLERS[seller]())
    key = meters if signing else None
    taken = taken_in(m)
    for _ in range(2):
        from_leaves = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=key)
        from_sets = resolve(m.chain.state, tid, CLOCK, m.node_of(), taken, chain_time(m), signing=key)
        assert record(from_sets) == record(from_leaves)
        m.pass_time(m.chain.tip.time + 120_000)  # past the deadline: the rules for an unmetered side


def test_a_resolve_from_sets_taken_in_decodes_and_hashes_no_leaf(monkeypatch: pytest.MonkeyPatch) -> None:
    """P9's case: the signing seller's eleven readings beside 20,000 PV leaves. Taken in once (one decode of
    each leaf there), a resolve decodes none and computes no Merkle root; from the leaves it decodes all
    20,000 and hashes them, every time."""
    m, tid, meters = dispute(_honest() + pv_leaves(_honest(), 20_000))
    taken = taken_in(m)
    seen: Counter[str] = Counter()
    decode_, root_ = codec.decode, merkle.root

    def counted_decode(raw: bytes, *args: Any) -> Any:
        seen["decode"] += 1
        return decode_(raw, *args)

    def counted_root(leaves: list[bytes]) -> bytes:
        seen["root"] += 1
        return root_(leaves)

    monkeypatch.setattr(metering, "decode", counted_decode)
    monkeypatch.setattr(meter_signing, "decode", counted_decode)
    monkeypatch.setattr(sealed_readings.merkle, "root", counted_root)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), taken, chain_time(m), signing=meters)
    assert isinstance(decision, Vouched) and (decision.rule, decision.delivered) == ("both metered", 300)
    assert seen == Counter()
    resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=meters)
    assert seen["decode"] >= 20_000 and seen["root"] >= 3


def test_a_set_taken_in_holds_no_other_natures_reading() -> None:
    """What the node keeps of a set is the pass's readings: its meter readings decoded, the 2,000 PV leaves
    beside them not at all (before, every leaf was kept as handed over until the dispute ended)."""
    m, _, _ = dispute(_honest() + pv_leaves(_honest(), 2_000))
    seller = m.nodes["s"].public
    kept = {k: s for k, s in taken_in(m).items() if k[0] == seller}
    assert sum(s.count for s in kept.values()) == 11 + 2_000
    assert all(s.found is not None for s in kept.values())
    readings = [r for s in kept.values() if s.found is not None for r in s.found[0]]
    assert len(readings) == 11 and {r["nature"] for r in readings} == {"meter"}


def test_a_set_taken_in_is_not_the_sealed_one_when_the_chain_holds_another_commitment() -> None:
    """The check against the chain's record stays per resolve (a dict read, no hashing): a set taken in
    whose root or count is not the chain's commitment of that interval - one taken in against another
    chain's record, or handed over for a commitment the chain holds otherwise - is refused as the leaves
    would be; a set for an interval the chain holds no commitment of reads as nothing committed."""
    m, tid, _ = dispute(_honest())
    taken = taken_in(m)
    seller = m.nodes["s"].public
    bucket = min(b for node, b in taken if node == seller)
    good = taken[(seller, bucket)]
    for stale in (SealedSet(os.urandom(32), good.count, MOST, good.found),
                  SealedSet(good.root, good.count + 1, MOST, good.found)):  # fmt: skip
        decision = resolve(
            m.chain.state, tid, CLOCK, m.node_of(), {**taken, (seller, bucket): stale}, chain_time(m)
        )
        assert isinstance(decision, Unresolved)
        assert f"commitment interval {bucket} are not the sealed ones" in decision.why
    nothing = sealed_readings.commitment_readings(m.chain.state, seller, 999, {(seller, 999): good}, MOST)
    assert nothing is not None and list(nothing[0]) == [] and nothing[1].unsigned == 0
    with pytest.raises(ValueError, match="taken in at"):
        sealed_readings.commitment_readings(m.chain.state, seller, bucket, taken, MOST + 1)


def test_the_node_keeps_the_pass_not_the_leaves_and_drops_it_with_the_dispute() -> None:
    """`offer_readings` takes each set in once (a `SealedSet` checked against the chain's record), the
    dispute settles from them as from the leaves, and they are dropped when it no longer needs them."""
    m, tid, _ = dispute(_honest() + pv_leaves(_honest(), 500))
    settler, _, _ = settler_for(m)
    final_blocks(m, settler)
    settler._take_candidates()
    assert tid in settler.pending
    for mg in ("s", "b"):
        hand_over(m, settler, mg)
    assert settler.sealed and all(isinstance(s, SealedSet) for s in settler.sealed.values())
    assert sum(s.count for s in settler.sealed.values()) == sum(len(v) for v in m.sealed.values())
    expected = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert to_json(resolve(m.chain.state, tid, CLOCK, m.node_of(), settler.sealed, chain_time(m))) == to_json(
        expected
    )
    settler.done(tid)
    assert settler.sealed == {}


# review22 F1: what a set taken in holds is bounded by its readings, not by the junk an MGMC seals beside them


def full_pass(leaves: list[bytes], most: int) -> tuple[list[Any], ReadingsCount] | None:
    """The pass as 867f442 made it, every leaf metering reads kept decoded as it came (the reference the
    small form must read alike)."""
    kept: list[Any] = []
    found, refused = 0, []
    for leaf in leaves:
        fields = metering.read_leaf(leaf)
        if isinstance(fields, metering.Undecoded):
            kept.append(fields)
            refused.append(f"a reading does not decode ({fields.why})")
        elif isinstance(fields, dict) and fields.get("nature") == metering.METER:
            found += 1
            if found > most:
                return None
            kept.append(fields)
        elif not isinstance(fields, dict) or not isinstance(fields.get("milli"), dict):
            kept.append(fields)
    return kept, ReadingsCount(False, unsigned=found, refused=tuple(refused))


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("=", call())
    except metering.Unmetered as exc:
        return ("Unmetered", str(exc))


def read_alike(readings: list[Any], key: bytes) -> list[Any]:
    """Everything metering, meter signing and the tally give of decoded readings: each side's energy as a
    meter that does not sign is read, a signing meter's count (its notes, tally and energy) and the tally
    judged one reading at a time, with and without the key (values or `Unmetered`'s words)."""
    window, gap = (10_000, 50_000), 30_000

    def energy(leaves: list[Any], side: str) -> Any:
        return metering.metered_readings(leaves, window, metering.COUNTER[side], gap)

    def signed() -> Any:
        c = meter_signing.counted_readings(readings, key, 1_000)
        from_signed = [outcome(lambda side=side: energy(c.leaves, side)) for side in ("seller", "buyer")]
        return (c.unsigned_at, c.said, c.bad_signed, c.off_clock, c.verified, c.meter_times, c.why_unsigned(),
                c.why_off_clock(), tally_of(c).to_json(), from_signed)  # fmt: skip

    plain = [
        outcome(lambda side=side: energy(metering.counting_readings(readings, side), side))
        for side in ("seller", "buyer")
    ]
    tallies = [count_decoded(readings, k, 1_000).to_json() for k in (key, None)]
    return [plain, outcome(signed), tallies]


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**40) | st.text(max_size=8) | st.binary(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
SIGNER = meter_signing.meter_keypair(7, "mg", "m1")


@st.composite
def a_leaf(draw: st.DrawFn) -> bytes:
    """A leaf an MGMC may seal: a meter reading (signed or not, honest, off the clock or forged) any of whose
    fields may be junk, one of another nature, junk that is no reading, or bytes that do not decode."""
    kind = draw(st.sampled_from(["meter", "meter", "meter", "other", "junk", "undecodable"]))
    if kind == "undecodable":
        return draw(st.sampled_from([b"\xff", b"\x82\x01", b"\xa1\x01\x02", b"\x18"]))
    if kind == "junk":
        return encode(draw(JUNK | st.lists(st.just({}), min_size=200, max_size=300)))
    at = draw(st.integers(0, 60_000))
    export, imported = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
    fields: dict[str, Any] = {"nature": "meter" if kind == "meter" else "pv", "device": "m1", "at_ms": at,
                              "milli": {"energy_wh": export * 1000, "import_wh": imported * 1000, "power_w": 5}}  # fmt: skip
    if draw(st.booleans()):
        reading = meter_signing.sign_reading(
            SIGNER, "m1", at + draw(st.sampled_from([0, 5_000])), export, imported
        )
        fields["signed"] = meter_signing.signed_field(reading)
    elif draw(st.booleans()):
        fields["unsigned"] = draw(st.text(max_size=5))
    for _ in range(draw(st.integers(0, 2))):  # junk in a field metering reads, or beside them
        where = draw(st.sampled_from(["at_ms", "device", "milli", "nature", "unsigned", "extra", "milli.energy_wh",
                                      "milli.import_wh", "milli.x", "signed", "signed.sig", "signed.meter",
                                      "signed.at_ms", "signed.export_wh", "signed.import_wh"]))  # fmt: skip
        top, _, inner = where.partition(".")
        value = draw(JUNK | st.just([{}] * 250))
        if not inner:
            fields[top] = value
        elif isinstance(fields.get(top), dict):
            fields[top] = {**fields[top], inner: value}
    return encode(fields)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(a_leaf(), max_size=12), st.sampled_from([3, 12]))
def test_the_small_form_reads_as_the_leaves_decoded(leaves: list[bytes], most: int) -> None:
    """Any leaves: the pass's small form (`sealed_pass.meter_readings`) and every leaf kept decoded as it came
    (867f442) give the same energies, refusals, signed counts, notes and tallies, word for word."""
    small, full = meter_readings(leaves, most), full_pass(leaves, most)
    assert (small is None) == (full is None)
    if small is None or full is None:
        return
    assert small[1].to_json() == full[1].to_json() and len(small[1].refused) == len(full[1].refused)
    assert read_alike(small[0], SIGNER.public) == read_alike(full[0], SIGNER.public)


def held_bytes(make: Callable[[], Any]) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made = make()
        return tracemalloc.get_traced_memory()[0] - before, made
    finally:
        tracemalloc.stop()


def largest(filler: Any, fields: dict[str, Any] | None = None, where: str = "") -> bytes:
    """The largest leaf of at most 1,024 bytes (the API's `MAX_LEAF_HEX`) holding `filler` repeated: alone in
    an array, or as `fields[where]`."""
    n = 1024
    while True:
        value = [filler] * n
        leaf = encode(value if fields is None else {**fields, where: value})
        if len(leaf) <= 1024:
            return leaf
        n -= 1


def test_a_set_of_junk_leaves_holds_small_markers_and_decides_as_the_leaves() -> None:
    """R22's F1: 600 leaves of ~1,020 empty maps each (0.6 MB raw; 44 MB held decoded as they came), beside
    them meter readings up to the bound each carrying such junk in a field metering reads, or does not, and
    leaves that do not decode. The set taken in holds a few dozen bytes per leaf, and its tally and every
    decision from it are the leaves' (kept decoded as they came), record bytes and all."""
    honest = signed_leaves(ramp(300.0, export=True))
    reading = decode(honest[0])
    junk = [largest({}) for _ in range(600)]
    meters = [
        largest({}, reading, "extra"),
        largest({}, {**reading, "signed": {**reading["signed"]}}, "at_ms"),
    ]
    signed_junk = {**reading, "signed": {**reading["signed"], "export_wh": [{}] * 300}}
    undecodable = [largest({})[:-1] for _ in range(600)]
    leaves = [*junk, *meters, encode(signed_junk), *undecodable]
    raw = sum(map(len, leaves))
    held, taken = held_bytes(lambda: take_in(leaves, {"root": b"\0" * 32, "readings": len(leaves)}, MOST))
    assert taken.found is not None and len(taken.found[0]) == len(leaves)
    assert held < 40 * len(leaves) + 50_000 and held < raw // 20, (held, raw)  # before: ~70x raw
    full = full_pass(leaves, MOST)
    assert full is not None and taken.found[1].to_json() == full[1].to_json()
    assert read_alike(list(taken.found[0]), SIGNER.public) == read_alike(full[0], SIGNER.public)
    for unstamped in (junk[:50], [*meters, encode(signed_junk)], undecodable[:20] + junk[:5]):
        m, tid, signing = dispute(honest, unstamped)
        for key in (signing, None):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(sealed_readings, "meter_readings", full_pass)
                as_they_came = resolve(
                    m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=key
                )
            small = resolve(m.chain.state, tid, CLOCK, m.node_of(), taken_in(m), chain_time(m), signing=key)
            assert record(small) == record(as_they_came)
