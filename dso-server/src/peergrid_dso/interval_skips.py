"""The DSO loop's skipping of intervals it will not act on: over on the market's clock while the node was down
and gone past by the MGMCs (D8, R45), or left behind by them while it runs (D11). A mixin of
`interval_node.DsoLoop`, split from it to keep that module one idea (the loop); the rules themselves are pure
in `interval_missed`. Each skipped interval is recorded missed with its reason, its final verdict published
(an MGMC starts an interval after the one before's), one WARNING line per run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from peergrid_dso import interval_missed

log = logging.getLogger("peergrid_dso.interval_node")  # (the loop's logger: its lines read as before)


class SkipsMissed:
    """What `DsoLoop` skips (module docstring); it reads the loop's clock, chains, live topology and records."""

    clock: Any
    ends_at: Any
    settings: Any
    live: Any
    active_mgs: Callable[[], set[str]]
    injections: Callable[[int], dict[str, tuple[int, int]]]
    publish: Callable[[dict[str, Any]], None]
    record: Callable[[dict[str, Any]], None]

    def skip_missed(self, t: int, end: int | None, started: float) -> int:
        """Record the run of intervals from t that were over on the market's clock before this run of the node
        `started` as missed, publish each one's final verdict (missed, `secure` None: not checked) and log one
        WARNING line (`interval_missed`); how many. 0 without a clock (`interval_missed.loop_clock`).
        Only an outage's intervals: a node that fell behind while running catches up as the MGMCs do (they wait
        for its verdict on the interval before theirs, so they trade late in step with it, and skipping would
        leave trades agreed now unchecked; a loaded lab fell 8 s behind and skipped intervals); and only those the
        MGMCs have gone past (`market_past`): they wait for the DSO while it is down too, so an interval over on
        the clock may not be traded yet (R45)."""
        now = self.clock()
        run = interval_missed.overdue(self.ends_at, t, end, min(now, started), self.market_past)
        return self.record_missed(run, t, end, now, interval_missed.DOWN)

    def skip_left_behind(self, t: int, end: int | None) -> int:
        """As `skip_missed`, while running too, for the run from t the MGMCs left behind (no MGMC sent an
        injection for it and they went on: `interval_missed.left_behind`; U7's node waited an hour for each)."""
        left = self.left_behind(t, end)
        if left is None:
            return 0
        return self.record_missed(left[0], t, end, self.clock(), interval_missed.gone_on(left[1]))

    def left_behind(self, t: int, end: int | None) -> tuple[list[tuple[int, float]], int] | None:
        if self.ends_at is None:  # no clock: no interval is known to be over
            return None
        active = self.active_mgs()  # (one revoked since it sent the interval before is not waited for)
        sent = lambda u: set(self.injections(u)) & active  # noqa: E731  (the MGs that sent one for u)
        return interval_missed.left_behind(self.ends_at, t, end, self.clock(), sent)

    def record_missed(
        self, run: list[tuple[int, float]], t: int, end: int | None, now: float, why: str
    ) -> int:
        """Each interval of `run` recorded missed with `why` and its final verdict published, one WARNING line."""
        records = [interval_missed.missed_record(u, ended, now, why) for u, ended in run]
        open_now = sorted(self.live.open_set)
        for doc in records:  # its final verdict too: an MGMC starts an interval after the one before's
            self.publish(interval_missed.missed_verdict(doc, open_now, self.settings.max_iterations + 1))
            self.record(doc)
        if records:
            log.warning("%s", interval_missed.said([u for u, _ in run], t + len(run), end, why))
        return len(run)

    def market_past(self, t: int) -> bool:
        """Whether the MGMCs have gone on past interval t: one of them sent its injection for t + 1 on the DSO
        chain (each sends one every interval, and starts t + 1 only once t's final verdict is out or waited
        for). An interval over on the clock that they have not gone past is acted on, not missed (R45)."""
        return bool(self.injections(t + 1))  # (the loop's read of the DSO chain, as `left_behind`'s `sent`)
