"""Which nodes the DSO has heard from, and their last health report.

Promises: `NodeBoard.ingest(topic, payload)` accepts only well-formed health reports on
`peergrid/<feeder>/health/<node>` whose body names the same node and nests at most `MAX_HEALTH_DEPTH`
deep; anything else (bad UTF-8 or JSON, nesting that exhausts the decoder's recursion, an integer past
Python's digit limit) is counted as malformed (and dropped) and never raises. Thread-safe (paho delivers on
its own thread). `counts()` gives how many reports it took, refused as malformed, and dropped in all (the
malformed and those the listener dropped because `ingest` raised: `drop`). Holds no sockets itself:
`health_listener.MqttHealthListener` (re-exported here) is the I/O shell that feeds it and says whether it
still hears the feeder.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from peergrid_dso.services.health_listener import MqttHealthListener as MqttHealthListener

MAX_HEALTH_BYTES = 64 * 1024
# A report is a few levels deep (report -> devices -> device -> value); a stored report nested hundreds
# deep would pass json.loads and then fail every view that re-encodes it (GET /api/nodes, the console).
MAX_HEALTH_DEPTH = 16


@dataclass
class NodeBoard:
    feeder: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: int = 0
    malformed: int = 0  # of `dropped`: refused by `ingest` itself
    taken: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ingest(self, topic: str, payload: bytes, *, received_at: float | None = None) -> bool:
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "peergrid" or parts[1] != self.feeder or parts[2] != "health":
            return self._refuse()
        if len(payload) > MAX_HEALTH_BYTES:
            return self._refuse()
        try:
            report = json.loads(payload)
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return self._refuse()
        if (
            _too_deep(report)
            or not isinstance(report, dict)
            or report.get("node") != parts[3]
            or not isinstance(report.get("devices"), list)
        ):
            return self._refuse()
        with self._lock:
            self.nodes[parts[3]] = {"received_at": received_at or time.time(), "report": report}
            self.taken += 1
        return True

    def _refuse(self) -> bool:
        with self._lock:
            self.malformed += 1
        return self.drop()

    def drop(self) -> bool:
        """Count one report dropped (also by the listener, for a report that made `ingest` raise)."""
        with self._lock:
            self.dropped += 1
        return False

    def counts(self) -> dict[str, int]:
        """Reports taken, refused as malformed, and dropped in all (malformed or making `ingest` raise)."""
        with self._lock:
            return {"taken": self.taken, "malformed": self.malformed, "dropped": self.dropped}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"nodes": {k: dict(v) for k, v in sorted(self.nodes.items())}, "dropped": self.dropped}


def _too_deep(value: Any) -> bool:
    """Whether `value` nests containers deeper than MAX_HEALTH_DEPTH (iterative: no recursion to exhaust)."""
    level: list[Any] = [value]
    for _depth in range(MAX_HEALTH_DEPTH):
        level = [
            child
            for item in level
            if isinstance(item, (dict, list))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, (dict, list)) for item in level)
