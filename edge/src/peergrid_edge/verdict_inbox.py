"""The trading agent's inbox of DSO verdicts (design step 6; split from `trader.py`, whose `parse_verdict` and
`MarketAgent._on_verdict` these are).

Promises: `parse_verdict` is pure: a verdict is a JSON object holding no NaN/Infinity whose "interval" and
"iteration" are integers and "final" a boolean, else a ValueError naming the fault. `file_verdict` keeps, per
interval, the newest verdict the DSO published (a later iteration, or the final one of the same iteration) in
`agent.verdicts` and wakes whoever waits on `agent._verdict_event` (`dso_verdicts`); a verdict it cannot parse
is one log line and changes nothing. It keeps no more than the agent can still read (`kept`): at most
`VERDICTS_KEPT` intervals, none before the one before the interval the agent works on. Runs in the MQTT
callback: never raises, never blocks.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from peergrid_edge.telemetry import NotFinite, loads_finite

if TYPE_CHECKING:
    from peergrid_edge.trader import MarketAgent

log = logging.getLogger("peergrid.edge.trader")  # the trader's own lines, under its name as before the split

VERDICTS_KEPT = 8
"""The most intervals whose verdicts the agent keeps, the newest by number. Why: the DSO publishes a verdict for
every interval whether this agent trades it or not, and the daemon outlives its agent's run (`market.days: 1`,
the default, trades one day and the daemon polls on): filed for ever, the inbox grew by one interval's verdict
every interval (P6). The agent reads only t - 1 (`dso_verdicts.previous_cleared`), t and any later one
(`dso_verdicts.await_dso`: the DSO past t) while it works on t, so 8 leave room for a DSO several intervals
ahead of it."""


def parse_verdict(payload: bytes) -> dict[str, Any]:
    """Pure: the DSO's verdict, a JSON object holding no NaN/Infinity whose "interval" and "iteration" are integers
    and "final" a boolean (what the agent files and orders verdicts by); ValueError naming the fault if not."""
    try:
        doc = loads_finite(payload)
    except NotFinite as exc:
        raise ValueError(f"verdict {exc}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"verdict is not JSON: {exc}") from None
    kinds = {"interval": int, "iteration": int, "final": bool}  # exactly: True is no interval
    wrong = not isinstance(doc, dict) or any(type(doc.get(k, t())) is not t for k, t in kinds.items())
    if wrong or "interval" not in doc:
        raise ValueError(f"a verdict needs an integer interval and iteration, a boolean final: {doc!r:.100}")
    return dict(doc)


def file_verdict(agent: MarketAgent, payload: bytes) -> None:
    """File one verdict message for the agent (the newest per interval) and wake its waiters."""
    try:
        doc = parse_verdict(payload)
    except ValueError as exc:  # one clear line; the link's handler would log a traceback
        log.warning("ignored a verdict: %s", str(exc)[:200])
        return
    t = doc["interval"]
    old = agent.verdicts.get(t)
    newest = (doc.get("iteration", 0), doc.get("final", False))
    if old is None or newest >= (old.get("iteration", 0), old.get("final", False)):
        agent.verdicts[t] = doc
    agent.verdicts = kept(agent.verdicts, getattr(agent, "working_on", None))
    agent._verdict_event.set()
    agent._verdict_event = asyncio.Event()


def kept(verdicts: dict[int, dict[str, Any]], working_on: int | None) -> dict[int, dict[str, Any]]:
    """Pure: the verdicts the agent may still read (`VERDICTS_KEPT`'s why): those of the newest `VERDICTS_KEPT`
    intervals, and while it works on interval t (`MarketAgent.working_on`) none before t - 1; `verdicts` itself
    where nothing goes."""
    floor = None if working_on is None else working_on - 1
    wanted = sorted(t for t in verdicts if floor is None or t >= floor)[-VERDICTS_KEPT:]
    if len(wanted) == len(verdicts):
        return verdicts
    return {t: verdicts[t] for t in wanted}
