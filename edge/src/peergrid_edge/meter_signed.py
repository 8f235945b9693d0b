"""The PCC meter's signed reading as the edge polled it: vendor model 64204 out of a poll's decoded points.

Promises: `meter_signed(points)` is the `SignedReading` the meter's 64204 block carries (`peergrid_ledger.
meter_signing`: meter id, the meter's clock in ms, export and import counters in whole Wh, the 64-byte
signature), `Unsigned(why)` when the block is there but is not a whole signed reading (a point not implemented,
a signature that is not 128 hex characters, ...) or the poll could not read it (the driver's `unread(why)` in
its place: an exception reply, a timeout; the rest of the poll kept), or None when the device has no such
block (a meter that does not sign; its leaves stay as they were). It never checks the signature: the edge is
not the one to believe it, the DSO is (`meter_signing.signed_leaves`); the edge only carries it into its
reading leaf (`commitments.reading_leaf`). Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from peergrid_ledger.meter_signing import SignedReading, signed_from_field

MODEL = "64204"
UNREAD = "(unread)"
"""The key of a signed block the poll could not read (`unread`): no SunSpec point is named so."""
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{128}")


def unread(why: str) -> dict[str, Any]:
    """What a driver puts in a poll's points for a signed block it could not read, and why (review15 M5:
    the leaf's `unsigned` field then says why, for the DSO's note)."""
    return {UNREAD: why}


@dataclass(frozen=True)
class Unsigned:
    """A signed-reading block that does not hold a whole signed reading, and why."""

    why: str


def meter_signed(points: Mapping[str, Mapping[str, Any]]) -> SignedReading | Unsigned | None:
    block = points.get(MODEL)
    if block is None:
        return None
    if UNREAD in block:
        return Unsigned(f"the meter's signed block was not read: {block[UNREAD]}")
    signature, meter = block.get("Sig"), block.get("MtrId")
    if not isinstance(signature, str) or not _HEX_SIGNATURE.fullmatch(signature):
        return Unsigned("the meter's signature is not 128 hex characters")
    values = {name: block.get(point) for name, point in
              (("at_ms", "Tms"), ("export_wh", "TotWhExp"), ("import_wh", "TotWhImp"))}  # fmt: skip
    whole = {}
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            return Unsigned(f"the signed reading's {name} is not implemented ({value!r})")
        whole[name] = value
    try:
        return signed_from_field({**whole, "meter": meter, "sig": bytes.fromhex(signature)})
    except ValueError as exc:
        return Unsigned(str(exc))
