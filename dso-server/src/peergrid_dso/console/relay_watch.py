"""The closed loop's relay watch as the console shows it: the alarm list and the Relay positions card.

Promises: `standing(watch)` is the node's last relay reading (`switching_watch.RelayWatch`, after each
interval) while its alarm stands - by `RelayWatch.alarm`'s own rule: a relay off the open set or unreadable,
judged against the open set the DSO still holds - else None; so the console lifts it when the watch does (the
next read agrees, or a plan or an operator's adoption changed the open set). `watch_view(found, feeder)` says
which branch reports what beside where the DSO holds it, which could not be read and why, and the open set an
adoption of that reading would take (`switching_adopt.adopt`: all read, none moving, radial) or why it would be
refused. The adoption itself reads every relay again (`Operations.adopt_relays`) and is refused when they
report another open set by then. Reads what the node's thread last wrote; never reads or commands a relay.
"""

from __future__ import annotations

from typing import Any

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.switching_adopt import AdoptRefused, RelayReading, adopt
from peergrid_dso.services.switching_watch import WatchFinding


def watch_of(loop: Any) -> Any:
    """The embedded node's relay watch (`DsoLoop.watch`), or None (no node, or a node without one)."""
    return getattr(getattr(getattr(loop, "node", None), "loop", None), "watch", None)


def standing(watch: Any) -> WatchFinding | None:
    if watch is None:
        return None
    found, topology = watch.finding, watch.topology  # one read of each: the node's thread replaces them
    if not isinstance(found, WatchFinding) or topology is None or not found.standing:
        return None
    if tuple(sorted(topology.open_set)) != found.held_open:  # a plan or an adoption since: read again first
        return None
    return found


def watch_view(found: WatchFinding, feeder: Feeder) -> dict[str, Any]:
    view: dict[str, Any] = {
        "alarm": found.alarm(),
        "held_open": list(found.held_open),
        "relays": [{"branch": b, "reports": seen, "held": found.held(b)} for b, seen in found.off],
        "unreadable": [{"branch": b, "why": why} for b, why in found.unreadable],
    }
    # the relays not named agree with the open set held, so the named ones are all an adoption changes
    reading = RelayReading(dict(found.off), dict(found.unreadable))
    try:
        adoption = adopt(feeder, found.held_open, reading)
    except AdoptRefused as exc:
        return view | {"adoptable": False, "adopt_open": None, "reason": str(exc)}
    return view | {"adoptable": True, "adopt_open": list(adoption.open_set), "reason": None}
