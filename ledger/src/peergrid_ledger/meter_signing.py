"""Readings signed by the PCC meter itself, so an MGMC cannot seal counters its meter never showed.

Promises: `reading_digest(meter, at_ms, export_wh, import_wh)` is the one canonical message a signing meter
signs (SHA-256 over the canonical encoding of `[SIGNED_READING, meter, at_ms, export_wh, import_wh]`: the tag
makes it domain-separated from every ledger digest, whose preimage opens with a 3-element array); `sign_reading`
and `verify_reading` sign and check it with Ed25519 (`keys`); `meter_keypair(seed, mg, meter)` is the lab's
deterministic meter key (the emulator holds the private half, the DSO is given the public one). `signed_field`
/ `signed_from_field` put a `SignedReading` into a reading leaf's `signed` field and read it back (a leaf
without the field is an unsigned reading: old leaves still decode). `signed_leaves(leaves, public_key,
bound_ms)` is what the DSO counts of an MG whose meter is enrolled as signing (`counted_leaves` also says
which readings it left out and why; `counted_readings` the same over readings decoded once,
`metering.read_leaf`): a PCC meter reading leaf that carries a signed reading that verifies
under the meter's key counts, at the meter's time with the meter's counters (the MGMC's own `milli` counters
and time are not believed); one without a signed reading, or whose signed reading is malformed or does not
verify (values changed, another meter's key, a garbled register), is left out with its reason, and the gap
rule (`metering`'s `max_gap_ms`) decides whether the rest still measures the window. Never a refusal of the
party (review15 M1): an MGMC can leave any reading out at no cost (seal it unsigned), so a bad signature is
no stronger evidence than none, and refusing on it bound only honest MGs (a garbled block, a replaced meter
under the old key). Nor is a signed time far from the leaf's `at_ms` refused: that stamp is the MGMC's own,
and the reading counts at the meter's time, so an old signed reading sealed again is only a true point of the
meter's counter curve; one signed more than `bound_ms` away is noted (`Counted.off_clock`: a drifting meter
clock, which no 64204 point can set, or a slow meter), never dropped. Pure: no clock, no I/O.
Assumes the counters are whole Wh and the time ms on the meter's clock, all uint64; anything else is refused
when signing (`ValueError`) and left out when counting, never rounded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from peergrid_ledger import keys
from peergrid_ledger.codec import UINT64_MAX, DecodeError, Value, decode, encode
from peergrid_ledger.metering import COUNTER, METER, Undecoded, Unmetered, read_leaf

SIGNED_READING = "peergrid/meter-reading/1"  # the domain tag of a meter's signed reading
METER_KEY = "peergrid/meter-key/1"  # the domain tag of the lab's meter key derivation
MAX_METER_ID = 64  # characters of a meter id (the SunSpec serial number is 32 registers: 64 bytes)
FIELD = "signed"  # the reading leaf's field that carries the signed reading
# How many commitment intervals beyond a window's the DSO reads for a signing meter whose clock is off the
# MGMC's stamps (review16 C1: dso-server `sealed_readings`), and so how far an MGMC posts its readings for a
# dispute (`stamp_offsets`): a few minutes at the deployed 60 s, a week or three of a 100-ppm RTC's drift after
# the edge's 2-s warning. Uncapped, a claimed offset would make the DSO read a day of commitments.
CLOCK_REACH_COMMITS = 3
# The fastest PCC meter poll whose readings the DSO counts (review16 P1: dso-server `sealed_readings` refuses
# a commitment interval holding more than commit_ms // MIN_POLL_MS + 1 meter readings before verifying one),
# and so the fastest an edge may poll its PCC meter (edge `config.DeviceSettings`). Ten a second, ten times
# the edge's default poll (1 s; the lab's are slower): a meter's energy registers move about once a second,
# so faster polls only repeat a reading. A bound on the padding, not a rate anyone should run.
MIN_POLL_MS = 100
L = TypeVar("L")  # the form of a `Counted`'s leaves: bytes (`counted_leaves`) or decoded (`counted_readings`)


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
class Counted(Generic[L]):
    """What the DSO counts of a signing meter's leaves (`counted_leaves`; of decoded readings,
    `counted_readings`): the leaves in the form given (bytes, or decoded readings), each meter reading at its
    meter's values; `unsigned_at`, the `at_ms` of every meter reading left out because its meter did not sign
    it: none carried (`said`: the first one's `unsigned` field, why the MGMC says so) or the one carried is
    malformed or does not verify, those also in `bad_signed` as (`at_ms`, why); `off_clock`, (`at_ms`, signed
    `at_ms`) of counted ones the meter signed more than the bound away from the MGMC's stamp (a note only);
    `verified`, how many meter readings counted (their signed reading verified), so that one pass over the
    leaves gives the DSO's tally of them too (dso-server `sealed_readings.ReadingsCount`); `meter_times`, the
    meter's time (ms) of each counted meter reading (`brackets` reads them, not the leaves)."""

    leaves: list[L]
    unsigned_at: tuple[int, ...] = ()
    said: str | None = (
        None  # the first unsigned one's `unsigned` field: why the MGMC says the meter signed none
    )
    bad_signed: tuple[tuple[int, str], ...] = ()
    off_clock: tuple[tuple[int, int], ...] = ()
    verified: int = 0
    meter_times: tuple[int, ...] = ()

    def why_unsigned(self) -> str:
        """A note naming the meter readings left out, those with a signed reading that does not verify with
        their reasons (empty when none were left out): for a reason that they made."""
        if not self.unsigned_at:
            return ""
        at = ", ".join(str(t) for t in self.unsigned_at[:5]) + (", ..." if len(self.unsigned_at) > 5 else "")
        said = "" if self.said is None else f", the MGMC says {self.said[:200]!r}"
        bad = ""
        if self.bad_signed:
            first = "; ".join(f"at {t} ms {why}" for t, why in self.bad_signed[:3])
            more = "; ..." if len(self.bad_signed) > 3 else ""
            bad = (
                f"; {len(self.bad_signed)} of them carry a signed reading that does not count: {first}{more}"
            )
        return f"{len(self.unsigned_at)} meter reading(s) the meter did not sign not counted (at {at} ms{said}{bad})"

    def why_off_clock(self) -> str:
        """A note on the meter's clock against the MGMC's stamps (empty when every signed time was within the
        bound): the largest offset, so an operator sees a drifting or slow meter."""
        if not self.off_clock:
            return ""
        at, signed = max(self.off_clock, key=lambda pair: abs(pair[1] - pair[0]))
        return (
            f"{len(self.off_clock)} meter reading(s) signed off the MGMC's stamp, counted at the meter's time "
            f"(the largest: stamped {at} ms, signed {signed} ms, {signed - at:+} ms)"
        )

    def clock_offsets(self) -> tuple[int, int]:
        """(ahead, behind): how far (ms, >= 0) the meter signed its off-clock readings after and before the
        MGMC's stamps, the largest of each way (0 where none). A window is measured at the meter's time, so a
        meter ahead needs readings stamped that much earlier, one behind readings stamped that much later
        (dso-server `sealed_readings` reads that much further, capped)."""
        ahead = max((signed - at for at, signed in self.off_clock), default=0)
        behind = max((at - signed for at, signed in self.off_clock), default=0)
        return max(0, ahead), max(0, behind)

    def brackets(self, window: tuple[int, int], max_gap_ms: int) -> bool:
        """Whether the counted PCC meter readings (at the meter's time) bracket both ends of `window` within
        `max_gap_ms`, as `metering.counter_at` needs them to (their times only: the counters are not judged)."""
        times = self.meter_times
        for at in window:
            before, after = [t for t in times if t <= at], [t for t in times if t >= at]
            if not before or not after or min(after) - max(before) > max_gap_ms:
                return False
        return True

    def joined(self, more: Counted[L]) -> Counted[L]:
        """These leaves counted with `more` (more commitment intervals' leaves, counted alike): one `Counted`,
        as one pass over all of them would give (`said`: the first one's)."""
        return Counted(
            [*self.leaves, *more.leaves],
            (*self.unsigned_at, *more.unsigned_at),
            self.said if self.said is not None else more.said,
            (*self.bad_signed, *more.bad_signed),
            (*self.off_clock, *more.off_clock),
            self.verified + more.verified,
            (*self.meter_times, *more.meter_times),
        )


def stamp_offsets(leaves: Iterable[bytes], bound_ms: int) -> tuple[int, int]:
    """(ahead, behind): `Counted.clock_offsets` as an MGMC reads its own meter's leaves, the signatures not
    checked: how far (ms, >= 0) the signed readings among `leaves` were signed after and before their leaves'
    `at_ms`, the largest each way past `bound_ms` (0 where none). What an MGMC posts further for a dispute
    (edge `pcc_readings`), as the DSO reads further (`CLOCK_REACH_COMMITS`). A leaf that does not decode or
    carries no well-formed signed reading is passed by."""
    ahead = behind = 0
    for leaf in leaves:
        try:
            fields = decode(leaf)
            at, signed = fields["at_ms"], signed_from_field(fields[FIELD])
        except (DecodeError, ValueError, KeyError, TypeError):
            continue
        if isinstance(at, int) and abs(signed.at_ms - at) > bound_ms:
            ahead, behind = max(ahead, signed.at_ms - at), max(behind, at - signed.at_ms)
    return ahead, behind


def signed_leaves(leaves: Iterable[bytes], public_key: bytes, bound_ms: int) -> list[bytes]:
    """`counted_leaves(...).leaves`: the leaves the DSO counts of a signing meter."""
    return counted_leaves(leaves, public_key, bound_ms).leaves


def counted_leaves(leaves: Iterable[bytes], public_key: bytes, bound_ms: int) -> Counted[bytes]:
    """`leaves` as the DSO counts them for an MG whose PCC meter signs with `public_key`: every PCC meter reading
    leaf whose signed reading verifies with its counters and time replaced by the ones its meter signed (only
    for counting: a leaf changed so is never sealed, posted or proven), every other meter reading left out
    (`Counted.unsigned_at`, `Counted.bad_signed`; module docstring: why left out, not refused), and the
    counted ones signed more than `bound_ms` from the leaf's `at_ms` noted (`Counted.off_clock`). Raises
    `Unmetered` only for a leaf that does not decode or a meter reading that is not a reading leaf: the MGMC's
    own encoding, not its meter's. Other readings pass as they are."""
    given = list(leaves)
    readings = [read_leaf(leaf) for leaf in given]
    counted = counted_readings(readings, public_key, bound_ms)
    by_id = {id(fields): leaf for fields, leaf in zip(readings, given, strict=True)}
    return Counted(
        [by_id[id(fields)] if id(fields) in by_id else encode(fields) for fields in counted.leaves],
        counted.unsigned_at,
        counted.said,
        counted.bad_signed,
        counted.off_clock,
        counted.verified,
        counted.meter_times,
    )


def counted_readings(readings: Iterable[Value], public_key: bytes, bound_ms: int) -> Counted[Value]:
    """`counted_leaves` of decoded readings (`metering.read_leaf`), each decoded once by its caller: the same
    counting, refusals and notes, its leaves decoded readings (a counted meter reading a new mapping at its
    meter's values, every other reading the very object given), so the energy is read from them
    (`metering.metered_readings`) without decoding or encoding a leaf again."""
    if bound_ms < 0:
        raise ValueError("bound_ms must not be negative")
    counted: list[Value] = []
    unsigned, bad, off, times = [], [], [], []
    said: str | None = None
    verified = 0
    for fields in readings:
        if isinstance(fields, Undecoded):
            raise Unmetered(f"a reading does not decode ({fields.why})")
        if not isinstance(fields, dict) or fields.get("nature") != METER:
            counted.append(fields)
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
            COUNTER["seller"]: signed.export_wh * 1000,
            COUNTER["buyer"]: signed.import_wh * 1000,
        }
        counted.append({**fields, "at_ms": signed.at_ms, "milli": milli})
        times.append(signed.at_ms)
        verified += 1
    return Counted(counted, tuple(unsigned), said, tuple(bad), tuple(off), verified, tuple(times))
