"""Readings signed by the PCC meter itself, so an MGMC cannot seal counters its meter never showed.

Promises: `reading_digest(meter, at_ms, export_wh, import_wh)` is the one canonical message a signing meter
signs (SHA-256 over the canonical encoding of `[SIGNED_READING, meter, at_ms, export_wh, import_wh]`: the tag
makes it domain-separated from every ledger digest, whose preimage opens with a 3-element array); `sign_reading`
and `verify_reading` sign and check it with Ed25519 (`keys`); `meter_keypair(seed, mg, meter)` is the lab's
deterministic meter key (the emulator holds the private half, the DSO is given the public one). `signed_field`
/ `signed_from_field` put a `SignedReading` into a reading leaf's `signed` field and read it back (a leaf
without the field is an unsigned reading: old leaves still decode). `signed_leaves(leaves, public_key,
bound_ms)` is what the DSO counts of an MG whose meter is enrolled as signing (`counted_leaves` also says
which readings it left out): a PCC meter reading leaf that carries a signed reading counts when it verifies
under the meter's key and was signed within `bound_ms` of the leaf's `at_ms`, at the meter's time with the
meter's counters (the MGMC's own `milli` counters and time are not believed), else `Unmetered` says which leaf
and why (forged, malformed, foreign, replayed: tampering refuses the party); one without a signed reading is
left out (no stronger evidence than a reading left out, which an MGMC can always do). Pure: no clock, no I/O.
Assumes the counters are whole Wh and the time ms on the meter's clock, all uint64; anything else is refused
(`ValueError` when signing, `Unmetered` when counting), never rounded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from peergrid_ledger import keys
from peergrid_ledger.codec import UINT64_MAX, DecodeError, decode, encode
from peergrid_ledger.metering import COUNTER, METER, Unmetered

SIGNED_READING = "peergrid/meter-reading/1"  # the domain tag of a meter's signed reading
METER_KEY = "peergrid/meter-key/1"  # the domain tag of the lab's meter key derivation
MAX_METER_ID = 64  # characters of a meter id (the SunSpec serial number is 32 registers: 64 bytes)
FIELD = "signed"  # the reading leaf's field that carries the signed reading


@dataclass(frozen=True)
class SignedReading:
    """What the meter signed: its id, its clock (ms), its export (TotWhExp) and import (TotWhImp) counters in
    whole Wh, and the 64-byte Ed25519 signature over `reading_digest` of them."""

    meter: str
    at_ms: int
    export_wh: int
    import_wh: int
    signature: bytes


def _uint64(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= UINT64_MAX:
        raise ValueError(f"{name} must be an integer in 0..2**64-1, got {value!r}")
    return value


def reading_digest(meter: str, at_ms: int, export_wh: int, import_wh: int) -> bytes:
    """The 32-byte message a meter signs for one reading."""
    if not isinstance(meter, str) or not 0 < len(meter) <= MAX_METER_ID:
        raise ValueError(f"a meter id is 1..{MAX_METER_ID} characters, got {meter!r}")
    fields = [
        _uint64(n, v) for n, v in (("at_ms", at_ms), ("export_wh", export_wh), ("import_wh", import_wh))
    ]
    return hashlib.sha256(encode([SIGNED_READING, meter, *fields])).digest()


def sign_reading(
    keypair: keys.Keypair, meter: str, at_ms: int, export_wh: int, import_wh: int
) -> SignedReading:
    signature = keypair.sign(reading_digest(meter, at_ms, export_wh, import_wh))
    return SignedReading(meter, at_ms, export_wh, import_wh, signature)


def verify_reading(public_key: bytes, reading: SignedReading) -> bool:
    """True when the meter holding `public_key` signed exactly this reading; never raises."""
    try:
        message = reading_digest(reading.meter, reading.at_ms, reading.export_wh, reading.import_wh)
    except ValueError:
        return False
    return keys.verify(public_key, message, reading.signature)


def meter_keypair(seed: int, mg: str, meter: str) -> keys.Keypair:
    """The lab's key of MG `mg`'s meter named `meter`, from the scenario's integer `seed` (emulator and DSO
    config derive the same one). A lab key: anyone who reads the scenario can derive it; a field meter's key
    is made in the meter and only its public half leaves it."""
    material = hashlib.sha256(encode([METER_KEY, _uint64("seed", seed), mg, meter])).digest()
    return keys.Keypair.from_seed(material)


def signed_field(reading: SignedReading) -> dict[str, Any]:
    """The reading leaf's `signed` field (canonical values only: ints, a str, bytes)."""
    return {
        "at_ms": reading.at_ms,
        "export_wh": reading.export_wh,
        "import_wh": reading.import_wh,
        "meter": reading.meter,
        "sig": reading.signature,
    }


def signed_from_field(field: object) -> SignedReading:
    """A leaf's `signed` field back; `ValueError` saying what is wrong with a malformed one."""
    if not isinstance(field, dict) or set(field) != {"at_ms", "export_wh", "import_wh", "meter", "sig"}:
        raise ValueError("the signed reading is not {at_ms, export_wh, import_wh, meter, sig}")
    sig, meter = field["sig"], field["meter"]
    if not isinstance(sig, bytes) or len(sig) != keys.SIGNATURE_BYTES:
        raise ValueError(f"the meter's signature is not {keys.SIGNATURE_BYTES} bytes")
    if not isinstance(meter, str) or not 0 < len(meter) <= MAX_METER_ID:
        raise ValueError("the signed reading's meter id is not 1..64 characters")
    at_ms, export_wh, import_wh = (_uint64(n, field[n]) for n in ("at_ms", "export_wh", "import_wh"))
    return SignedReading(meter, at_ms, export_wh, import_wh, sig)


@dataclass(frozen=True)
class Counted:
    """What the DSO counts of a signing meter's leaves (`counted_leaves`): the leaves, each meter reading at its
    meter's values, and the `at_ms` of the meter readings left out because the meter signed none of them."""

    leaves: list[bytes]
    unsigned_at: tuple[int, ...] = ()
    said: str | None = None  # the first of them's `unsigned` field: why the MGMC says the meter signed none

    def why_unsigned(self) -> str:
        """A note naming the meter readings left out (empty when none were): for a reason that they made."""
        if not self.unsigned_at:
            return ""
        at = ", ".join(str(t) for t in self.unsigned_at[:5]) + (", ..." if len(self.unsigned_at) > 5 else "")
        said = "" if self.said is None else f", the MGMC says {self.said[:200]!r}"
        return (
            f"{len(self.unsigned_at)} meter reading(s) the meter did not sign not counted (at {at} ms{said})"
        )


def signed_leaves(leaves: Iterable[bytes], public_key: bytes, bound_ms: int) -> list[bytes]:
    """`counted_leaves(...).leaves`: the leaves the DSO counts of a signing meter."""
    return counted_leaves(leaves, public_key, bound_ms).leaves


def counted_leaves(leaves: Iterable[bytes], public_key: bytes, bound_ms: int) -> Counted:
    """`leaves` as the DSO counts them for an MG whose PCC meter signs with `public_key`: every signed PCC meter
    reading leaf with its counters and time replaced by the ones its meter signed (only for counting: a leaf
    changed so is never sealed, posted or proven), and every unsigned one left out (`Counted.unsigned_at`).
    Why an unsigned reading is dropped, not refused: a meter whose signed block failed one poll leaves that
    poll unsigned (edge `modbus`: the poll is kept whole), and an MGMC can leave any reading out of what it
    seals anyway, so an unsigned reading is no stronger evidence than none: the gap rules (`max_gap_ms`) then
    decide whether what is left still measures the window. Raises `Unmetered` for a meter reading whose
    signed reading is malformed, signed by another key or over other values, or signed more than `bound_ms`
    away from the leaf's `at_ms` (an old signed reading sealed again: a replay): that is evidence of tampering,
    and the party is refused with the reason. Other readings pass as they are."""
    if bound_ms < 0:
        raise ValueError("bound_ms must not be negative")
    counted, unsigned = [], []
    said: str | None = None
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
            raise Unmetered(
                f"the meter reading at {at} ms carries a malformed signed reading: {exc}"
            ) from None
        if not verify_reading(public_key, signed):
            raise Unmetered(
                f"the meter reading at {at} ms: its signature does not verify under the meter's key "
                "(values changed after signing, or another meter)"
            )
        if abs(signed.at_ms - at) > bound_ms:
            raise Unmetered(
                f"the meter reading at {at} ms was signed at {signed.at_ms} ms, more than {bound_ms} ms away "
                "(an old signed reading sealed again)"
            )
        milli = {
            **fields["milli"],
            COUNTER["seller"]: signed.export_wh * 1000,
            COUNTER["buyer"]: signed.import_wh * 1000,
        }
        counted.append(encode({**fields, "at_ms": signed.at_ms, "milli": milli}))
    return Counted(counted, tuple(unsigned), said)
