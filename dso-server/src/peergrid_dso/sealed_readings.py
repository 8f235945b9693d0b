"""A party's PCC meter energy over a market interval, read from its sealed readings checked against the chain.

Promises: `pcc_energy` is pure and deterministic (exact rational arithmetic) and either returns the Wh the
party's PCC counter advanced over the interval's window or raises `Unmetered` saying why not; it reads only
leaves that are the whole committed set of their commitment interval (`verified_leaves`) and, given the chain's
time, only commitments sealed in time (`sealed_late`): `sealed_leaves`. `read_party` reads a party once for
it and for the tally of the meter readings it read (`PartyReadings.tally`, a `ReadingsCount`: signed, unsigned,
refused and why), which the DSO's decision records: its leaves fetched and checked against the chain once,
each signed reading verified once. No I/O, no clock. `disputes.resolve` (through `dispute_shares.Meters`)
is their user. The clock, chain time and signing meters are `meter_clock`'s, the tally `readings_tally`'s and
the one pass over a commitment interval's leaves `sealed_pass`'s (split out, D5; importable from here).

What the chain holds and what it does not: a `der_commitment` (`der/<node><interval>`) is the RFC 6962 root of
one commitment interval's reading leaves and their count, signed by the MGMC's node key; the leaves themselves
(edge `commitments.reading_leaf`: {at_ms, device, milli{quantity: value × 1000}, nature}) stay on the MGMC. So
the DSO needs each party's leaves (`sealed`, keyed by (node key, commitment interval)), and accepts them only
when they are the whole committed set: their root and count equal the chain's, so a party can neither forge a
reading nor leave one out; nor pad it: a commitment interval holding more PCC meter readings than a meter
polled every `MIN_POLL_MS` makes refuses the party before one is verified (review16 P1: each cost the DSO's
event loop a signature check, for nothing). Trades are made under anonyms; `nodes` maps each anonym to its
MGMC's node key (the DSO enrolled both). Commitment intervals are buckets of wall-clock time (`floor(ms /
commit_ms)`), market intervals slots of `MeterClock` (`t0_ms + (t - first_interval) × interval_ms`): the clock
maps one to the other.

A PCC meter (nature `meter`; one per MG) reports cumulative counters: `energy_wh` (TotWhExp, export) and
`import_wh` (TotWhImp), acc32 registers that roll over, undone as `counter_roll.rolled_over` says, bounded by the
party's connection capacity posted on the chain, as its MGMC bounds it (`counter_roll.posted_w`: `dispute_shares.
Meters` reads it; R38-2) (a meter-signed reading's counters, 64204's uint64, never roll: any step back refused;
nor do an MQTT meter's, whose leaves say `rolls: false`, L2: a step back is a reset, `counter_roll.leaf_rolls`);
and a step forward by more than that same bound is no energy (L3, `counter_roll.counted_forward`: a raised
TotWh_SF reads ten times the Wh): the party is unmetered for the window, as after a reset, never settled on it.
The counter at the interval's start and end is read at a reading made exactly then or linearly interpolated between the two readings around it,
which must be at most `max_gap_ms` apart (a longer outage is no measurement): `peergrid_ledger.metering`, the same reading of the same leaves the edge states
from (the edge states its pro-rata share: it cannot see its counterparties' meters, so where one fell short
its statement may differ and the trade comes here).

Time (`ChainTime`, from the DSO's replica): a commitment counts only when the block that carried it is stamped
at most `seal_within_ms` after its commitment interval ended (the chain's `settle_wait_ms` unless the DSO sets
its own); one sealed later is treated as never made, so readings made up long after the fact (review10 F1: once
a dispute is known and the bound has passed) cannot decide it. Within the bound they still can: a dispute is
known soon after the interval's end, before the bound of its last commitment intervals has run out. The block
time comes from the replica's transaction index (the record's `txid`), so the ledger's state records stay as
they are. `ChainTime` also carries the dispute's deadline bound (`wait_ms`, `disputes`).

Meter-signed readings (`SigningMeters`, from the DSO's config: `loop_settings.MgEntry.meter_key`): the leaves
are the MGMC's, so an MGMC that lies about its own meter as it reads it is believed, unless its meter signs.
For an MG whose PCC meter is enrolled as signing, only meter readings whose meter-signed reading verifies under
the enrolled key count, at the meter's time and with the meter's counters
(`peergrid_ledger.meter_signing.counted_readings`). One unsigned (a poll whose signed block failed), or whose
signed reading is malformed or does not verify (review15 M1: no refusal of the party, which bound only honest
MGs), is left out, as a reading the MGMC never sealed would be: the gap rule (`max_gap_ms`) decides whether
the signed ones still measure the window, and if not the reason names the readings left out. One signed more
than `bound_ms` from the leaf's `at_ms` (the meter's clock against the MGMC's) counts all the same, and is
noted: in that reason, and in every decision's tally (`ReadingsCount.off_clock`), so an operator sees a
drifting meter clock before it leaves a window unmeasured. Where it does (the readings were chosen by the
MGMC's stamps, counted at the meter's time: review16 C1), the commitment intervals that far further are read
too, up to `meter_signing.CLOCK_REACH_COMMITS` (`_read_for_clock`). An MG without an enrolled meter key is read as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from peergrid_dso.meter_clock import Blocks, ChainTime, MeterClock, SigningMeters
from peergrid_dso.readings_tally import REFUSED_NAMED, ReadingsCount, count_decoded, count_readings, tally_of
from peergrid_dso.sealed_pass import Sealed, SealedSet, meter_readings
from peergrid_ledger import merkle, query
from peergrid_ledger.codec import Value
from peergrid_ledger.meter_signing import CLOCK_REACH_COMMITS, MIN_POLL_MS, Counted, counted_readings
from peergrid_ledger.metering import COUNTER, Unmetered, counting_readings, metered_readings
from peergrid_ledger.state import StateReader

__all__ = [  # what callers import from here, wherever it lives now (D5's split)
    "MIN_POLL_MS",
    "REFUSED_NAMED",
    "Blocks",
    "ChainTime",
    "MeterClock",
    "PartyReadings",
    "ReadingsCount",
    "SigningMeters",
    "commitment_readings",
    "count_decoded",
    "count_readings",
    "meter_readings",
    "pcc_energy",
    "read_party",
    "sealed_late",
    "sealed_leaves",
    "tally_of",
    "verified_leaves",
]


def verified_leaves(
    state: StateReader, node: bytes, commitment: int, sealed: Mapping[tuple[bytes, int], Sequence[bytes]]
) -> Sequence[bytes]:
    """The committed leaves of one commitment interval, checked whole against the chain's root and count
    (empty when the MGMC committed nothing then)."""
    record = query.der_commitment(state, node, commitment)
    if record is None:
        return ()
    leaves = sealed.get((node, commitment))
    if leaves is None:
        raise Unmetered(f"commitment interval {commitment}'s readings are not at the DSO")
    if len(leaves) != int(record["readings"]) or merkle.root(list(leaves)) != record["root"]:
        raise Unmetered(f"the readings given for commitment interval {commitment} are not the sealed ones")
    return leaves


def commitment_readings(
    state: StateReader, node: bytes, commitment: int, sealed: Sealed, most: int
) -> tuple[Sequence[Value], ReadingsCount] | None:
    """The pass's result (`sealed_pass.meter_readings`) over one commitment interval's committed leaves: kept
    from the node's intake (a `SealedSet`: no leaf decoded or hashed again, its root and count checked against
    the chain's record, so a set taken in for a commitment the chain does not hold so is not the sealed ones),
    or made from the leaves handed over, checked whole against the chain (`verified_leaves`). `Unmetered` as
    `verified_leaves` raises it; None: more than `most` PCC meter readings."""
    entry = sealed.get((node, commitment))
    if not isinstance(entry, SealedSet):
        given = {} if entry is None else {(node, commitment): entry}
        return meter_readings(verified_leaves(state, node, commitment, given), most)
    record = query.der_commitment(state, node, commitment)
    if record is None:
        return meter_readings((), most)  # committed nothing then, as `verified_leaves` reads it
    if entry.root != record["root"] or entry.count != int(record["readings"]):
        raise Unmetered(f"the readings given for commitment interval {commitment} are not the sealed ones")
    if entry.most != most:
        raise ValueError(f"a set taken in at {entry.most} meter readings read at {most}")
    return entry.found


def sealed_late(
    state: StateReader, node: bytes, commitment: int, commit_ms: int, chain: ChainTime
) -> str | None:
    """Why a `der_commitment` on the chain does not count (sealed too long after its interval ended, or its
    block is not in the replica), or None when it counts or there is none."""
    record = query.der_commitment(state, node, commitment)
    if record is None:
        return None
    found = chain.blocks.locate_tx(record["txid"])
    if found is None:
        return f"commitment interval {commitment}'s block is not in the DSO's replica: it does not count"
    at, ended = int(chain.blocks.header(found[0]).time), (commitment + 1) * commit_ms
    if at > ended + chain.seal_within_ms:
        return (
            f"commitment interval {commitment} was sealed at {at} ms, {at - ended} ms after it ended (more "
            f"than {chain.seal_within_ms}): it does not count"
        )
    return None


def sealed_leaves(
    state: StateReader,
    node: bytes,
    clock: MeterClock,
    interval: int,
    sealed: Sealed,
    chain: ChainTime | None = None,
    commitments: Iterable[int] | None = None,
) -> tuple[list[Value], list[str], ReadingsCount]:
    """The party's sealed leaves of every commitment interval that may bracket the market interval's window
    (or of `commitments`), each interval's set checked whole against the chain (`verified_leaves`, raising
    `Unmetered`) and refused (`Unmetered`) when it holds more PCC meter readings than a meter makes in it
    (`MeterClock.most_meter_readings`: review16 P1, padding that each cost the DSO a signature check) before
    any is verified, and read as metering reads them (`meter_readings`, each leaf decoded once); with `chain`
    those sealed late left out (`sealed_late`): (the readings decoded, why each commitment was left out, the
    tally of them for a meter that does not sign)."""
    leaves: list[Value] = []
    notes: list[str] = []
    unsigned, refused = 0, list[str]()
    for c in clock.commitments(interval) if commitments is None else commitments:
        why = None if chain is None else sealed_late(state, node, c, clock.commit_ms, chain)
        if why is not None:
            notes.append(why)
            continue
        found = commitment_readings(state, node, c, sealed, clock.most_meter_readings)
        if found is None:
            raise Unmetered(
                f"commitment interval {c} holds more than {clock.most_meter_readings} PCC meter readings, more "
                f"than a meter polled at most every {MIN_POLL_MS} ms makes in {clock.commit_ms} ms: the MG's "
                "readings are not counted"
            )
        leaves.extend(found[0])
        unsigned, refused = unsigned + found[1].unsigned, [*refused, *found[1].refused]
    return leaves, notes, ReadingsCount(False, unsigned=unsigned, refused=tuple(refused))


@dataclass(frozen=True)
class PartyReadings:
    """One party's sealed readings of a market interval, read once for both its energy and its tally
    (`read_party`): the leaves, decoded once (`meter_readings`), as counted (a signing meter's readings at its meter's values, the others as
    sealed), the notes on what was left out (commitments sealed late; with a signing meter the readings it did
    not sign and those signed off the clock), `broken` when the leaves cannot be counted at all (one does not
    decode, a meter reading is not a reading leaf: the MGMC's own encoding), and the tally the DSO records.
    `signed`: the leaves are `counted_readings`' (each meter reading with both counters signed), which
    `counting_readings` would not change: it is not run (D3; tests/dso/test_sealed_decoded_once.py)."""

    leaves: list[Value]
    notes: tuple[str, ...]
    tally: ReadingsCount
    broken: str | None = None
    signed: bool = False

    def energy(self, clock: MeterClock, interval: int, side: str, *, most_w: int | None = None) -> Fraction:
        """`pcc_energy` of these readings: the Wh the `side`'s counter advanced over the window, or `Unmetered`
        saying why not (with the notes where there are any); a roll-over, and any step forward, bounded by a
        meter of `most_w` W (the party's posted connection, `counter_roll.posted_w`, as its MGMC reads it;
        None: 10 MW, none posted)."""
        try:
            if self.broken is not None:
                raise Unmetered(self.broken)
            window = clock.window(interval)
            leaves = self.leaves if self.signed else counting_readings(self.leaves, side)
            # a signed reading's counters are 64204's uint64, which never roll; the sealed ones 203's acc32
            return metered_readings(
                leaves, window, COUNTER[side], clock.max_gap_ms, rolls=not self.signed, most_w=most_w
            )
        except Unmetered as exc:
            if self.notes:
                raise Unmetered(f"{exc} ({'; '.join(self.notes)})") from None
            raise


def read_party(
    state: StateReader,
    node: bytes,
    clock: MeterClock,
    interval: int,
    sealed: Sealed,
    chain: ChainTime | None = None,
    signing: SigningMeters | None = None,
) -> PartyReadings:
    """The party's sealed leaves fetched and checked against the chain once (`sealed_leaves`, raising
    `Unmetered` when a commitment interval's set is not at the DSO or not the sealed one; each leaf decoded
    once there, other natures' readings left out, and the tally of a meter that does not sign from that
    pass: `meter_readings`), and with `signing` naming its meter, each meter-signed reading verified once
    (`meter_signing.counted_readings`, over the pass's decoded readings): the one `Counted` gives both the
    leaves its energy is read from and the decision's tally (`tally_of`). Only
    where the leaves cannot be counted at all does the tally judge them one by one (`count_decoded`: every
    refused one named, not only the first)."""
    leaves, notes, plain = sealed_leaves(state, node, clock, interval, sealed, chain)
    key = None if signing is None else signing.keys.get(node)
    if key is None or signing is None:
        return PartyReadings(leaves, tuple(notes), plain)
    try:
        counted = counted_readings(leaves, key, signing.bound_ms)
    except Unmetered as exc:
        return PartyReadings(leaves, tuple(notes), count_decoded(leaves, key, signing.bound_ms), str(exc))
    further, clock_notes = _read_for_clock(state, node, clock, interval, sealed, chain, signing, counted)
    counted = counted.joined(further)
    more = [note for note in (counted.why_unsigned(), counted.why_off_clock()) if note]
    return PartyReadings(counted.leaves, (*clock_notes, *notes, *more), tally_of(counted), signed=True)


def _read_for_clock(
    state: StateReader,
    node: bytes,
    clock: MeterClock,
    interval: int,
    sealed: Sealed,
    chain: ChainTime | None,
    signing: SigningMeters,
    counted: Counted[Value],
) -> tuple[Counted[Value], tuple[str, ...]]:
    """review16 C1: where the signing meter's clock is off the MGMC's stamps (`counted.off_clock`) and its
    readings, at the meter's time, leave a window end unmeasured, the commitment intervals further by the
    largest offset each way (capped at `MeterClock.reach_cap_ms`), read and counted as the others (whole,
    in time, not padded; `Unmetered` when they are not at the DSO or cannot be counted, saying why they were
    read): (them counted, notes naming what was read for the clock and, past the cap, the offset plainly).
    Nothing more is read for a window the readings measure: it is measured as before, record bytes and all."""
    ahead, behind = counted.clock_offsets()
    if not (ahead or behind) or counted.brackets(clock.window(interval), clock.max_gap_ms):
        return Counted([]), ()
    cap = clock.reach_cap_ms
    offset = f"{ahead / 1000:.1f} s ahead of" if ahead >= behind else f"{behind / 1000:.1f} s behind"
    notes: list[str] = []
    if max(ahead, behind) > cap:
        notes.append(
            f"the meter's clock is {offset} the MGMC's stamps, more than the {cap / 1000:.0f} s "
            f"({CLOCK_REACH_COMMITS} commitment intervals) the DSO reads beyond a window for a meter's clock: "
            "set the meter's clock"
        )
    read = clock.commitments(interval)
    extra = [c for c in clock.commitments(interval, (min(ahead, cap), min(behind, cap))) if c not in read]
    if not extra:
        return Counted([]), tuple(notes)
    listed = ", ".join(map(str, extra))
    why = f"commitment intervals {listed} read as the meter's clock is {offset} the MGMC's stamps"
    try:
        leaves, late, _ = sealed_leaves(state, node, clock, interval, sealed, chain, extra)
        return counted_readings(leaves, signing.keys[node], signing.bound_ms), (*notes, why, *late)
    except Unmetered as exc:
        raise Unmetered(f"{exc} ({why})") from None


def pcc_energy(
    state: StateReader,
    node: bytes,
    clock: MeterClock,
    interval: int,
    sealed: Sealed,
    side: str,
    chain: ChainTime | None = None,
    signing: SigningMeters | None = None,
    most_w: int | None = None,
) -> Fraction:
    """Wh the PCC meter's counter of `side` (seller: export, buyer: import) advanced over the market interval's
    window (exact), read from the sealed readings of every commitment interval that may bracket its boundaries
    (`peergrid_ledger.metering`; a counter at SunSpec's "not accumulated" read as 0 where that never favours
    the side, `counting_readings`, as the MGMC states it); with `chain`, a commitment sealed late counts as never
    made (`sealed_late`); with `signing` naming the node's meter, only its meter-signed readings count; a
    roll-over bounded by `most_w` (`PartyReadings.energy`).
    (`read_party(...).energy(...)`: a caller that also wants the tally reads the party once.)"""
    read = read_party(state, node, clock, interval, sealed, chain, signing)
    return read.energy(clock, interval, side, most_w=most_w)
