"""How the DSO node's posters on the MGMC chain keep at it: one pass at once, then one every `PASS_S`.

Promises: `passes` runs a poster's pass until the pass says it is done or the node stops; a pass that raises is
logged with what it was posting and tried again at the next pass, so the DSO's loop goes on without what it
posts rather than stop. The cover prices (`tariff.CoverPricer`), the connection capacities
(`capacity_poster.CapacityPoster`) and the exchange fee (`fee_poster.FeePoster`) post through it. `span` is
the posters' words for a run of intervals in a log line. Never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

# the logger of tariff.py, where this loop was written first: a failed pass is logged under the name it had
log = logging.getLogger("peergrid_dso.tariff")
PASS_S = 2.0  # between two looks at the window (a pass is a few state reads per MG when nothing is due)


async def passes(stop: asyncio.Event, one_pass: Callable[[], Awaitable[bool]], what: str) -> None:
    """`one_pass` at once, then every `PASS_S` until it says it is done (True) or `stop`; a pass that raises is
    logged (naming `what`) and tried again next pass: the DSO's loop goes on without what it posts rather than
    stop."""
    while not stop.is_set():
        try:
            if await one_pass():
                return
        except Exception:
            log.exception("%s failed; trying again in %.0f s", what, PASS_S)
        try:
            await asyncio.wait_for(stop.wait(), PASS_S)
        except TimeoutError:
            pass


def span(intervals: list[int]) -> str:
    """`7` for one interval, `7-9` for a run."""
    return f"{intervals[0]}" if len(intervals) == 1 else f"{intervals[0]}-{intervals[-1]}"
