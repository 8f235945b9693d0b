"""The DSO's one pass over a party's sealed leaves of one commitment interval (split out of `sealed_readings`, D5).

Promises: `meter_readings(leaves, most)` decodes each leaf once (`metering.read_leaf`) and keeps, decoded, what
metering reads: every PCC meter reading and every leaf that is no well-formed reading (which metering refuses;
one that does not decode as `metering.Undecoded`), the other natures' well-formed readings left out (metering
passes them by: P9/D3); with the tally of a meter that does not sign from the same pass; None when the
leaves hold more than `most` PCC meter readings (review16 P1: padding, refused before one is verified). Pure;
no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence

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
