"""The PCC meter's signed reading as the edge polled it: vendor model 64204 out of a poll's decoded points.

Promises: `meter_signed(points)` is the `SignedReading` the meter's 64204 block carries (`peergrid_ledger.
meter_signing`: meter id, the meter's clock in ms, export and import counters in whole Wh, the 64-byte
signature), `Unsigned(why)` when the block is there but is not a whole signed reading (a point not implemented,
a signature that is not 128 hex characters, ...) or the poll could not read it (the driver's `unread(why)` in
its place: an exception reply, a timeout; the rest of the poll kept), or None when the device has no such
block (a meter that does not sign; its leaves stay as they were). It never checks the signature: the edge is
not the one to believe it, the DSO is (`meter_signing.signed_leaves`); the edge only carries it into its
reading leaf (`commitments.reading_leaf`).
`MeterWatch` is the operator's view of it where the config gives the meter's key (`DeviceSettings.meter_key`):
each good poll's signed reading verified with `meter_signing.verify_reading` and counted by result (`ok`,
`bad_signature`, `unsigned`: no whole signed reading, the `Unsigned` reasons, or no signed block at all), and
the meter's signed time minus the poll's time (`offset_s`, from the last reading that verified: one that does
not is not the meter's word on its clock either). `observe` returns what changed, for one log line per change
of state (not per poll): a reading that stops verifying or arrives unsigned, an offset past `bound_s` (the
DSO's note bound), and their return to normal. It changes nothing the edge seals: the DSO still decides what
counts. Pure: no I/O, no clock (the poll's time is given).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from peergrid_ledger.meter_signing import SignedReading, signed_from_field, verify_reading

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


RESULTS = ("ok", "bad_signature", "unsigned")
"""A watched poll's result: verifies under the key, a whole signed reading that does not, none whole."""


@dataclass
class MeterWatch:
    """One signing meter watched against its enrolled key (`public_key`, 32 bytes): counts per result (zeros
    too, so a rate query sees the series from the start), the last verified offset, the last state."""

    public_key: bytes
    bound_s: float
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    offset_s: float | None = None  # signed time - poll time of the last reading that verified (s)
    result: str | None = None  # the last poll's
    off_clock: bool = False  # the last verified offset is beyond bound_s

    @classmethod
    def from_hex(cls, key: str, bound_s: float) -> MeterWatch:
        return cls(bytes.fromhex(key), bound_s)

    def observe(self, points: Mapping[str, Mapping[str, Any]], polled_at: float) -> list[tuple[int, str]]:
        """One good poll's decoded points, polled at wall time `polled_at` (s): counts it and returns the
        (log level, message) of each state that changed with it (none while nothing changes)."""
        reading = meter_signed(points)
        if reading is None:
            result, why = "unsigned", "the meter has no signed-reading block (64204): it does not sign"
        elif isinstance(reading, Unsigned):
            result, why = "unsigned", reading.why
        elif verify_reading(self.public_key, reading):
            result, why = "ok", ""
            self.offset_s = reading.at_ms / 1000 - polled_at
        else:
            result = "bad_signature"
            why = (
                f"the signed reading of meter {reading.meter!r} does not verify under meter_key "
                f"(a replaced meter still enrolled under its old key, a garbled register?)"
            )
        self.counts[result] += 1
        changes: list[tuple[int, str]] = []
        if result != self.result:
            if result != "ok":
                changes.append((logging.WARNING, f"{result}: {why}; the DSO does not count such readings"))
            elif self.result is not None:
                changes.append((logging.INFO, "the meter's readings verify again"))
            self.result = result
        off = self.offset_s is not None and abs(self.offset_s) > self.bound_s
        if off != self.off_clock and self.offset_s is not None:
            self.off_clock = off
            if off:
                changes.append((logging.WARNING, (
                    f"the meter's clock is {self.offset_s:+.1f} s off this Pi's (bound {self.bound_s:g} s): "
                    f"the DSO counts its readings at the meter's time"
                )))  # fmt: skip
            else:
                changes.append((logging.INFO, f"the meter's clock is within {self.bound_s:g} s again"))
        return changes
