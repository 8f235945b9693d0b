"""What a PCC meter's energy counter counted between two readings, or that it cannot have counted it: an acc32
roll-over told from a reset (R37-3), and a forward step told from a jump no connection carries (L3).

Promises: `rolled_over(before, after, elapsed_ms, most_w)` is the mWh a PCC meter's energy counter counted from a
reading of `before` to a later, smaller one of `after` (mWh, as a reading leaf has them) read as one roll-over of
its register, or None where the two readings cannot be one (the counter went back: a reset, a replaced meter);
`counted_forward(before, after, elapsed_ms, most_w)` the mWh it counted from `before` to a later, not smaller
`after`, or None where that is more than its connection carries in the time (a jump: a scale factor raised
while the count stayed, a replaced meter; no energy, the window unmetered as for a reset);
`roll_bound_mwh(elapsed_ms, most_w)` the most a meter of `most_w` W can count in that time, which is both
bounds (`bound_words` says it in a refusal's words); `posted_w(state, account, interval, interval_ms)` that power for an MG: its connection capacity as the
DSO posted it on the chain (`market.capacity`, Wh per interval) in W, or None where none is posted (then
`MOST_PCC_W`, R38-2). Model 203's TotWhExp / TotWhImp (201, 202 and 204's too) are acc32: counts of
10^TotWh_SF Wh that roll over to 0 after 2^32 - 1 (a 1 MW PCC meter at TotWh_SF 0 every 4,300 full-load
hours), and SunSpec's reader takes a difference modulo the register's width. `metering.samples` is the one
caller (the edge states from it, the DSO settles from it: both read the same Wh, each with `posted_w` of the
trading anonym's capacity in the trade's interval, which the chain fixes once the anonym traded there:
`market_capacity`). `leaf_rolls(fields)` is whether a reading leaf's counters can roll over at all (its
`ROLLS` field, L2): the edge writes `rolls: false` on the leaves of a meter whose counters never roll (MQTT
telemetry's JSON numbers), and nothing on a Modbus meter's (acc32), so a leaf without the field, every leaf
sealed before it, may roll as before; a counter that went back between readings of which either never rolls is
a reset, never a roll-over (`metering.samples_of`, the one reading the edge states from and the DSO settles
from). Pure: no clock, no I/O (the state is read, never written). Raises `ValueError` for arguments no caller
passes (a counter that did not go back to `rolled_over`, one that went back to `counted_forward`, readings out
of order, a power or an interval that is not positive) and for a `rolls` field that is neither true nor false.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peergrid_ledger.state import StateReader

ACC32 = 1 << 32  # counts an acc32 register holds: TotWhExp / TotWhImp roll over to 0 after ACC32 - 1
# What a PCC meter can count between two readings, for telling a roll-over from a reset (`rolled_over`) and a
# forward step from a jump (`counted_forward`, L3: a wider bound lets a jump through as energy, so one bound): the
# power its connection carries (`posted_w`: the capacity the DSO posted for the MG, R38-2) over the time between
# the readings' stamps plus 10 s (the stamps are the MGMC's, taken when a poll returned: a register may have
# been read up to a poll timeout, 1 s by default, before its stamp, and more on a slow bus). The bound is also
# what a reset misread as a roll-over can add, so it is kept as tight as the MG's own connection: a 1 MW MG
# 3.06 kWh between polls 1 s apart. Where the DSO posted no capacity, 10 MW: no microgrid peergrid serves
# carries that at its point of common coupling (its MGs are 0.1-5 MW; a whole distribution feeder is rated
# some 10-30 MW), 30.6 kWh between polls 1 s apart. The exact rule needs the meter's TotWh_SF in the reading
# leaf, which it does not carry. Forward, the slack is what an honest meter may show beyond its connection's
# power over the stamps' time (a poll stamped late after a slow read, a connection briefly over its rating):
# a 1 MW MG polled every second may step 3.06 kWh, eleven times its power; a raised TotWh_SF (a jump of nine
# times the counter) is then refused on any counter above 340 Wh (3.4 kWh where no capacity is posted).
MOST_PCC_W = 10_000_000
ROLL_SLACK_MS = 10_000
# TotWh_SF a roll-over is undone at: SunSpec allows -10..10, but below -3 a count is finer than the leaf's mWh
# (its range not a whole number of mWh) and the register rolls every 430 Wh or less, which no PCC meter does.
ROLL_SCALES = range(-3, 11)
# A reading leaf's field saying whether its counters can roll over (L2). Written only as false, by the edge, for a
# driver whose counters never roll (`commitments.counters_roll`); absent means they may: a Modbus meter's leaf
# stays byte for byte what it was, and a leaf sealed before the field existed keeps its reading.
ROLLS = "rolls"


def leaf_rolls(fields: Mapping[str, object]) -> bool:
    """Whether the counters of a decoded reading leaf (`fields`) can roll over: False where the leaf says
    `rolls: false` (a meter whose counters never roll), True where it says nothing (acc32, and every leaf sealed
    before the field) or true. Why a flag and not the register's width: the leaf's counters are mWh of a
    TotWh_SF it does not carry, so a width alone could not undo a roll exactly (`rolled_over` infers the
    range), and an MQTT meter's counter has no width; what a reader needs is only whether a step back can be a
    roll-over at all."""
    rolls = fields.get(ROLLS, True)
    if not isinstance(rolls, bool):
        raise ValueError(f"a reading's {ROLLS} field is neither true nor false")
    return rolls


def connection_w(capacity_wh: int, interval_ms: int) -> int:
    """A connection capacity of `capacity_wh` Wh per market interval of `interval_ms` as a power in W, rounded
    up (a meter counting at the capacity is always within `roll_bound_mwh`): 250,000 Wh per 15 min is 1 MW."""
    if capacity_wh <= 0 or interval_ms <= 0:
        raise ValueError(f"a capacity of {capacity_wh} Wh per {interval_ms} ms is no connection's")
    return -(-capacity_wh * 3_600_000 // interval_ms)  # Wh per ms x 3.6e6 = W, exact integer ceiling


def posted_w(state: StateReader, account: bytes, interval: int, interval_ms: int) -> int | None:
    """The power bounding a roll-over of `account`'s PCC meter in market `interval` (intervals `interval_ms`
    long): the connection capacity the DSO posted for it standing there (`market_state.capacity`) as W
    (`connection_w`), or None where none is posted (`roll_bound_mwh` then takes `MOST_PCC_W`). The edge reads it
    for its own anonym, the DSO for the trade's party, on their replicas of the same chain: a capacity for an
    interval the anonym traded in never changes after (`market_capacity`), so both read the same figure."""
    # imported here: every contract module comes with it, which an edge daemon that does not trade never loads
    # (1 MB resident on `import peergrid_edge.daemon`, which reaches this module through metering)
    from peergrid_ledger.contracts.market_state import capacity

    posted = capacity(state, account, interval)
    return None if posted is None else connection_w(posted, interval_ms)


def roll_bound_mwh(elapsed_ms: int, most_w: int | None = None) -> int:
    """The most mWh a PCC meter of `most_w` W (None: `MOST_PCC_W`, no capacity posted) counts in `elapsed_ms`
    between two readings' stamps: the power over the time plus `ROLL_SLACK_MS` (why: their comments); at
    10 MW 30.6 kWh between polls 1 s apart, 194 kWh 60 s apart; at 1 MW a tenth of those."""
    if elapsed_ms < 0:
        raise ValueError(f"readings {elapsed_ms} ms apart: the later one is not later")
    power = MOST_PCC_W if most_w is None else most_w
    if power <= 0:
        raise ValueError(f"a meter of {power} W counts nothing: no roll-over bound")
    return power * (elapsed_ms + ROLL_SLACK_MS) // 3600  # W x ms / 3600 = mWh


def rolled_over(before: int, after: int, elapsed_ms: int, most_w: int | None = None) -> int | None:
    """The mWh an acc32 energy counter counted from a reading of `before` to a later one of `after` < `before`
    (mWh, as a leaf has them; the readings `elapsed_ms` apart) read as one roll-over: SunSpec's (after - before)
    mod 2^32 counts, or None where the two readings cannot be one (then the counter went back: a reset, a
    replaced meter). The leaf does not say the meter's TotWh_SF, so the register's range is the smallest that
    holds `before`: 2^32 counts of 10^sf Wh for the least sf in `ROLL_SCALES` above it, both readings a whole
    number of those counts (the edge's leaf is the count x 10^sf x 1000, exactly). It is one roll-over only
    when what it counted is at most what a meter can count in that time (`roll_bound_mwh` at `most_w`: the
    MG's posted connection, `posted_w`; None: `MOST_PCC_W`, where the DSO posted none). So a meter reset
    or replaced (its counter back to 0, or to any smaller figure) is still refused, unless its old counter
    was within that bound below the top of such a range (4.29 MWh, 42.9 MWh, ... 4.29 GWh at sf 0): then it
    reads as a roll-over, and the window counts at most that bound more than the meter did. A scale factor
    that changes between readings is no roll-over either: a meter that changes it keeps its Wh (the count
    rescaled, the leaf's figure the same), and one whose count stays while the factor changes jumps by ten
    times, refused going back unless within the bound, read as counted going forward (as before this). One
    roll-over at most: only at TotWh_SF -3 and readings over 25 minutes apart could the 10-MW bound exceed
    the register's 4.29 MWh range (at an MG's posted connection: that much longer below 10 MW, shorter
    above), which is then read as crossed once."""
    if not 0 <= after < before:
        raise ValueError(f"a counter from {before} to {after} mWh did not go back")
    for scale in ROLL_SCALES:
        count_mwh = 10 ** (scale + 3)
        if before < ACC32 * count_mwh:
            break
    else:
        return None  # more than any acc32 register holds: a counter that never rolls
    if before % count_mwh or after % count_mwh:
        return None  # not whole counts at the only scale it could have rolled at
    counted = after + ACC32 * count_mwh - before
    return counted if counted <= roll_bound_mwh(elapsed_ms, most_w) else None


def counted_forward(before: int, after: int, elapsed_ms: int, most_w: int | None = None) -> int | None:
    """The mWh a PCC meter's energy counter counted from a reading of `before` to a later one of `after` >=
    `before` (mWh, as a leaf has them; the readings `elapsed_ms` apart): their difference, or None where it is
    more than a meter of `most_w` W counts in that time (`roll_bound_mwh`: the MG's posted connection,
    `posted_w`; None: `MOST_PCC_W`, where the DSO posted none). Then the step is no energy that crossed the
    connection but a counter that jumped: a TotWh_SF raised while the count stayed (the leaf reads ten times
    the Wh: the leaf carries no factor to tell), a meter replaced by one counting from a higher figure, a
    firmware fault; the reader takes it as it takes a reset (`metering.samples_of`: the window unmetered, L3).
    The bound is the roll-over's, so what a meter may count between two readings is one figure whichever way
    its counter moved."""
    if after < before:
        raise ValueError(f"a counter from {before} to {after} mWh went back")
    step = after - before
    return step if step <= roll_bound_mwh(elapsed_ms, most_w) else None


def bound_words(elapsed_ms: int, most_w: int | None = None) -> str:
    """The bound `counted_forward` holds a step to, in the words a refusal gives it: '3055555 mWh at 1000000 W,
    posted' (the MG's posted connection) or '... at 10000000 W, none posted' (`MOST_PCC_W`)."""
    power = MOST_PCC_W if most_w is None else most_w
    posted = "none posted" if most_w is None else "posted"
    return f"{roll_bound_mwh(elapsed_ms, most_w)} mWh at {power} W, {posted}"
