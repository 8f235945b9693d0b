"""Intervals that ended while the DSO node was down (D8): recorded as missed, never acted on.

Promises: `loop_clock(mgmc)` is when (wall s) each interval of the loop ends on the market's clock, or None
where the node has none. The market clock is the MGMC chain's posted `market.clock` (its epoch and the genesis'
`settle_interval_ms`: interval k ends at epoch + (k + 1) x interval), read at every call, since the lab posts it
after the node starts; until one is posted the end of an interval is not known, and nothing is missed. Not
`disputes.t0`: the lab writes it into the DSO's config before t0 moves later (a DSO ready late), so it would
make the first intervals look over; not the MGMC genesis' own `settle_epoch_ms`: provisional in the lab for the
same reason, and 0 in test and demo geneses. Where each stands: the lab with `--settle-by-both` posts its
clock before the MGMCs start, so its node has one; a lab without it has none; the pilot's Ansible role
follows the MGMC chain, but nothing posts `market.clock` there (the edges' `peergrid_market_epoch` is not on
chain), so a pilot's node has none until one is posted; the tests' loops have none unless they give one
(`DsoLoop.ends_at`). Without a clock the loop acts on every interval as before (D7's resume only), however late.
`overdue(ends_at, start, end, now, past)` is the run of intervals from `start` whose end has passed (`now` >= it;
the loop passes the time its run started, so only an outage's intervals are missed: a node that falls behind
while running catches up, as the MGMCs do, since they wait for its verdict on the interval before theirs and so
trade late in step with it) and that the MGMCs have gone past (`past(t)`; the loop's: one of them sent its
injection for t + 1, `DsoLoop.market_past`). Why both (R45): the MGMCs wait for the DSO during its outage too
(its verdict on their interval, 113 s in U6's 6-MG 8-s lab (`dso_timeout_s`), then on the one before their next, up
to three intervals), so at its return they are behind the clock; an interval over on the clock that they have
not traded yet, or are waiting on its verdict for, is acted on, late, like the running one: its final verdict
published as missed would let them trade it with no network check, as 325075d said of a loaded node;
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


def loop_clock(mgmc: Any) -> EndsAt | None:
    """When each interval ends on the MGMC chain's posted clock (module docstring); None without an MGMC chain."""
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


def missed_record(t: int, ended: float, now: float) -> dict[str, Any]:
    """Interval t's record: missed (it ended while the node was down), when it ended and when the node saw it."""
    return {"interval": t, "missed": DOWN, "ended": ended, "noticed": now, "adjustments": [], "plan": None}


def missed_verdict(record: dict[str, Any], open_set: list[int], iteration: int) -> dict[str, Any]:
    """The final verdict published for a missed interval: an MGMC waits for the DSO's final verdict on the
    interval before its own (`dso_verdicts.previous_cleared`, up to three intervals) and on its own; `secure`
    None, as nothing was checked; the relays' open set stands as it is. `iteration`: past any the node may
    have published for it before its stop (the loop's `max_iterations` + 1), since an MGMC keeps the verdict
    of the highest iteration (`verdict_inbox.file_verdict`): with iteration 0, one holding iteration 1 of a
    half-done interval dropped it and waited out its `dso_timeout_s` (R45)."""
    return {"interval": record["interval"], "iteration": iteration, "final": True, "secure": None,
            "open": open_set, "unmet": None, "missed": record["missed"]}  # fmt: skip


def said(run: list[int], next_interval: int, end: int | None) -> str:
    """The one line for a run of missed intervals, naming where the loop goes on."""
    span = str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"
    left = end is None or next_interval < end
    goes_on = f"going on with interval {next_interval}" if left else "no interval left to run"
    return f"intervals {span} missed, over before the DSO worked on them ({DOWN}): no contract, no switching; {goes_on}"
