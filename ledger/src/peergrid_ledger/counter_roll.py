"""An acc32 energy counter's roll-over told from a reset: what SunSpec's reader takes across it (R37-3).

Promises: `rolled_over(before, after, elapsed_ms)` is the mWh a PCC meter's energy counter counted from a reading
of `before` to a later, smaller one of `after` (mWh, as a reading leaf has them) read as one roll-over of its
register, or None where the two readings cannot be one (the counter went back: a reset, a replaced meter);
`roll_bound_mwh(elapsed_ms)` the most a meter can count in that time, which tells the two apart. Model 203's
TotWhExp / TotWhImp (201, 202 and 204's too) are acc32: counts of 10^TotWh_SF Wh that roll over to 0 after
2^32 - 1 (a 1 MW PCC meter at TotWh_SF 0 every 4,300 full-load hours), and SunSpec's reader takes a difference
modulo the register's width. `metering.samples` is the one caller (the edge states from it, the DSO settles
from it: both read the same Wh). Pure: no clock, no I/O. Raises `ValueError` for arguments no caller passes (a
counter that did not go back, readings out of order).
"""

from __future__ import annotations

ACC32 = 1 << 32  # counts an acc32 register holds: TotWhExp / TotWhImp roll over to 0 after ACC32 - 1
# What a PCC meter can count between two readings, for telling a roll-over from a reset (`rolled_over`): no
# microgrid peergrid serves carries 10 MW at its point of common coupling (its MGs are 0.1-5 MW; a whole
# distribution feeder is rated some 10-30 MW), over the time between the readings' stamps plus 10 s (the stamps
# are the MGMC's, taken when a poll returned: a register may have been read up to a poll timeout, 1 s by
# default, before its stamp, and more on a slow bus). The bound is also what a reset misread as a roll-over can
# add (R38-2: at 100 MW a reset from 4.2 MWh to 0 read as 95 kWh in a second), so it is kept as tight as the
# MGs allow; the exact rule needs the meter's TotWh_SF in the reading leaf, which it does not carry.
MOST_PCC_W = 10_000_000
ROLL_SLACK_MS = 10_000
# TotWh_SF a roll-over is undone at: SunSpec allows -10..10, but below -3 a count is finer than the leaf's mWh
# (its range not a whole number of mWh) and the register rolls every 430 Wh or less, which no PCC meter does.
ROLL_SCALES = range(-3, 11)


def roll_bound_mwh(elapsed_ms: int) -> int:
    """The most mWh a PCC meter counts in `elapsed_ms` between two readings' stamps: `MOST_PCC_W` over the time
    plus `ROLL_SLACK_MS` (why those: their comments): 30.6 kWh between polls 1 s apart, 194 kWh 60 s apart."""
    if elapsed_ms < 0:
        raise ValueError(f"readings {elapsed_ms} ms apart: the later one is not later")
    return MOST_PCC_W * (elapsed_ms + ROLL_SLACK_MS) // 3600  # W x ms / 3600 = mWh


def rolled_over(before: int, after: int, elapsed_ms: int) -> int | None:
    """The mWh an acc32 energy counter counted from a reading of `before` to a later one of `after` < `before`
    (mWh, as a leaf has them; the readings `elapsed_ms` apart) read as one roll-over: SunSpec's (after - before)
    mod 2^32 counts, or None where the two readings cannot be one (then the counter went back: a reset, a
    replaced meter). The leaf does not say the meter's TotWh_SF, so the register's range is the smallest that
    holds `before`: 2^32 counts of 10^sf Wh for the least sf in `ROLL_SCALES` above it, both readings a whole
    number of those counts (the edge's leaf is the count x 10^sf x 1000, exactly). It is one roll-over only
    when what it counted is at most what a meter can count in that time (`roll_bound_mwh`). So a meter reset
    or replaced (its counter back to 0, or to any smaller figure) is still refused, unless its old counter
    was within that bound below the top of such a range (4.29 MWh, 42.9 MWh, ... 4.29 GWh at sf 0): then it
    reads as a roll-over, and the window counts at most that bound more than the meter did. A scale factor
    that changes between readings is no roll-over either: a meter that changes it keeps its Wh (the count
    rescaled, the leaf's figure the same), and one whose count stays while the factor changes jumps by ten
    times, refused going back unless within the bound, read as counted going forward (as before this). One
    roll-over at most: only at TotWh_SF -3 and readings over 2.4 minutes apart could the bound exceed the
    register's 4.29 MWh range, which is then read as crossed once."""
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
    return counted if counted <= roll_bound_mwh(elapsed_ms) else None
