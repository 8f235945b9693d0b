"""A paho client's reconnects as a list of events, for the outage tests that must not time anything.

Promises: `Reconnects(client)` notes, in the order paho's network thread meets them, every refused connect
attempt with the back-off paho waited before it, and every accepted connection; the client's own callbacks
still run, after the note. A test then asserts the back-off (it doubles, up to its bound) and the order of
events (how many attempts were refused once the broker was back), never how long anything took: on a loaded
machine paho's waits stretch, their sizes and order do not.
Assumes paho-mqtt 2.x: `_reconnect_delay` is the wait it took before the attempt (set before it sleeps, cleared
by an accepted CONNACK), as tests/edge/test_edge_link_reconnect.py reads it. Install it before the broker goes.
"""

from __future__ import annotations

import threading
from typing import Any

REFUSED, CONNECTED = "refused", "connected"


class Reconnects:
    def __init__(self, client: Any) -> None:
        self._lock = threading.Lock()
        # (REFUSED, the wait before it) or (CONNECTED, None)
        self._events: list[tuple[str, float | None]] = []
        connect_failed, connected = client.on_connect_fail, client.on_connect

        def on_connect_fail(paho: Any, userdata: Any) -> None:  # the socket refused or unanswered
            self._note(REFUSED, paho._reconnect_delay)
            if connect_failed is not None:
                connect_failed(paho, userdata)

        def on_connect(paho: Any, userdata: Any, *rest: Any) -> None:  # a CONNACK: flags, reason, properties
            accepted = not rest[1].is_failure
            self._note(CONNECTED if accepted else REFUSED, None if accepted else paho._reconnect_delay)
            if connected is not None:
                connected(paho, userdata, *rest)

        client.on_connect_fail = on_connect_fail
        client.on_connect = on_connect

    def _note(self, kind: str, wait_s: float | None) -> None:
        with self._lock:
            self._events.append((kind, wait_s))

    def mark(self) -> int:
        """A place in the events (e.g. the broker's return), for `since`."""
        with self._lock:
            return len(self._events)

    def since(self, mark: int = 0) -> list[str]:
        """The kinds of the events from `mark` on, in order."""
        with self._lock:
            return [kind for kind, _ in self._events[mark:]]

    def waits(self) -> list[float | None]:
        """The back-off paho waited before each refused attempt, in order."""
        with self._lock:
            return [wait_s for kind, wait_s in self._events if kind == REFUSED]


def doubling(first_s: float, bound_s: float, count: int) -> list[float]:
    """The first `count` waits of a back-off that starts at `first_s` and doubles up to `bound_s` (paho's)."""
    return [min(first_s * 2**k, bound_s) for k in range(count)]


def back_on_first_try(events: list[str]) -> bool:
    """Whether the events after a broker's return are its connection at the first attempt made to it: at most
    one refused before (an attempt begun while the broker was still down, noted just after its return)."""
    return events in ([CONNECTED], [REFUSED, CONNECTED])
