"""Which nodes the DSO has heard from, and their last health report.

Promises: `NodeBoard.ingest(topic, payload)` accepts only well-formed health reports on
`peergrid/<feeder>/health/<node>` whose body names the same node; anything else is counted as dropped and
never raises. Thread-safe (paho delivers on its own thread). Holds no sockets itself: `MqttHealthListener`
is the I/O shell that feeds it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MAX_HEALTH_BYTES = 64 * 1024


@dataclass
class NodeBoard:
    feeder: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ingest(self, topic: str, payload: bytes, *, received_at: float | None = None) -> bool:
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "peergrid" or parts[1] != self.feeder or parts[2] != "health":
            return self._drop()
        if len(payload) > MAX_HEALTH_BYTES:
            return self._drop()
        try:
            report = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self._drop()
        if (
            not isinstance(report, dict)
            or report.get("node") != parts[3]
            or not isinstance(report.get("devices"), list)
        ):
            return self._drop()
        with self._lock:
            self.nodes[parts[3]] = {"received_at": received_at or time.time(), "report": report}
        return True

    def _drop(self) -> bool:
        with self._lock:
            self.dropped += 1
        return False

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"nodes": {k: dict(v) for k, v in sorted(self.nodes.items())}, "dropped": self.dropped}


class MqttHealthListener:
    """Subscribes to every node's health topic on the feeder's broker and feeds a NodeBoard."""

    def __init__(self, board: NodeBoard, host: str, port: int, client_id: str) -> None:
        self.board = board
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.host, self.port = host, port

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.board.ingest(msg.topic, bytes(msg.payload))

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
