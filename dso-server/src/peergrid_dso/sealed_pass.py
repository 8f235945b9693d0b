"""The DSO's one pass over a party's sealed leaves of one commitment interval (split out of `sealed_readings`, D5).

Promises: `meter_readings(leaves, most)` decodes each leaf once (`metering.read_leaf`) and keeps, decoded, what
metering reads: every PCC meter reading and every leaf that is no well-formed reading (which metering refuses;
one that does not decode as `metering.Undecoded`), the other natures' well-formed readings left out (metering
passes them by: P9/D3); with the tally of a meter that does not sign from the same pass; None when the
leaves hold more than `most` PCC meter readings (review16 P1: padding, refused before one is verified).
`take_in(leaves, commitment, most)` is that pass made once where the DSO node takes a set in
(`dispute_node.offer_readings`, after checking it whole against the chain's `der_commitment`): a `SealedSet`
keeps the pass's result with the root and count it was checked against, and not the leaves, so a resolve reads
it without decoding or hashing a leaf (`sealed_readings.sealed_leaves`: before, P9's 20,000 PV leaves cost
72 ms CPU on every resolve, and the DSO resolves a trade again on each sibling's settle and each arrival).
`Sealed` is what a resolve reads a party's commitment intervals from: a `SealedSet` or the leaves as handed
over (the pass then made per resolve, as before). Pure; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from peergrid_dso.readings_tally import ReadingsCount
from peergrid_ledger.codec import Value
from peergrid_ledger.metering import METER, Undecoded, read_leaf


def meter_readings(leaves: Sequence[bytes], most: int) -> tuple[list[Value], ReadingsCount] | None:
    """The `leaves` metering reads, each decoded once and kept decoded (`metering.read_leaf`: the ledger's
    metering and meter signing read them so, D5, and decode none again): every PCC meter reading and every
    leaf that is no well-formed reading (which metering refuses; one that does not decode as
    `metering.Undecoded`), other natures' readings left out (metering passes them by, P9/D3); with the tally
    of a meter that does not sign (`count_readings(leaves, None, 0)`). None: more than `most` PCC meter
    readings."""
    kept: list[Value] = []
    found, refused = 0, list[str]()
    for leaf in leaves:
        fields = read_leaf(leaf)
        if isinstance(fields, Undecoded):
            kept.append(fields)
            refused.append(f"a reading does not decode ({fields.why})")
            continue
        if isinstance(fields, dict) and fields.get("nature") == METER:
            found += 1
            if found > most:
                return None
            kept.append(fields)
        elif not isinstance(fields, dict) or not isinstance(fields.get("milli"), dict):
            kept.append(fields)
    return kept, ReadingsCount(False, unsigned=found, refused=tuple(refused))


@dataclass(frozen=True)
class SealedSet:
    """One (node, commitment interval)'s leaves as the DSO node took them in (`take_in`): the `root` and `count`
    of the `der_commitment` they were checked whole against (a resolve checks the chain still holds that
    commitment: `sealed_readings.commitment_readings`), the bound `most` the pass counted PCC meter readings
    against, and the pass's result (`meter_readings`: the readings metering reads, decoded, and the tally of a
    meter that does not sign; None: more than `most` PCC meter readings). What it holds is at most what the
    leaves were, less the other natures' readings; it lives as long as the node keeps the set (while a pending
    dispute reads it: `dispute_node.DisputeSettler.done`)."""

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
