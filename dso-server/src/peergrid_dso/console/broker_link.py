"""What the console's header tells of the DSO server's connection to the feeder's broker.

Promises: `broker_link(listener, loop)` reads the server's two MQTT connections - the health listener's
(`services.health_listener`: the MGMCs' health reports) and, with a closed loop, its node's ledger transport's
(`EmbeddedLoop.ledger`, `live_reconnect.ledger_health`: the chains) - as `/api/health` reads them, and says
`connected` (every one of them is; None when the server holds neither: nothing to tell), `lost` (the names of
those off the broker, in a fixed order) and `down_s` (how long the one off it longest has been, rounded to 0.1 s;
null while connected or when no one of them can say). A connection that has not tried yet (starting) is not
lost; a dead one (its network thread ended) is. `told_again(before, now)` says whether the console must be told:
at the first reading, and when `connected` or `lost` moves, never for `down_s` alone (the browser counts on).
Never raises on a stand-in without the attributes; reads each connection's state under its own lock.

Why: U2's lab: during a 15-s broker outage no MGMC could trade, `/api/health` said so, and the console's header,
whose live-feed line is about the browser's feed from this server (which stayed up), looked healthy.
"""

from __future__ import annotations

from typing import Any

LISTENER = "health listener"
LEDGER = "ledger link"


def _listener_down(listener: Any) -> tuple[bool, float | None]:
    """(off the broker, for how long in s or None) of the health listener."""
    health = listener.health()
    if health["connected"] or health["state"] == "starting":
        return False, None
    since = getattr(getattr(listener, "outage", None), "down_since", None)
    if since is None:  # dead, or before its first attempt was refused: off, since when it cannot say
        return health["state"] == "dead", None
    return True, max(0.0, listener.clock() - since)


def _ledger_down(loop: Any) -> tuple[bool, float | None] | None:
    """(off the broker, for how long) of the loop node's ledger transport; None without one."""
    health = getattr(loop, "ledger", lambda: None)()
    if health is None:
        return None
    if health["state"] == "dead":  # its thread ended: `connected` is left as it was, and nothing comes back
        return True, health["down_s"]
    if health["connected"] or health["state"] == "starting":
        return False, None
    return True, health["down_s"]


def broker_link(listener: Any, loop: Any) -> dict[str, Any]:
    """The header's broker line's facts (see the module's contract)."""
    found: dict[str, tuple[bool, float | None]] = {}
    if listener is not None:
        found[LISTENER] = _listener_down(listener)
    if loop is not None and (ledger := _ledger_down(loop)) is not None:
        found[LEDGER] = ledger
    if not found:
        return {"connected": None, "lost": [], "down_s": None}
    lost = [name for name in (LEDGER, LISTENER) if name in found and found[name][0]]
    known = [down for name in lost if (down := found[name][1]) is not None]
    down_s = round(max(known), 1) if known else None
    return {"connected": not lost, "lost": lost, "down_s": down_s}


def told_again(before: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    """Whether the console is told `now` after `before` (None: nothing told yet on this feed)."""
    if now["connected"] is None:
        return False
    return before is None or (before["connected"], before["lost"]) != (now["connected"], now["lost"])
