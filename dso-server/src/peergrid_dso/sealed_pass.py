"""The DSO's one pass over a party's sealed leaves of one commitment interval (split out of `sealed_readings`, D5).

Promises: `meter_readings(leaves, most)` decodes each leaf once (`metering.read_leaf`) and keeps what metering
reads, in a small form metering reads alike: every PCC meter reading as the fields metering and meter signing
read of it (`_meter_reading`), every leaf that is no well-formed reading (which metering refuses) as a marker
(`NOT_A_READING`; one that does not decode as its `metering.Undecoded`, after the set's first `REFUSED_NAMED`
the shared `ELIDED`), the other natures' well-formed readings left out (metering passes them by: P9/D3);
with the tally of a meter that does not sign from the same pass; None when the leaves hold more than `most`
PCC meter readings (review16 P1: padding, refused before one is verified). The small form gives every
energy, refusal, note and tally the leaves decoded as they came give, word for word (tests/dso/
test_sealed_intake.py, a Hypothesis property over junk in every field metering reads).
`take_in(leaves, commitment, most)` is that pass made once where the DSO node takes a set in
(`dispute_node.offer_readings`, after checking it whole against the chain's `der_commitment`): a `SealedSet`
keeps the pass's result with the root and count it was checked against, and not the leaves, so a resolve reads
it without decoding or hashing a leaf (`sealed_readings.sealed_leaves`: before, P9's 20,000 PV leaves cost
72 ms CPU on every resolve, and the DSO resolves a trade again on each sibling's settle and each arrival).
Must never keep a leaf's decoded value whole (review22 F1: an MGMC's junk leaves in its own `der_commitment`,
~1,020 empty maps in 1,024 bytes, held ~70x their bytes decoded for the dispute's life: 148 MB for 2,011
leaves); what a set holds is a pointer per refused leaf and at most `most` meter readings of a few hundred
bytes (a junk time or counter in a signed field as its repr, ~5x its bytes at most).
`Sealed` is what a resolve reads a party's commitment intervals from: a `SealedSet` or the leaves as handed
over (the pass then made per resolve, as before). Pure; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from peergrid_dso.readings_tally import REFUSED_NAMED, ReadingsCount
from peergrid_ledger.codec import Value
from peergrid_ledger.counter_roll import ROLLS
from peergrid_ledger.meter_signing import FIELD
from peergrid_ledger.metering import COUNTER, METER, Undecoded, read_leaf

SIGNED_FIELDS = {"at_ms", "export_wh", "import_wh", "meter", "sig"}  # `meter_signing.signed_field`'s


def meter_readings(leaves: Sequence[bytes], most: int) -> tuple[list[Value], ReadingsCount] | None:
    """The `leaves` metering reads, each decoded once and kept in the small form metering reads alike
    (`metering.read_leaf`: the ledger's metering and meter signing read them so, D5, and decode none again):
    every PCC meter reading, as what metering reads of it (`_meter_reading`), and every leaf that is no
    well-formed reading (which metering refuses) as a marker: one that decodes, the shared `NOT_A_READING`;
    one that does not, its `metering.Undecoded` (the first `REFUSED_NAMED` of them, those any record or
    reason can name, with their own text; the others `ELIDED`). Other natures' readings are left out
    (metering passes them by, P9/D3). With the tally of a meter that does not sign
    (`count_readings(leaves, None, 0)`, its record form the same). None: more than `most` PCC meter
    readings. Why small: review22 F1 - kept decoded as they came, 2,011 junk leaves of one MGMC's own
    `der_commitment` (arrays of ~1,020 empty maps in 1,024 bytes) held 148 MB for the dispute's life."""
    kept: list[Value] = []
    found, refused = 0, list[str]()
    for leaf in leaves:
        fields = read_leaf(leaf)
        if isinstance(fields, Undecoded):
            named = len(refused) < REFUSED_NAMED  # a later one no record or reason reaches (docstring)
            kept.append(fields if named else ELIDED)
            refused.append(f"a reading does not decode ({fields.why})" if named else ELIDED_WHY)
            continue
        if isinstance(fields, dict) and fields.get("nature") == METER:
            found += 1
            if found > most:
                return None
            kept.append(_meter_reading(fields))
        elif not isinstance(fields, dict) or not isinstance(fields.get("milli"), dict):
            kept.append(NOT_A_READING)
    return kept, ReadingsCount(False, unsigned=found, refused=tuple(refused))


@dataclass(frozen=True)
class NotAReading:
    """Where a leaf that decodes and is no reading leaf (no map, or its `milli` no map) stood: metering reads
    it as it reads that leaf (`metering.sample_of` refuses both in the same words, meter signing and the
    tally pass both by), so the leaf's decoded value need not be kept (review22 F1)."""


NOT_A_READING = NotAReading()
# what stands for the Undecoded leaves of a set after its first REFUSED_NAMED: counted, never named
ELIDED = Undecoded("not kept: the set's first refused readings are named")
ELIDED_WHY = f"a reading does not decode ({ELIDED.why})"  # one text for them all: counted, never named


@dataclass(frozen=True)
class Shown:
    """A value meter signing refuses by its repr alone (`meter_signing.signed_from_field`'s `_uint64`: "...,
    got {value!r}"): that repr, not the value decoded (a ~5x smaller text for junk, not ~70x objects)."""

    text: str

    def __repr__(self) -> str:
        return self.text


def _meter_reading(fields: dict[str, Any]) -> dict[str, Any]:
    """What metering and meter signing read of a PCC meter reading (`metering.sample_of`, `counting_readings`,
    `meter_signing.counted_readings`, `readings_tally.count_decoded`), and in the form they read it: its
    nature; its time, device and `unsigned` note where they are what a meter reports (anything else is read
    as missing: each is only type-checked, never shown); its `milli` map with only the two counters
    (`metering.COUNTER`: a counter that is no integer a marker that is refused alike); its `signed` field
    (`_signed_field`); its `rolls` field (`counter_roll.leaf_rolls`: one that is no bool as None, refused alike). The same samples, refusals and tallies, in the same words (tests/dso/
    test_sealed_intake.py holds the two forms to that), in a few hundred bytes whatever else the leaf held."""
    kept: dict[str, Any] = {"nature": fields["nature"]}
    for name, kind in (("at_ms", int), ("device", str), ("unsigned", str)):
        if isinstance(fields.get(name), kind):
            kept[name] = fields[name]
    milli = fields.get("milli")
    if isinstance(milli, dict):
        kept["milli"] = {
            c: milli[c] if milli[c] is None or isinstance(milli[c], int) else NOT_A_READING
            for c in COUNTER.values()
            if c in milli
        }
    if FIELD in fields:
        kept[FIELD] = _signed_field(fields[FIELD])
    if ROLLS in fields:
        # whether its counter may roll (L2): dropped, the DSO would read an MQTT meter's reset as a roll-over; one
        # that is no bool as None, which metering refuses in the same fixed words
        kept[ROLLS] = fields[ROLLS] if isinstance(fields[ROLLS], bool) else None
    return kept


def _signed_field(field: Value) -> Value:
    """A meter reading's `signed` field in the form `meter_signing.signed_from_field` judges alike: one that is
    no map of its five fields as None (refused in fixed words), else the map with a signature that is no
    bytes and a meter id that is no text as None (fixed words too) and a time or counter that is no integer
    as its repr (`Shown`: the words name it)."""
    if not isinstance(field, dict) or set(field) != SIGNED_FIELDS:
        return None
    kept: dict[str, Any] = {
        "sig": field["sig"] if isinstance(field["sig"], bytes) else None,
        "meter": field["meter"] if isinstance(field["meter"], str) else None,
    }
    for name in ("at_ms", "export_wh", "import_wh"):
        kept[name] = field[name] if isinstance(field[name], int) else Shown(repr(field[name]))
    return kept


@dataclass(frozen=True)
class SealedSet:
    """One (node, commitment interval)'s leaves as the DSO node took them in (`take_in`): the `root` and `count`
    of the `der_commitment` they were checked whole against (a resolve checks the chain still holds that
    commitment: `sealed_readings.commitment_readings`), the bound `most` the pass counted PCC meter readings
    against, and the pass's result (`meter_readings`: the readings metering reads, decoded, and the tally of a
    meter that does not sign; None: more than `most` PCC meter readings). What it holds is bounded by the
    readings, not the leaves' junk (module docstring); it lives as long as the node keeps the set (while a
    pending dispute reads it: `dispute_node.DisputeSettler.done`)."""

    root: bytes
    count: int
    most: int
    found: tuple[tuple[Value, ...], ReadingsCount] | None


def take_in(leaves: Sequence[bytes], commitment: Mapping[str, Any], most: int) -> SealedSet:
    """The pass over `leaves` made once, kept with the `der_commitment` record (`query.der_commitment`: its
    `root` and `readings` count) the caller checked them whole against (`sealed_readings.verified_leaves`)."""
    found = meter_readings(leaves, most)
    kept = None if found is None else (tuple(found[0]), found[1])
    return SealedSet(bytes(commitment["root"]), int(commitment["readings"]), most, kept)


Sealed = Mapping[tuple[bytes, int], Sequence[bytes] | SealedSet]  # (node key, commitment interval) -> its set
