"""Intervals the DSO node will never act on (D8, D11): recorded as missed, with why, never acted on.

Promises: `loop_clock(mgmc, configured)` is when (wall s) each interval of the loop ends on the market's clock, or
None where the node has none. The clock is the loop's `market_clock` (`configured`: the MGMCs' own `market.t0`
and `market.interval_s`, which the Ansible roles render for both from `peergrid_market_epoch` and
`peergrid_market_interval_s`: a pilot's), else the MGMC chain's posted `market.clock` (its epoch and the genesis'
`settle_interval_ms`: interval k ends at epoch + (k + 1) x interval), read at every call, since the lab posts it
after the node starts; until one is posted nothing is missed. Why a pilot's node reads its clock and does not post
`market.clock` from its config (D11): the chain refuses the post once an anonym holds a position, which is every
pilot already trading, the very one whose restarted node needs the clock; and a post would move the chain's close
and settle times (`market_close_time`, `market_closing`, uplift's `ready_by`) to a config file's word over the
genesis' `settle_epoch_ms`: the DSO needs to know the clock, not to set it. Not `disputes.t0`: the lab writes it
into the DSO's config before t0 moves later (a DSO ready late), so it would make the first intervals look over;
not the MGMC genesis' own `settle_epoch_ms`: provisional in the lab for the same reason, and 0 in test and demo
geneses. Without a clock (a lab without `--settle-by-both`; a pilot's node before U7 sat at interval 2 while the
MGMCs traded 24) the loop acts on every interval as before (D7's resume only), however late.
`overdue(ends_at, start, end, now, past)` is the run of intervals from `start` whose end has passed (`now` >= it;
the loop passes the time its run started, so only an outage's intervals are missed: a node that falls behind
while running catches up, as the MGMCs do, since they wait for its verdict on the interval before theirs and so
trade late in step with it) and that the MGMCs have gone past (`past(t)`; the loop's: one of them sent its
injection for t + 1, `DsoLoop.market_past`). Why both (R45): the MGMCs wait for the DSO during its outage too
(its verdict on their interval, 113 s in U6's 6-MG 8-s lab (`dso_timeout_s`), then on the one before their next, up
to three intervals), so at its return they are behind the clock; an interval over on the clock that they have
not traded yet, or are waiting on its verdict for, is acted on, late, like the running one: its final verdict
published as missed would let them trade it with no network check, as 325075d said of a loaded node.
`left_behind(ends_at, start, end, now, sent)` is, while the node runs too, the run of intervals from `start` over
on the clock that no MGMC sent an injection for, once one sent one for a later interval (`went_to`) and every MGMC
that sent one for the interval before `start` (in step with the node: it may be bargaining `start` now, late,
after the node's verdict on the one before) has gone on to `went_to` or later: the MGMCs left them behind (all
restarted and joined at the clock's interval, or back after a DSO outage longer than their three intervals'
wait), and nobody will send their injections; before (U7), the node waited up to an hour for each. An interval
some MGMC sent one for is acted on, late, as before (325075d); one not over may still be traded; `LeftBehind` is
how the loop's wait for an interval's first injection ends when it becomes so (`gone_on` says why).
`missed_record` is the interval record the loop writes for each (`missed`: why, no analysis, no contract, no
switching), `missed_verdict` the final verdict it publishes for it (the MGMCs wait for one before their next
interval) and `said` the one line for the run. A record means finished to `interval_resume`, so a missed
interval is not run by a later restart either.
An interval already started but not over is acted on, late: its injections and contracts are for the rest of
its delivery, and the security check and switching protect the feeder for what remains of it; skipping it
would leave the feeder unchecked for that time, which is what the DSO is for. Only an interval wholly past
has nothing left to protect. Pure; no clock of its own, no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from peergrid_ledger.contracts.market_clock import posted_epoch

EndsAt = Callable[[int], float | None]  # interval -> when it ends (wall s), None: not known now

DOWN = "the DSO node was not running when it ended"


class LeftBehind(Exception):
    """The interval the loop waits on was left behind by the MGMCs (`left_behind`): recorded missed, not acted on."""


def loop_clock(mgmc: Any, configured: Any = None) -> EndsAt | None:
    """When each interval ends on the market's clock: the loop's `market_clock` (`configured`, t0 and interval_s
    in wall s), else the MGMC chain's posted clock (module docstring); None with neither."""
    if configured is not None:
        t0, length_s = float(configured.t0), float(configured.interval_s)
        return lambda t: t0 + (t + 1) * length_s
    if mgmc is None:
        return None

    def ends_at(t: int) -> float | None:
        replica = mgmc.node.replicas[mgmc.chain]
        epoch = posted_epoch(replica.app.state)
        length_ms = int(replica.store.genesis.params.settle_interval_ms or 0)
        if epoch is None or not length_ms:
            return None
        return (epoch + (t + 1) * length_ms) / 1000

    return ends_at


def overdue(
    ends_at: EndsAt | None, start: int, end: int | None, now: float, past: Callable[[int], bool] | None = None
) -> list[tuple[int, float]]:
    """The intervals from `start` (before `end`; None: no last interval) that ended by `now` and that the MGMCs
    have gone past (`past`; None: not known, the clock alone), with when, up to the first not over (or not
    known) or not gone past: the clock bounds the run where the loop does not."""
    run: list[tuple[int, float]] = []
    if ends_at is None:
        return run
    for t in itertools.count(start) if end is None else range(start, end):
        ended = ends_at(t)
        if ended is None or ended > now or (past is not None and not past(t)):
            break
        run.append((t, ended))
    return run


def left_behind(
    ends_at: EndsAt | None, start: int, end: int | None, now: float, sent: Callable[[int], set[str]]
) -> tuple[list[tuple[int, float]], int] | None:
    """The intervals from `start` (before `end`; None: no last interval) over on the clock by `now` that no MGMC
    sent an injection for (`sent(t)`: the MGs that did), with when each ended, and the interval the MGMCs went on
    to (the first after them one did); None where none is left behind (module docstring): `start` was sent for,
    or the walk met an interval not over (or not known) first, or an MGMC in step at `start - 1` has not gone on
    by the interval after the one running (it may yet send `start`'s)."""
    if ends_at is None:
        return None
    run: list[tuple[int, float]] = []
    went_to = start
    while not sent(went_to):
        ended = ends_at(went_to)
        if ended is None or ended > now:  # not over: the MGMCs may yet trade it
            return None
        if end is None or went_to < end:
            run.append((went_to, ended))
        went_to += 1
    if not run:
        return None
    in_step = sent(start - 1) if start > 0 else set()
    gone_on: set[str] = set()
    later = went_to
    while not in_step <= gone_on:
        gone_on |= sent(later)
        before = ends_at(later - 1)
        if before is None or before > now:  # `later` has not started: nobody trades past it (but for skew)
            break
        later += 1
    return (run, went_to) if in_step <= gone_on else None


def gone_on(went_to: int) -> str:
    """Why an interval the MGMCs left behind is missed (`left_behind`)."""
    return f"no MGMC traded it: they went on to {went_to}"


def missed_record(t: int, ended: float, now: float, why: str = DOWN) -> dict[str, Any]:
    """Interval t's record: missed, why (it ended while the node was down: `DOWN`, or `gone_on`), when it ended
    and when the node saw it."""
    return {"interval": t, "missed": why, "ended": ended, "noticed": now, "adjustments": [], "plan": None}


def missed_verdict(record: dict[str, Any], open_set: list[int], iteration: int) -> dict[str, Any]:
    """The final verdict published for a missed interval: an MGMC waits for the DSO's final verdict on the
    interval before its own (`dso_verdicts.previous_cleared`, up to three intervals) and on its own; `secure`
    None, as nothing was checked; the relays' open set stands as it is. `iteration`: past any the node may
    have published for it before its stop (the loop's `max_iterations` + 1), since an MGMC keeps the verdict
    of the highest iteration (`verdict_inbox.file_verdict`): with iteration 0, one holding iteration 1 of a
    half-done interval dropped it and waited out its `dso_timeout_s` (R45)."""
    return {"interval": record["interval"], "iteration": iteration, "final": True, "secure": None,
            "open": open_set, "unmet": None, "missed": record["missed"]}  # fmt: skip


def said(run: list[int], next_interval: int, end: int | None, why: str = DOWN) -> str:
    """The one line for a run of missed intervals, why, naming where the loop goes on."""
    span = str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"
    left = end is None or next_interval < end
    goes_on = f"going on with interval {next_interval}" if left else "no interval left to run"
    return f"intervals {span} missed, over before the DSO worked on them ({why}): no contract, no switching; {goes_on}"
