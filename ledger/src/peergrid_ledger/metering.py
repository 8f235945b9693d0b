"""What an MG's PCC meter says crossed its point of common coupling over a market interval, from the reading
leaves the MGMC seals into its `der_commitment`s: the one reading of them that an MGMC states a trade from (edge
`pcc_readings`) and that the DSO settles a disputed trade from (dso-server `disputes`), so that both find the
same Wh in the same leaves. It lives in the ledger because the ledger is the one package both import.

Promises: `samples(leaves, counter)` is (at_ms, counter in mWh) of every PCC meter reading among the leaves that
has `counter`, in time order, a roll-over undone (below); `counter_at(found, at, max_gap_ms)` the counter at
a time: a reading made then, or linearly interpolated between the two readings around it when they are at most
`max_gap_ms` apart;
`metered(leaves, window, counter, max_gap_ms)` the Wh the counter advanced over a window `[start_ms, end_ms)`,
exact (`Fraction`). `trade_share(energy, quantity, total)` is one trade's part of that energy, pro rata to the
agreed quantities of the MG's trades on that side of the interval, floored, capped at its own;
`meter_shares(energy, trades)` the shares of all of them by what the counterparties' meters prove where
every counterparty is metered (else `trade_share`'s); `statements_take(quantity, settled, stated)` what a
trade that is not disputed takes of its party's energy on the parties' word (what it settled at, or the most
its statements can still settle it at) and `disputed_shares(energy, taken, trades, settled)` the party's
disputed trades' (`metered_as_dispute`: any vouch - an agreement waiting for the DSO's word or a withheld
party's hold - is one, and a lone or unrevealed trade once the DSO takes it up) `meter_shares` of what those left, so that a party's agreed and disputed trades of one
interval never settle more than its meter shows (review12 F2), whatever order they settle in; and
`commitment_intervals(window, commit_ms, max_gap_ms)` the commitment intervals whose readings may bracket the
window's boundaries. `meters_read(trades, trade)` is whose PCC readings settling a disputed trade uses: the one
rule by which the DSO asks for readings (dso-server `disputes.read_nodes`) and an MGMC posts them (edge
`pcc_readings.readings_needed`). `counting_leaves(leaves, party)` reads SunSpec's "not accumulated" (a counter at 0, which
the edge's decoder leaves out of the leaf) as 0 where that never favours the party: a seller's export counter
always, a buyer's import counter only where some reading shows it (edge `pcc_readings` says why). Each reading
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
window that ends before it starts, a trade larger than its side's total.
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

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Any, TypeGuard

from peergrid_ledger.codec import DecodeError, Value, decode, encode
from peergrid_ledger.counter_roll import bound_words, counted_forward, leaf_rolls, rolled_over
from peergrid_ledger.takeup import lone_since, reveals_due, takes_up, waits_for_dso, withheld_due

METER = "meter"
COUNTER = {"seller": "energy_wh", "buyer": "import_wh"}  # TotWhExp for what left, TotWhImp for what arrived
# the kinds of trade the DSO meters like a dispute once it takes them up (`takeup.waits_for_dso`)
UNSPOKEN = ("lone", "unrevealed", "withheld")


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


def pro_rata(energy_wh: Fraction, quantity: int, total: int) -> Fraction:
    """One trade's part of the MG's metered energy pro rata to the agreed quantities of its trades on that side,
    exact, capped at the trade's own quantity (never negative)."""
    if quantity < 0 or total < quantity:
        raise ValueError(f"a trade of {quantity} Wh among trades of {total} Wh")
    if total == 0:
        return Fraction(0)
    return max(Fraction(0), min(Fraction(quantity), energy_wh * quantity / total))


def trade_share(energy_wh: Fraction, quantity: int, total: int) -> int:
    """One trade's part of the MG's metered energy: pro rata to the agreed quantities, floored, capped at its own.
    Why pro rata: the PCC meter sees the MG's whole exchange with the feeder and cannot say which counterparty a
    shortfall hurt; it is how the market shares an over-asked offer, and more energy never gives less. The
    rule where some counterparty of the MG's trades is unmetered (`meter_shares`), and what an MGMC states."""
    return math.floor(pro_rata(energy_wh, quantity, total))


def meter_shares(energy_wh: Fraction, trades: Sequence[tuple[int, Fraction | None]]) -> list[int]:
    """Each trade's part of an MG's metered energy over its trades on one side of an interval, in the order
    given: `trades` are (agreed quantity q, what the counterparty's meter proves of that trade p, or None where
    the counterparty is unmetered). What a counterparty proves is its own meter's `pro_rata` share of the
    trade (one level: its own counterparties' meters are not looked through).

    Every counterparty metered, with w_i = min(q_i, p_i), W = Σ w, Q = Σ q, E the energy:
        E ≤ W:  share_i = E × w_i / W                            (a shortfall shared by what was proven)
        E > W:  share_i = w_i + (E − W) × (q_i − w_i) / (Q − W)  (the rest shared by what was not proven)
    floored, capped at q_i. A seller that delivered nothing then takes no part of a buyer's import from the
    seller that did (review11 F2: a buyer of 500 + 500 Wh whose one seller delivered 500 and the other 0
    imported 500; pro rata by agreed it was shared 250 on each and the DSO paid the delivering seller for 250;
    now 500 and 0). An MG that metered more than was proven (a buyer that covered a missing delivery from the
    grid, a seller whose undelivered energy went to the grid) has it on the unproven trades, so the shortfall
    stays the counterparty's (the same buyer importing 1000: 500 and 500). Some counterparty unmetered:
    `trade_share`'s pro rata to the agreed quantities, today's rule (nothing better is known); W = 0 is that
    rule too.
    Why not "what the others do not account for" (min(q_i, E − Σ_{j≠i} w_j)): the PCC meter also carries the
    MG's exchange with the DSO, so that rest need not be this trade's. It charges a shortfall to every trade
    at once when the counterparties prove more than arrived (two sellers each proving 500, 500 imported: 0
    and 0, though 500 arrived), and its shares add up to more than the meter showed when the rest is claimed
    by several unproven trades (600 + 600 Wh proven 200 + 200, 1000 imported: 600 and 600). It agrees with
    the rule above where E ≥ W and one trade alone is not proven in full. These shares never exceed a trade's quantity, never add up to
    more than E, do not depend on the order of the trades (each is a function of its own trade and sums over
    all), are monotone in E and in the trade's own proof, and are today's pro rata whenever every trade is
    proven in full (w = q). Order-independence also means that a share must not depend on which readings
    reached the DSO first: the DSO waits for an unmetered counterparty until the dispute's deadline, and then
    gives it the proof least in its favour rather than None (dso-server `disputes`)."""
    quantities = [quantity for quantity, _ in trades]
    total = sum(quantities)
    for quantity, proof in trades:
        if quantity < 0 or (proof is not None and proof < 0):
            raise ValueError(f"a trade of {quantity} Wh proven {proof} Wh")
    proven_by = [proof for _, proof in trades]
    if any(proof is None for proof in proven_by):
        return [trade_share(energy_wh, quantity, total) for quantity in quantities]
    weights = [min(Fraction(q), Fraction(p)) for q, p in trades if p is not None]
    proven = sum(weights, Fraction(0))
    energy = max(Fraction(0), energy_wh)
    if energy <= proven:
        parts = [energy * w / proven if proven else Fraction(0) for w in weights]
    else:
        rest, unproven = energy - proven, total - proven
        parts = [
            w + (rest * (q - w) / unproven if unproven else 0)
            for q, w in zip(quantities, weights, strict=True)
        ]
    return [min(q, math.floor(part)) for q, part in zip(quantities, parts, strict=True)]


def statements_take(quantity: int, settled: int | None, stated: Sequence[int]) -> int:
    """What a party's trade that is not disputed takes of the party's metered energy: settled, what it
    settled at (whatever the basis: the DSO's settle of it counts like the parties' word); not yet settled,
    the most its statements can still settle it at: the least one given (two that agree settle at the lower,
    a lone one at itself, and a second statement can only agree at or below the first or dispute it), its
    quantity before any. Never negative, never above its quantity. Why the most and not a guess: the DSO
    settles a disputed trade once, and a trade that agrees after must still fit in the meter."""
    if quantity < 0 or any(s < 0 for s in stated) or (settled is not None and settled < 0):
        raise ValueError(f"a trade of {quantity} Wh settled at {settled}, stated {list(stated)}")
    if settled is not None:
        return min(quantity, settled)
    return min([quantity, *stated])


def disputed_shares(
    energy_wh: Fraction,
    taken_wh: int,
    trades: Sequence[tuple[int, Fraction | None]],
    settled: Sequence[int | None],
) -> list[int]:
    """Each of a party's disputed trades' share of its metered energy over one side of an interval, where its
    trades that are not disputed take `taken_wh` (`statements_take`, summed) on the parties' own word
    (review12 F2: settled pro rata by statements beside disputed trades shared by the meters, a seller that
    exported 500 Wh was settled for 583). The disputed trades share only the rest, max(0, E - taken): their
    `meter_shares` (`trades`: (agreed quantity, proof), as there), all of them at once - those the DSO
    settled already (`settled`: the Wh each settled at, None where not yet) with the others - so the order
    in which the DSO settles them changes no share; and an unsettled one's share is capped at what the
    settled ones left of the rest (rest - Σ settled), so the party's total never exceeds its meter even
    where a share settled earlier was found on other proofs or a larger rest. A settled trade's entry is what
    it settled at. Pure and deterministic: the party's settled total (taken plus these) is at most
    max(E, taken) whatever the order of the settles."""
    if len(trades) != len(settled):
        raise ValueError(f"{len(trades)} disputed trades but {len(settled)} settlements")
    if taken_wh < 0 or any(s is not None and s < 0 for s in settled):
        raise ValueError(f"trades that take {taken_wh} Wh, disputed ones settled at {list(settled)}")
    rest = max(Fraction(0), energy_wh - taken_wh)
    left = math.floor(max(Fraction(0), rest - sum(s for s in settled if s is not None)))
    joint = meter_shares(rest, trades)
    return [min(share, left) if done is None else done for share, done in zip(joint, settled, strict=True)]


def commitment_intervals(window: tuple[int, int], commit_ms: int, max_gap_ms: int) -> range:
    """The commitment intervals (`floor(ms / commit_ms)`) whose readings may bracket the window's boundaries."""
    if commit_ms <= 0 or max_gap_ms <= 0:
        raise ValueError("commit_ms and max_gap_ms must be positive")
    start, end = window
    return range((start - max_gap_ms) // commit_ms, (end + max_gap_ms) // commit_ms + 1)


def metered_as_dispute(trade: Mapping[str, Any], now_ms: int | None = None) -> bool:
    """The trade is one of its parties' disputed trades: for good, settled or not, two statements that
    disagreed (`disputed`) or any trade on the DSO's vouch (`vouch`, genesis seller_vouched, `market_vouch`):
    an agreement waiting for the DSO's word, or a withheld party's hold (basis "withheld": a party that
    committed and never revealed, its counterparty's lone word held at the quantity). An agreement's vouch
    (V4): the DSO settles it from its seller's meter, which its buyer's agreement does not bound either, so
    taken at `statements_take` (its agreement, or what it settled at) beside a sibling vouch of the same
    seller, the vouch the DSO settled first got what the others' agreements left of a short export (s sold
    400 + 400, exported 500: 100 then 400 in trade-id order, whichever buyer's meter showed the energy;
    tests/dso/test_disputes_vouch_siblings.py); shared by `disputed_shares`, the seller's vouches take its
    export by their buyers' meters in any order, and `meters_read` names those buyers. A withheld
    seller's (with `release`) the DSO meters as a dispute in which the seller said nothing (dso-server
    `disputes`, review15 M4), a withheld buyer's from the seller's meter and, priced, the buyer's own
    shortfall from its import shared over its purchases (D3); at the chain's time `now_ms` (None:
    unknown, not these) one the DSO has taken up on one party's word, on two commitments nobody revealed, or
    on a statement whose counterparty kept its reveal back and nobody repeated (`takeup.takes_up`: from
    `LONE_FROM` of the wait, from the reveal deadline), which it meters the same way,
    and for good once the DSO settled it (basis "dso"; a vouch it settled is one already).
    Why (review16 M1): what such a trade settles at is the meters', not bounded by a buyer's word, so taken at
    `statements_take` beside a sibling of the same crashed seller (held, or silent: never committed) it gave
    the seller's export wholly to whichever the DSO resolved first, and a buyer stating 0 always to the
    other; shared by `disputed_shares`, each takes its part by the meters whatever the order (the DSO's
    earlier settles among them, which is why it stays one once settled). Alike a withheld buyer's hold (D3):
    at its seller's word, which bounds nothing the hold settles at, one seller's word moved the buyer's
    import between its holds by the DSO's order, and the buyer netted more withholding than revealing
    (tests/dso/test_dispute_withheld_buyer.py: -40,000 against -60,000 where both meters were read).
    And a withheld statement the stater's repeat settled at the contract's penalty (basis "withheld" without
    a `vouch`: a chain without seller_vouched): for its parties' other trades it counts at what the meters
    give it, like one the DSO took up (dso-server `dispute_shares.at_penalty`, review22 F2: taken at the
    penalty, a withheld buyer's 400 Wh used up its seller's metered 400 and a co-buyer that disputed
    settled at 0 below its own meter), so whose readings its siblings read must name its counterparty."""
    if "disputed" in trade or "vouch" in trade:
        return True  # a vouch of either basis, settled or not (V4: an agreement's too)
    if (trade.get("settlement") or {}).get("basis") in ("withheld", "dso"):
        return True  # the stater's repeat at a withholder's penalty (review22 F2), or the DSO's settle
    return now_ms is not None and waits_for_dso(trade, now_ms) in UNSPOKEN and takes_up(trade, now_ms)


def meters_read(
    trades: Sequence[tuple[bytes, Mapping[str, Any]]], trade: bytes, *, may_dispute: bool = False
) -> set[bytes]:
    """The anonyms whose PCC readings settling the disputed `trade` uses, among `trades` (its interval's latest
    closing, `query.trades`; empty when `trade` is not among them): its two parties' (their own energy), and
    the counterparty of each of their other disputed trades on the same side (`metered_as_dispute`: any
    vouch too, an agreement's or a withheld party's hold, and one on one party's word or on two unrevealed commitments at any time:
    the DSO takes it up later) - the buyer of a disputed sale of its seller, the seller of a disputed
    purchase of its buyer - whose meter proves what that trade took
    (`meter_shares`). A party's trades that are not disputed take what they settle at on the parties' word
    (`statements_take`), so their counterparties' meters are never read (D8: asked for all the same, such an
    MG posted readings nobody used, and the DSO kept them). `may_dispute`: also count the sibling trades that
    may still become disputed (not settled, not superseded), for an MGMC asking whether any trade could
    still read it; a dispute is marked on the trade for good, settled or not."""
    found = dict(trades)
    if trade not in found:
        return set()
    agreed = found[trade]
    read = {agreed["seller"], agreed["buyer"]}
    for tid, other in trades:
        disputed = (
            metered_as_dispute(other)
            or _may_be_taken_up(other)
            or (may_dispute and other.get("settlement") is None and "superseded" not in other)
        )
        if tid == trade or not disputed:
            continue
        if other["seller"] == agreed["seller"]:
            read.add(other["buyer"])
        if other["buyer"] == agreed["buyer"]:
            read.add(other["seller"])
    return read


def _may_be_taken_up(trade: Mapping[str, Any]) -> bool:
    """A trade on one party's word, on two commitments nobody revealed yet, or on one revealed statement beside
    a commitment kept back, whatever the time: the DSO takes it up from `LONE_FROM` of the wait or the reveal
    deadline (`metered_as_dispute` at that time), so a sibling's dispute reads its
    counterparty's meter from the start (a reading kept early, never one short)."""
    return lone_since(trade) is not None or reveals_due(trade) is not None or withheld_due(trade) is not None
