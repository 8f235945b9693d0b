"""The daemon's one MQTT connection (paho in its own thread), bridged into asyncio.

Promises: `publish_confirmed` returns True only after the broker acknowledged the QoS 1 message (PUBACK) and
False when disconnected or on timeout — it never raises on network trouble; the caller keeps the message and
tries again. Subscriptions survive reconnects (re-subscribed in `on_connect`). `connected` means "can hear
every topic it subscribed": set once the broker granted all of them on this connection (their SUBACKs), on
CONNACK only when it holds none (a message published at once could otherwise reach the broker before the
subscriptions and never arrive); a `subscribe()` while connected clears it until that SUBACK; a refused
subscription (reason code >= 0x80) leaves it unset for the connection, counted (`subscribe_refused`) and logged
with its topics; a lost connection clears it. Publishing needs only the connection (paho's `is_connected`);
while disconnected `publish` and `publish_confirmed` refuse (False), and a refused message is never sent later
(paho 2.2 queues a QoS 1 publish it cannot send for after the reconnect: the link takes it back out).
After an outage: nothing this link published before a lost connection is sent after it. A message the broker had
not acknowledged when the connection was lost (on the wire, or queued behind paho's in-flight window; paho would
send each again after the reconnect, however long the outage) is taken out of paho's queue when the loss is seen,
or, where paho reconnects without saying so, before the new socket; counted (`dropped_unacknowledged`), and a
`publish_confirmed` waiting on it returns False then, not at its timeout. Whether the broker passed it on before
the loss, MQTT cannot tell. No traffic on this connection needs paho's re-send: a device command (`publish` True
says only that it was handed to the connection) is confirmed by the dispatcher's read-back, and one the device
does not report is written again on its next tick, so a stale setpoint never reaches a device late to override its
fallback (review37 R37-4); a transaction stays in the outbox until `publish_confirmed` says True (a copy the
broker did get is a duplicate the chain only counts); consensus messages are re-sent by the engine's timers and
fetched by catch-up sync.
An outage is told at WARNING when it begins and again when the link is back (`BrokerOutage`), not per attempt.
Message callbacks run on the event loop, never on paho's thread, and never after `stop()`. Assumes the broker
may vanish at any time; paho reconnects with back-off: `RECONNECT_MIN_S` after a lost connection, doubling up
to `reconnect_max_s` (the config's `broker.reconnect_max_s`), so a broker back after an outage is found within
that bound (T8: at the 10 s hard-coded before, a lab MGMC rejoined 9.4 s after its cable came back).
A payload above `max_payload` (the largest any of its handlers takes: the ledger's envelope bound, 8 MiB) is
judged by its size before anything copies it: one arriving is dropped on paho's thread, never copied onto the
loop (review21 F4: a 64 MiB publish reached a handler whole, +195 MiB), and one this daemon would publish is
dropped before paho copies it into a packet (the broker's `max_packet_size` would disconnect the link for it and
paho send it again on every reconnect); each is counted (`dropped_oversized`, `dropped_outgoing_oversized`) and
logged once per topic.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from peergrid_ledger.consensus.mqtt_transport import BrokerOutage
from peergrid_ledger.consensus.transport import MAX_ENVELOPE_BYTES

log = logging.getLogger("peergrid.edge.link")

MessageHandler = Callable[[str, bytes], None]
RECONNECT_MIN_S = 1.0  # paho's first wait after a lost connection (s); the bound is never below it


class MqttLink:
    def __init__(
        self,
        client_id: str,
        host: str,
        port: int,
        keepalive_s: int = 30,
        tls: tuple[str, str | None, str | None] | None = None,  # (ca, cert, key)
        max_payload: int = MAX_ENVELOPE_BYTES,
        reconnect_max_s: float = 10.0,
    ) -> None:
        if not RECONNECT_MIN_S <= reconnect_max_s < float("inf"):  # NaN fails too
            raise ValueError(
                f"reconnect_max_s {reconnect_max_s} is not a bound of at least {RECONNECT_MIN_S} s"
            )
        self.host, self.port, self.keepalive_s = host, port, keepalive_s
        self.reconnect_max_s = reconnect_max_s
        self.max_payload = max_payload
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if tls is not None:
            ca, cert, key = tls
            self.client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
        # paho annotates int seconds but only compares, doubles and sleeps them: a float bound works as given
        self.client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=reconnect_max_s)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_pre_connect = self._on_pre_connect
        self.outage = BrokerOutage(log, f"broker {host}:{port}")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.handlers: dict[str, MessageHandler] = {}
        # mid -> its `publish_confirmed` waiter: True at its PUBACK, False when the connection is lost first
        self._acks: dict[int, asyncio.Future[bool]] = {}
        self.connected = asyncio.Event()  # set and cleared on the loop only, by `_settle`
        # What `connected` follows, shared by paho's thread and the loop's `subscribe()` (under `_lock`): this
        # connection is up (CONNACK seen), its SUBSCRIBEs not yet answered (mid -> topics; None: paho sent
        # none, the next connection subscribes again), and topics the broker refused on it.
        self._lock = threading.Lock()
        self._up = False
        self._awaiting: dict[int | None, list[str]] = {}
        self._refused: set[str] = set()
        self.subscribe_refused = 0  # SUBACKs refusing any topic (counted on paho's thread)
        self.dropped = 0
        self.stopped = False
        self.dropped_after_stop = 0
        self.dropped_oversized = 0  # arrived above `max_payload` (counted on paho's thread)
        self.dropped_outgoing_oversized = 0
        self.dropped_unacknowledged = 0  # taken out of paho's queue at a loss (counted on paho's thread)
        self._oversized_said: set[tuple[str, str]] = set()  # (direction, topic) logged already

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        """Stop accepting messages, then disconnect: a message paho queued on the loop before its thread ended
        is dropped (counted in `dropped_after_stop`), never handed to a handler whose resources are closing."""
        self.stopped = True
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Hand `topic`'s messages to `handler`; while connected, `connected` is unset until the broker granted it
        (before `start()`, or while disconnected, the next connection subscribes it with the rest)."""
        self.handlers[topic] = handler
        with self._lock:
            if self._up:  # else `_on_connect` has yet to read `handlers`, and will find it there
                self._send_subscribe([topic])
        self._settle()

    def _send_subscribe(self, topics: list[str]) -> None:
        """SUBSCRIBE `topics` and await their SUBACK; the caller holds `_lock` (so the SUBACK, on paho's thread,
        finds its mid recorded)."""
        _rc, mid = self.client.subscribe([(topic, 1) for topic in topics])
        self._awaiting[mid] = topics  # paho sends none only without a socket: a reconnect follows

    def _settle(self) -> None:
        """`connected` as the state says now (on the loop; after every change, so the last call is right)."""
        with self._lock:
            heard = self._up and not self._awaiting and not self._refused
        if heard:
            self.connected.set()
        else:
            self.connected.clear()

    def publish(self, topic: str, payload: bytes | str, qos: int = 0) -> bool:
        if isinstance(payload, str):
            payload = payload.encode()  # its size on the wire (the health JSON: small)
        if self._outgoing_oversized(topic, payload) or not self.client.is_connected():
            return False
        with self.client._out_message_mutex:
            return self._send(topic, payload, qos) is not None

    async def publish_confirmed(self, topic: str, payload: bytes, timeout_s: float) -> bool:
        if self._outgoing_oversized(topic, payload) or self.loop is None or not self.client.is_connected():
            return False
        future: asyncio.Future[bool] = self.loop.create_future()
        # paho may call on_publish before publish() returns: register under its lock.
        with self.client._out_message_mutex:  # paho offers no other race-free hook
            mid = self._send(topic, payload, 1)
            if mid is None:
                return False
            self._acks[mid] = future
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return False
        finally:
            self._acks.pop(mid, None)

    def _send(self, topic: str, payload: bytes, qos: int) -> int | None:
        """Hand the message to paho; its mid, or None when paho did not take it (the caller holds paho's
        `_out_message_mutex`). `is_connected()` still says yes while paho's thread has closed a lost socket and
        not yet marked the connection lost: paho then answers MQTT_ERR_NO_CONN but keeps a QoS 1 message to send
        after the reconnect, which a caller told False (refused) must never see go out later."""
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            return info.mid
        queued = self.client._out_messages.get(info.mid)  # another message's, if paho refused a mid in use
        if info.rc == mqtt.MQTT_ERR_NO_CONN and queued is not None and queued.info is info:
            del self.client._out_messages[info.mid]  # paho offers no call to take a message back
        return None

    def _outgoing_oversized(self, topic: str, payload: bytes) -> bool:
        """True (counted, logged once per topic): `payload` is above `max_payload` and is not to be sent."""
        if len(payload) <= self.max_payload:
            return False
        self.dropped_outgoing_oversized += 1
        self._say_oversized("outgoing", topic, len(payload))
        return True

    def _say_oversized(self, direction: str, topic: str, size: int) -> None:
        if (direction, topic) in self._oversized_said:
            return
        self._oversized_said.add((direction, topic))
        log.warning("dropped an %s payload of %d bytes on %s: above the link's %d (said once per topic)",
                    direction, size, topic, self.max_payload)  # fmt: skip

    # --- paho thread ---------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self.outage.attempt_failed(reason)
            return
        with self._lock:
            self._up = True
            self._awaiting.clear()
            self._refused.clear()
            topics = list(self.handlers)  # the loop thread may subscribe meanwhile: it waits for `_lock`
            if topics:
                self._send_subscribe(topics)
        self._call(self._settle)
        self.outage.connected()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self.outage.attempt_failed("the connect attempt failed")

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: list[ReasonCode], props: Properties
    ) -> None:
        with self._lock:
            topics = self._awaiting.pop(mid, None)
            if topics is None:  # not this connection's
                return
            refused = [topic for topic, code in zip(topics, reasons, strict=False) if code.is_failure]
            self._refused.difference_update(topics)  # granted now, if refused before on this connection
            self._refused.update(refused)
        if refused:  # the link cannot hear them: `connected` stays unset, the log says why
            self.subscribe_refused += 1
            log.error("the broker refused this link's subscription to %s", ", ".join(refused))
        self._call(self._settle)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self._drop_unacknowledged()  # first: a waiter hears False before `connected` is cleared
        with self._lock:
            self._up = False
            self._awaiting.clear()
        self._call(self._settle)
        if getattr(reason, "is_failure", False):  # not our own disconnect()
            self.outage.lost(reason)

    def _on_pre_connect(self, client: mqtt.Client, userdata: object) -> None:
        # paho ends a connection without on_disconnect when its select() fails, then reconnects: its
        # `reconnect()` has readied every unacknowledged message for the new socket, made after this call.
        self._drop_unacknowledged()

    def _drop_unacknowledged(self) -> None:
        """Take every message the broker has not acknowledged out of paho's queue (on paho's thread, the
        connection gone): paho would send each again after the reconnect, a device command by then stale. Their
        waiters hear False now. paho's `drop_out_messages` empties the queue under its `_out_message_mutex`, the
        lock `publish_confirmed` registers its waiter under, so a waiter is always found here or never queued."""
        dropped = self.client.drop_out_messages()
        if not dropped:
            return
        self.dropped_unacknowledged += len(dropped)
        for message in dropped:
            future = self._acks.get(message.mid)
            if future is not None:
                self._call(_resolve, future, False)
        topics = sorted({message.topic for message in dropped})
        shown = ", ".join(topics[:5]) + (" ..." if len(topics) > 5 else "")
        log.info("%d message(s) the broker had not acknowledged when the connection was lost are not sent "
                 "again (on %s)", len(dropped), shown)  # fmt: skip

    def _on_publish(
        self, client: mqtt.Client, userdata: object, mid: int, reason: object, props: object
    ) -> None:
        future = self._acks.get(mid)
        if future is not None:
            self._call(_resolve, future, True)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        size = len(message.payload)
        if size > self.max_payload:  # judged before the copy below (paho's payload is a view of its packet)
            self.dropped_oversized += 1
            self._call(self._say_oversized, "incoming", message.topic, size)
            return
        self._call(self._dispatch, message.topic, bytes(message.payload))

    def _dispatch(self, topic: str, payload: bytes) -> None:
        if self.stopped:
            self.dropped_after_stop += 1
            return
        for pattern, handler in self.handlers.items():
            if mqtt.topic_matches_sub(pattern, topic):
                try:
                    handler(topic, payload)
                except Exception:  # a bad message must never take the daemon down
                    self.dropped += 1
                    log.exception("dropped a message on %s", topic)


def _resolve(future: asyncio.Future[bool], acknowledged: bool) -> None:
    if not future.done():
        future.set_result(acknowledged)


class NonceTaken(Exception):
    """A sink's word that the chain used this transaction's nonce for ANOTHER transaction of its sender (a store
    restored from a backup, or started afresh, behind the chain): it never lands at that nonce, so the outbox
    renumbers what it holds from `next_nonce`, the chain's next for the sender (`EdgeStore.renumber`)."""

    def __init__(self, reason: str, next_nonce: int) -> None:
        super().__init__(reason)
        self.next_nonce = next_nonce


class Refused(Exception):
    """A sink's word that the chain refused this transaction for good (a refusal it never takes back, e.g.
    `duplicate`): retrying it as if islanded would hold back everything queued after it, so the outbox drops it."""

    def __init__(self, reason: str, next_nonce: int) -> None:
        super().__init__(reason)
        self.next_nonce = next_nonce  # the ones queued after it move down to it: its nonce was never used


class TxSink(Protocol):
    """Where the outbox hands a signed transaction; True means "taken, move the cursor on"; it may raise
    `NonceTaken` or `Refused` (one that knows the chain: `replicas.LedgerTxSink`)."""

    async def submit(self, raw: bytes, timeout_s: float) -> bool: ...


class MqttTxSink:
    """Gossip the transaction on the chain's tx topic; taken once the broker acknowledged it (PUBACK).

    An embedded ledger replica would implement `TxSink` by waiting for inclusion in a final block instead.
    """

    def __init__(self, link: MqttLink, topic: str) -> None:
        self.link, self.topic = link, topic

    async def submit(self, raw: bytes, timeout_s: float) -> bool:
        return await self.link.publish_confirmed(self.topic, raw, timeout_s)
