"""The tally of one MG's PCC meter readings that a DSO decision records (split out of `sealed_readings`, D5).

Promises: `ReadingsCount` is what the DSO verified of a party's meter readings for a decision (signed, unsigned,
refused and why, the off-clock note) and its record form (`to_json`, naming at most `REFUSED_NAMED` refused
reasons); `count_readings` (leaf bytes) and `count_decoded` (readings decoded once, `metering.read_leaf`) judge
each leaf alone, the rule `meter_signing.counted_readings` counts by, so every refused reading is named;
`tally_of` gives the same tally from the one `Counted` pass a signing meter's energy is read from. Pure; no
I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peergrid_ledger.codec import Value
from peergrid_ledger.meter_signing import FIELD, Counted, counted_readings
from peergrid_ledger.metering import METER, Undecoded, Unmetered, read_leaf

REFUSED_NAMED = 5  # refused readings whose reasons a decision record names (`ReadingsCount.to_json`)


@dataclass(frozen=True)
class ReadingsCount:
    """The PCC meter readings of one MG that the DSO verified for a decision: those of the commitment intervals
    it read (`sealed_leaves`). `signed`: meter readings whose meter signature verified under the enrolled
    key (the ones counted); `unsigned`: meter readings without one, left out where the meter is enrolled as
    signing (`signing`), counted on the MGMC's word where it is not (the DSO holds no key to check one by);
    `refused`: why each reading the DSO refused was refused: one whose signed reading it did not count (does
    not verify, malformed, or whatever `meter_signing.counted_leaves` refuses or leaves out of a reading that
    carries one), or that does not decode. `off_clock`: the note on counted ones signed more than the bound
    from their leaf's time (`meter_signing.Counted.why_off_clock`: how many, the largest offset), "" if none."""

    signing: bool
    signed: int = 0
    unsigned: int = 0
    refused: tuple[str, ...] = ()
    off_clock: str = ""

    def to_json(self) -> dict[str, Any]:
        """As the decision records it: the counts, and the reasons of the first `REFUSED_NAMED` refused (an
        MGMC sealing thousands of forged readings must not grow every record of the DSO's by thousands)."""
        return {"signing": self.signing, "signed": self.signed, "unsigned": self.unsigned,
                "refused": len(self.refused), "refused_why": list(self.refused[:REFUSED_NAMED]),
                **({"off_clock": self.off_clock} if self.off_clock else {})}  # fmt: skip


def count_readings(leaves: Sequence[bytes], key: bytes | None, bound_ms: int) -> ReadingsCount:
    """The tally of `leaves`' meter readings (`ReadingsCount`) for a meter that signs with `key` (None: not
    enrolled as signing). Each leaf is judged alone by `meter_signing.counted_leaves`, the rule `pcc_energy`
    counts by, so every refused reading is counted and named, not only the first."""
    return count_decoded([read_leaf(leaf) for leaf in leaves], key, bound_ms)


def count_decoded(readings: Sequence[Value], key: bytes | None, bound_ms: int) -> ReadingsCount:
    """`count_readings` of readings decoded once (`metering.read_leaf`): the same tally."""
    signed, unsigned, refused = 0, 0, []
    off_clock: list[tuple[int, int]] = []
    for fields in readings:
        if isinstance(fields, Undecoded):
            refused.append(f"a reading does not decode ({fields.why})")
            continue
        if not isinstance(fields, dict) or fields.get("nature") != METER:
            continue
        if key is None:
            unsigned += 1
            continue
        try:
            one = counted_readings([fields], key, bound_ms)
        except Unmetered as exc:
            refused.append(str(exc))
            continue
        if one.leaves:
            signed += 1
            off_clock.extend(one.off_clock)
        elif FIELD in fields:  # it carries a signed reading, and the DSO did not count it
            refused.append(one.why_unsigned())
        else:
            unsigned += 1
    note = Counted([], off_clock=tuple(off_clock)).why_off_clock()  # the same note pcc_energy's reason gives
    return ReadingsCount(key is not None, signed, unsigned, tuple(refused), note)


def tally_of(counted: Counted[Any]) -> ReadingsCount:
    """The tally of a signing meter's readings from the one pass `counted_leaves` made over them: the same
    `ReadingsCount`, byte for byte in the record, that `count_readings` gives judging each leaf alone (each
    refused one named as its own `Counted` names it)."""
    refused = tuple(Counted([], (at,), None, ((at, why),)).why_unsigned() for at, why in counted.bad_signed)
    unsigned = len(counted.unsigned_at) - len(counted.bad_signed)
    return ReadingsCount(True, counted.verified, unsigned, refused, counted.why_off_clock())
