"""The day-ahead coordinator's bounded wait for the DSO's cover prices before it opens (review12 F6).

Promises: on a `settle_by_both` chain (`SessionView.expects_tariffs`) with `tariff_wait_s` > 0,
`tariff_wait(agent)` is how long the coordinator may wait now: `tariff_wait_s`, and with a deadline at most
`TARIFF_SHARE` of the time left to its close (0 otherwise: no wait). `await_tariffs(agent)` waits that long
for every member's cover prices (`market.tariff`) for the intervals the MGMC trades (`agent.priced`): what
is still missing when it ends is kept in `agent.unpriced` ({}: all priced) with one warning line naming it,
and the session opens all the same (a trade in an interval still unpriced when the clear closes it settles
without imbalance compensation); when they arrive, one info line. Never posts; reads its replica only.
Split from dayahead_agent.py, which keeps `_tariff_wait` as its seam.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peergrid_edge.dayahead_agent import DayAheadAgent

log = logging.getLogger("peergrid.edge.dayahead")
# with a deadline, the share of the time left until its close the coordinator may spend waiting for the DSO's
# cover prices: the rest is the session's own (a day without prices beats a day without forward trades)
TARIFF_SHARE = 0.5


def tariff_wait(agent: DayAheadAgent) -> float:
    """How long the coordinator may wait for the DSO's cover prices now (0: none expected here)."""
    if agent.tariff_wait_s <= 0 or not agent.view.expects_tariffs():
        return 0.0
    if agent.deadline is None:
        return agent.tariff_wait_s
    return min(agent.tariff_wait_s, max(0.0, TARIFF_SHARE * (agent.deadline.close_s - agent.clock())))


async def await_tariffs(agent: DayAheadAgent) -> None:
    """The coordinator, before it opens: wait (bounded) for every member's cover prices for `priced`
    (review12 F6: a DSO node that starts late left the forward day unpriced); on time out one warning
    line, what is missing kept in `unpriced`, and the session opens all the same."""
    if agent.tariff_wait_s <= 0 or not agent.view.expects_tariffs():
        return
    agent.unpriced = agent.view.unpriced(agent.priced)
    if not agent.unpriced:
        return
    started = time.monotonic()
    agent.unpriced = missing = await agent.view.await_tariffs(
        agent.priced, agent._tariff_wait(), agent.before_submit
    )
    waited = time.monotonic() - started
    if not missing:
        log.info("day-ahead session %s: the DSO's cover prices are on the chain after %.1f s; opening",
                 agent.session, waited)  # fmt: skip
        return
    first = min(t for ts in missing.values() for t in ts)
    log.warning(
        "day-ahead session %s: no DSO cover prices after waiting %.1f s for %d of %d members (%d member-"
        "intervals, the first interval %d): opening unpriced; forward trades in intervals still unpriced "
        "at the clear settle without imbalance compensation",
        agent.session, waited, len(missing), len(agent.members), sum(map(len, missing.values())), first,
    )  # fmt: skip
