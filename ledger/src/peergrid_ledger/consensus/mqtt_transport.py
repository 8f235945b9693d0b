"""The MQTT adapter of `Transport` (paho-mqtt 2): QoS 1 on the design's topics, reconnect with back-off.

Promises: subscribes, on every (re)connect, to each chain's tx, consensus and block topics and to this node's
own sync topic, and sets `connected` once the broker granted them (SUBACK); hands every arriving payload to
`deliver(chain, kind, payload)` on paho's network thread (the caller moves it to its own loop); payloads over
`max_payload` are dropped and counted here without being read further, and one this node would publish over it
is dropped and counted before it leaves (`dropped_outgoing_oversized`): every receiver would drop it, and the
broker's `max_packet_size` (just above the largest envelope) would disconnect this node for it, paho sending it
again on every reconnect. Publishing while disconnected is queued by paho (QoS 1: it answers MQTT_ERR_NO_CONN
and keeps the message) and sent after reconnecting; one its full queue refuses is counted
(`dropped_queue_full`); nothing depends on the broker keeping messages. Reconnects back off from 0.1 s to
`max_backoff_s`. Must never block the caller's event loop, and never raise from a callback.
`BrokerOutage` is how the daemons' MQTT connections (the edge link, the DSO's health listener) tell an outage in
their logs: once when it begins, once when it ends, never a line per reconnect attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .transport import BLOCK, CONSENSUS, MAX_ENVELOPE_BYTES, SYNC, TX, topic

log = logging.getLogger(__name__)

Deliver = Callable[[str, str, bytes], None]


class BrokerOutage:
    """Tells one MQTT connection's outages in `log`: at WARNING when it loses the broker, or its first connect
    fails, and again at WARNING when it is connected again, with how long it was down and how many attempts
    failed (the end of an outage at the level its start was told, so a log kept at WARNING, as the lab's DSO
    runs, shows both); its first connection is told at INFO. Never a line per attempt (paho 2.2 logs 'Client is not connected' at
    ERROR after every refused one, to a logger given it). Called from paho's callbacks, on its network thread;
    the clock is injected (monotonic s)."""

    def __init__(self, log: logging.Logger, broker: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.broker, self.clock = log, broker, clock  # broker: its name in the lines
        self.down_since: float | None = None  # None: connected, or not tried yet
        self.failed = 0  # attempts failed since `down_since`

    def connected(self) -> None:
        """A CONNACK that accepted the connection."""
        if self.down_since is None:
            self.log.info("connected to %s", self.broker)
        else:
            down_s = self.clock() - self.down_since
            self.log.warning(
                "connected to %s again after %.1f s (failed attempts: %d)", self.broker, down_s, self.failed
            )
        self.down_since, self.failed = None, 0

    def lost(self, reason: object) -> None:
        """A connection ended other than by our own `disconnect()` (paho's reason is then a failure)."""
        if self.down_since is not None:  # told already: this is a refused attempt's socket closing
            return
        self.down_since = self.clock()
        # paho 2.2 names a closed or reset socket (MQTT_ERR_CONN_LOST) 'Unspecified error' to a VERSION2 callback
        said = "the connection closed" if str(reason) == "Unspecified error" else reason
        self.log.warning("lost %s (%s); reconnecting with back-off", self.broker, said)

    def attempt_failed(self, reason: object) -> None:
        """A connect attempt refused or unanswered (paho's `on_connect_fail`, or a CONNACK that refused)."""
        self.failed += 1
        if self.down_since is not None:
            return
        self.down_since = self.clock()
        self.log.warning("cannot reach %s (%s); retrying with back-off", self.broker, reason)


class MqttTransport:
    def __init__(
        self,
        host: str,
        port: int,
        feeder: str,
        node: bytes,
        chains: list[str],
        deliver: Deliver,
        client_id: str = "",
        max_payload: int = MAX_ENVELOPE_BYTES,
        max_backoff_s: float = 2.0,
    ) -> None:
        self.host, self.port, self.feeder, self.node = host, port, feeder, node
        self.chains = list(chains)
        self.deliver = deliver
        self.max_payload = max_payload
        self.stats: Counter[str] = Counter()
        self.connected = threading.Event()
        self._routes: dict[str, tuple[str, str]] = {}
        for chain in self.chains:
            for kind in (TX, CONSENSUS, BLOCK):
                self._routes[topic(feeder, chain, kind)] = (chain, kind)
            self._routes[topic(feeder, chain, SYNC, node)] = (chain, SYNC)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"ledger-{node.hex()[:16]}")
        client.reconnect_delay_set(min_delay=0.1, max_delay=max_backoff_s)  # type: ignore[arg-type]
        client.max_queued_messages_set(100_000)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._subscribing: int | None = None  # the mid of this connection's SUBSCRIBE
        self.refused = False  # the broker refused this connection's subscriptions (cleared on a new one)
        self.client = client

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, chain: str, kind: str, data: bytes, to: bytes | None = None) -> None:
        if len(data) > self.max_payload:  # see the module's contract: never sent, never a reconnect loop
            self.stats["dropped_outgoing_oversized"] += 1
            return
        sent = self.client.publish(topic(self.feeder, chain, kind, to), data, qos=1)
        if sent.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # paho keeps `max_queued_messages` for the reconnect, no more
            self.stats["dropped_queue_full"] += 1
            return
        self.stats[f"published_{kind}"] += 1

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self.stats["connect_refused"] += 1
            return
        self.stats["connects"] += 1
        self.refused = False
        _rc, self._subscribing = client.subscribe([(t, 1) for t in self._routes])

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: list[ReasonCode], _props: Properties
    ) -> None:
        """`connected` once the broker granted this connection's subscriptions (its SUBACK): set on CONNACK, a
        message published at once could reach the broker before them and never arrive (ci19b: a test's first
        publish after `connected` was never delivered while its second was)."""
        if mid != self._subscribing:
            return
        refused = [t for t, reason in zip(self._routes, reasons, strict=False) if reason.is_failure]
        if refused:  # this node cannot hear those topics: `connected` stays unset, the log says why
            self.stats["subscribe_refused"] += 1
            self.refused = True
            log.error("the broker refused this node's subscription to %s", ", ".join(refused))
            return
        self.connected.set()

    def _on_disconnect(self, *_args: object) -> None:
        self.stats["disconnects"] += 1
        self.refused = False
        self.connected.clear()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            route = self._routes.get(message.topic)
            if route is None:
                self.stats["dropped_unknown_topic"] += 1
                return
            if len(message.payload) > self.max_payload:  # judged before any copy (paho may hand a bytearray)
                self.stats["dropped_oversized"] += 1
                return
            self.deliver(route[0], route[1], bytes(message.payload))
        except Exception:
            self.stats["dropped_delivery_error"] += 1
