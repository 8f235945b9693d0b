"""Which nodes the DSO has heard from, and their last health report.

Promises: `NodeBoard.ingest(topic, payload)` accepts only well-formed health reports on
`peergrid/<feeder>/health/<node>` whose body names the same node and nests at most `MAX_HEALTH_DEPTH`
deep; anything else (bad UTF-8 or JSON, nesting that exhausts the decoder's recursion, an integer past
Python's digit limit) is counted as dropped and never raises. Thread-safe (paho delivers on its own
thread). Holds no sockets itself: `MqttHealthListener` is the I/O shell that feeds it; a report that
still makes `ingest` raise (a bug) is logged and counted there, never allowed to end paho's network
thread - one node's message must not stop the DSO hearing every other node.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MAX_HEALTH_BYTES = 64 * 1024
# A report is a few levels deep (report -> devices -> device -> value); a stored report nested hundreds
# deep would pass json.loads and then fail every view that re-encodes it (GET /api/nodes, the console).
MAX_HEALTH_DEPTH = 16
log = logging.getLogger("peergrid_dso.health")


@dataclass
class NodeBoard:
    feeder: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ingest(self, topic: str, payload: bytes, *, received_at: float | None = None) -> bool:
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "peergrid" or parts[1] != self.feeder or parts[2] != "health":
            return self.drop()
        if len(payload) > MAX_HEALTH_BYTES:
            return self.drop()
        try:
            report = json.loads(payload)
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return self.drop()
        if (
            _too_deep(report)
            or not isinstance(report, dict)
            or report.get("node") != parts[3]
            or not isinstance(report.get("devices"), list)
        ):
            return self.drop()
        with self._lock:
            self.nodes[parts[3]] = {"received_at": received_at or time.time(), "report": report}
        return True

    def drop(self) -> bool:
        """Count one report refused (also by the listener, for a report that made `ingest` raise)."""
        with self._lock:
            self.dropped += 1
        return False

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


class MqttHealthListener:
    """Subscribes to every node's health topic on the feeder's broker and feeds a NodeBoard."""

    def __init__(self, board: NodeBoard, host: str, port: int, client_id: str) -> None:
        self.board = board
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        # paho re-raises a callback's exception out of its network thread, which then ends for good (the
        # board keeps its last reports forever). `_on_message` catches its own; this keeps any other
        # callback's from doing the same (paho then logs it to the logger below).
        self.client.suppress_exceptions = True
        self.client.enable_logger(logging.getLogger("peergrid_dso.health.paho"))
        self.host, self.port = host, port

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.board.ingest(msg.topic, bytes(msg.payload))
        except Exception:
            self.board.drop()
            log.exception(
                "health report on %s (%d bytes) dropped: ingest raised", msg.topic, len(msg.payload)
            )

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object = None
    ) -> None:
        if not reason.is_failure:
            client.subscribe(f"peergrid/{self.board.feeder}/health/+", qos=0)

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
