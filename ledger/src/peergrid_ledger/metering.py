"""What an MG's PCC meter says crossed its point of common coupling over a market interval, from the reading
leaves the MGMC seals into its `der_commitment`s: the one reading of them that an MGMC states a trade from (edge
`pcc_readings`) and that the DSO settles a disputed trade from (dso-server `disputes`), so that both find the
same Wh in the same leaves. It lives in the ledger because the ledger is the one package both import.

Promises: `samples(leaves, counter)` is (at_ms, counter in mWh) of every PCC meter reading among the leaves that
has `counter`, in time order, a roll-over undone (below); `counter_at(found, at, max_gap_ms)` the counter at
a time: a reading made then, or linearly interpolated between the two readings around it when they are at most
`max_gap_ms` apart;
`metered(leaves, window, counter, max_gap_ms)` the Wh the counter advanced over a window `[start_ms, end_ms)`,
exact (`Fraction`); and `commitment_intervals(window, commit_ms, max_gap_ms)` the commitment intervals whose
readings may bracket the window's boundaries. How that energy is shared among the MG's trades of the interval
(`trade_share`, `meter_shares`, `statements_take`, `disputed_shares`, `pro_rata`) and whose readings settling
a disputed trade uses (`meters_read`, `metered_as_dispute`) is `trade_shares`', re-exported here, where the
edge, the DSO and the tests import them. `counting_leaves(leaves, party)` reads SunSpec's "not accumulated" (a
counter at 0, which the edge's decoder leaves out of the leaf) as 0 where that never favours the party: a
seller's export counter always, a buyer's import counter only where some reading shows it (edge
`pcc_readings` says why). Each reading
entry has a twin over readings decoded once (`read_leaf`: a leaf's fields, or `Undecoded`): `samples_of`,
`counting_readings`, `metered_readings` (and `meter_signing.counted_readings`), which the bytes entries call
and which give the same values and refusals (tests/ledger/test_metering_decoded.py), so the DSO, which has
decoded each leaf once already, decodes none again (D5). Exact rational arithmetic throughout, deterministic,
pure: no clock, no I/O.
Raises `Unmetered` (never a guess) when a leaf does not decode, is not a reading leaf, or a meter reading's
time, device or counter is not a non-negative integer (or its `rolls` neither true nor false); when two meters
report (which one is the PCC is then not known); when a counter runs backwards (a reset or a replaced meter) by
more than a roll-over explains (`counter_roll.rolled_over`), or at all where its meter never rolls
(`counter_roll.leaf_rolls`), or forward by more than the MG's connection carries between the two readings
(`counter_roll.counted_forward`, L3): `CounterBroken`, for good (no later reading mends it); and when no
readings bracket a boundary within `max_gap_ms` (a longer outage is no measurement, and a window not yet read
to its end is not a number yet).
Raises `ValueError` for arguments no caller should pass: a gap or commitment length that is not positive, a
window that ends before it starts.
The leaves are edge `commitments.reading_leaf`'s canonical encoding: `{at_ms, device, milli: {quantity: int},
nature}` (and `rolls: false` where the meter's counters never roll); the PCC meter has nature `meter` (edge
natures.yaml), one per MG.

Roll-over (R37-3). The leaves' counters are model 203's TotWhExp / TotWhImp, acc32 registers that roll over
(`counter_roll`). `samples` reads a reading below the one before it as one roll-over where
`counter_roll.rolled_over` says it can be one, and adds the register's range to it and to every later reading of
that counter (the list is then the counter unwrapped: its differences are what the meter counted, its first
reading as read); else, as before, the counter runs backwards: `Unmetered`. What a roll-over may have counted
is bounded by the MG's own connection (R38-2): `most_w`, the power of the capacity the DSO posted for the
trading anonym in the trade's interval (`counter_roll.posted_w`), which the edge (`pcc_readings.MgMetering`)
and the DSO (dso-server `dispute_shares.Meters`) read alike from their replicas; None where none is posted
(10 MW, `counter_roll.MOST_PCC_W`). A meter-signed reading's counters (model 64204, uint64 whole Wh) never
roll: the DSO reads them with `rolls=False`, any step back refused. A leaf whose meter's counters never roll
says so (`rolls: false`, `counter_roll.leaf_rolls`, L2: the edge writes it for an MQTT meter, whose JSON
telemetry counter never rolls): a step back to or from such a reading is a reset, never a roll-over, however
small, so the window is `Unmetered` (nothing counted, where a roll-over read up to the bound: 3.06 kWh a
second at 1 MW). A leaf without the field (a Modbus meter's, and every leaf sealed before it) may roll, as
before.

Forward jumps (L3). A counter that steps forward by more than `counter_roll.counted_forward` allows - the same
bound, `most_w` over the readings' time plus 10 s - is no energy either: a TotWh_SF raised while the count
stayed reads ten times the Wh (the leaf carries no factor), a replaced meter counts from its own figure. The
window is `CounterBroken` as for a reset, on both sides (the edge states nothing for it, the DSO settles it as
that side unmetered), never settled as delivered. A meter that counts within its connection reads exactly as
before, and no leaf changes: the bound comes from the chain, not the leaf.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import TypeGuard

from peergrid_ledger.codec import DecodeError, Value, decode, encode
from peergrid_ledger.counter_roll import bound_words, counted_forward, leaf_rolls, rolled_over
from peergrid_ledger.trade_shares import (  # re-exported: the edge, the DSO and tests import them from here
    UNSPOKEN,
    disputed_shares,
    meter_shares,
    metered_as_dispute,
    meters_read,
    pro_rata,
    statements_take,
    trade_share,
)

__all__ = [  # the readings' names, and the shares' from `trade_shares`
    "COUNTER",
    "METER",
    "UNSPOKEN",
    "CounterBroken",
    "Undecoded",
    "Unmetered",
    "commitment_intervals",
    "counter_at",
    "counting_leaves",
    "counting_readings",
    "disputed_shares",
    "meter_sample",
    "meter_shares",
    "metered",
    "metered_as_dispute",
    "metered_readings",
    "meters_read",
    "pro_rata",
    "read_leaf",
    "sample_of",
    "samples",
    "samples_of",
    "statements_take",
    "trade_share",
]

METER = "meter"
COUNTER = {"seller": "energy_wh", "buyer": "import_wh"}  # TotWhExp for what left, TotWhImp for what arrived


class Unmetered(Exception):
    """Why the metering of a window cannot be told (yet, or at all)."""


class CounterBroken(Unmetered):
    """A PCC meter's counter between two readings that is no energy: it went back further than a roll-over
    explains, or forward further than the MG's connection carries (`samples_of`). For good: no reading sealed
    later takes the pair away, so a reader says it once rather than waiting for it to pass."""


@dataclass(frozen=True)
class Undecoded:
    """Where a decoded reading would stand, a leaf that does not decode, and why (`read_leaf`): metering
    raises `Unmetered` on it where it would have decoded the leaf, so the decoded entries refuse what the
    bytes entries refuse, at the same leaf and in the same words."""

    why: str


def read_leaf(leaf: bytes) -> Value:
    """A reading leaf decoded once (`codec.decode`), or `Undecoded` saying why it does not decode: what the
    decoded entries (`samples_of`, `counting_readings`, `metered_readings`) take."""
    try:
        return decode(leaf)
    except DecodeError as exc:
        return Undecoded(str(exc))


def sample_of(fields: Value, counter: str) -> tuple[str, int, int] | None:
    """`meter_sample` of a decoded reading (`read_leaf`)."""
    if isinstance(fields, Undecoded):
        raise Unmetered(f"a reading does not decode ({fields.why})")
    if not isinstance(fields, dict) or not isinstance(fields.get("milli"), dict):
        raise Unmetered("a reading is not a reading leaf")
    value, at, device = fields["milli"].get(counter), fields.get("at_ms"), fields.get("device")
    if fields.get("nature") != METER or value is None:
        return None
    if not (_count(value) and _count(at) and isinstance(device, str)):
        raise Unmetered(f"a meter reading's time, device or {counter} counter is not what a meter reports")
    try:
        # read where the counter steps back (`samples_of`); a bad one refused here, as the other fields are
        leaf_rolls(fields)
    except ValueError as exc:
        raise Unmetered(str(exc)) from None
    return device, at, value


def meter_sample(leaf: bytes, counter: str) -> tuple[str, int, int] | None:
    """(device, at_ms, counter in mWh) of a PCC meter reading that has `counter`; None for any other reading."""
    return sample_of(read_leaf(leaf), counter)


def _count(value: object) -> TypeGuard[int]:
    """A cumulative counter or a time in ms: an integer, not negative (bool is an int to Python, not to us)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def samples(
    leaves: Iterable[bytes], counter: str, *, rolls: bool = True, most_w: int | None = None
) -> list[tuple[int, int]]:
    """(at_ms, counter in mWh) of every PCC meter reading among `leaves` that has `counter`, in time order,
    each roll-over undone (`counter_roll.rolled_over`, bounded by a meter of `most_w` W: the MG's posted
    connection, `counter_roll.posted_w`; None: 10 MW, none posted; `rolls=False`: a counter that never rolls,
    any step back refused)."""
    return samples_of(map(read_leaf, leaves), counter, rolls=rolls, most_w=most_w)


def samples_of(
    readings: Iterable[Value], counter: str, *, rolls: bool = True, most_w: int | None = None
) -> list[tuple[int, int]]:
    """`samples` of decoded readings (`read_leaf`): the same list, or the same `Unmetered`."""
    found: list[tuple[int, int, bool]] = []  # (at_ms, counter, whether the leaf's counters can roll)
    devices: set[str] = set()
    for fields in readings:
        sample = sample_of(fields, counter)
        if sample is not None:
            assert isinstance(fields, dict)  # `sample_of` gives a sample of nothing else
            devices.add(sample[0])
            found.append((sample[1], sample[2], leaf_rolls(fields)))
    if len(devices) > 1:
        raise Unmetered(f"more than one meter ({', '.join(sorted(devices))}): which is the PCC is not known")
    found.sort()
    unwrapped = [(at, c) for at, c, _ in found[:1]]
    rolled = 0  # the mWh of the register's range added at each roll-over so far
    for (at0, c0, rolls0), (at1, c1, rolls1) in pairwise(found):
        if c1 < c0:
            # a step back is a roll-over only where both readings' meter can roll (L2): an MQTT meter's reset
            # is a reset even where an acc32 roll-over would explain it
            counted = rolled_over(c0, c1, at1 - at0, most_w) if rolls and rolls0 and rolls1 else None
            if counted is None:
                never = "" if rolls0 and rolls1 else ", a counter that never rolls over"
                raise CounterBroken(
                    f"the {counter} counter runs backwards between {at0} and {at1} ms (reset or replaced{never})"
                )
            rolled += c0 + counted - c1
        elif counted_forward(c0, c1, at1 - at0, most_w) is None:
            # more than the connection carries (L3): a raised scale factor or a replaced meter, not energy
            raise CounterBroken(
                f"the {counter} counter jumps forward {c1 - c0} mWh between {at0} and {at1} ms, more than the "
                f"MG's connection carries then ({bound_words(at1 - at0, most_w)}): a scale factor raised or "
                "a meter replaced, not energy"
            )
        unwrapped.append((at1, c1 + rolled))
    return unwrapped


def counting_leaves(leaves: list[bytes], party: str) -> list[bytes]:
    """`leaves` with the `party`'s counter read as 0 in each PCC meter reading without it (SunSpec's "not
    accumulated": nothing crossed that way yet): for a seller always (0 left is the least it can state), for a
    buyer only where some reading shows its import counter, so the meter has one (else as they are). Only for
    counting here: a leaf changed so is never sealed, posted or proven (its bytes are not the committed ones)."""
    readings = [read_leaf(leaf) for leaf in leaves]
    counted = counting_readings(readings, party)
    if counted is readings:
        return leaves
    return [
        leaf if new is old else encode(new) for leaf, old, new in zip(leaves, readings, counted, strict=True)
    ]


def counting_readings(readings: list[Value], party: str) -> list[Value]:
    """`counting_leaves` of decoded readings (`read_leaf`): the same readings, each one it changes a new
    mapping (the others the very objects given; `readings` itself where none would change for a buyer)."""
    counter = COUNTER[party]
    if party != "seller" and not any(sample_of(fields, counter) for fields in readings):
        return readings
    counted = []
    for fields in readings:
        # one that is no reading is raised here, as `samples_of` does; None: another nature, or no `counter`
        if sample_of(fields, counter) is None and fields.get("nature") == METER:
            fields = {**fields, "milli": {**fields["milli"], counter: 0}}
        counted.append(fields)
    return counted


def counter_at(found: Sequence[tuple[int, int]], at: int, max_gap_ms: int) -> Fraction:
    """The counter (mWh) at `at` ms from time-ordered `samples`: a reading made then, or interpolated between
    the two around it."""
    if max_gap_ms <= 0:
        raise ValueError("max_gap_ms must be positive")
    before = [s for s in found if s[0] <= at]
    after = [s for s in found if s[0] >= at]
    if not before or not after or after[0][0] - before[-1][0] > max_gap_ms:
        raise Unmetered(f"no meter readings at most {max_gap_ms} ms apart around {at} ms")
    (t0, c0), (t1, c1) = before[-1], after[0]
    if t1 == t0:
        return Fraction(max(c0, c1))  # readings made at `at` itself: the counter had reached the highest
    return Fraction(c0 * (t1 - at) + c1 * (at - t0), t1 - t0)


def metered(
    leaves: Iterable[bytes],
    window: tuple[int, int],
    counter: str,
    max_gap_ms: int,
    *,
    rolls: bool = True,
    most_w: int | None = None,
) -> Fraction:
    """Wh the PCC meter's `counter` advanced over `window` (ms), exact, across a roll-over too (`samples`,
    `most_w` the power bounding one)."""
    _window(window)
    readings = [read_leaf(leaf) for leaf in leaves]
    return metered_readings(readings, window, counter, max_gap_ms, rolls=rolls, most_w=most_w)


def metered_readings(
    readings: Sequence[Value],
    window: tuple[int, int],
    counter: str,
    max_gap_ms: int,
    *,
    rolls: bool = True,
    most_w: int | None = None,
) -> Fraction:
    """`metered` of decoded readings (`read_leaf`): the same Wh, or the same `Unmetered`."""
    start, end = _window(window)
    found = samples_of(readings, counter, rolls=rolls, most_w=most_w)
    if not found and any(sample_of(fields, c) for fields in readings for c in COUNTER.values()):
        raise Unmetered(f"no PCC meter reading carries the {counter} counter")  # read, but never counted
    return (counter_at(found, end, max_gap_ms) - counter_at(found, start, max_gap_ms)) / 1000


def _window(window: tuple[int, int]) -> tuple[int, int]:
    start, end = window
    if end < start:
        raise ValueError(f"the window [{start}, {end}) ms ends before it starts")
    return start, end


def commitment_intervals(window: tuple[int, int], commit_ms: int, max_gap_ms: int) -> range:
    """The commitment intervals (`floor(ms / commit_ms)`) whose readings may bracket the window's boundaries."""
    if commit_ms <= 0 or max_gap_ms <= 0:
        raise ValueError("commit_ms and max_gap_ms must be positive")
    start, end = window
    return range((start - max_gap_ms) // commit_ms, (end + max_gap_ms) // commit_ms + 1)
