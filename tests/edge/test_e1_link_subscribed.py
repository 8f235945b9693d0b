"""The edge link says `connected` only once the broker granted its subscriptions (their SUBACKs), as the ledger's
transport does since 303b3d7: set on CONNACK, a message published at once could reach the broker before the
link's SUBSCRIBE and never arrive (test_edge_link_size.py slept 0.2 s to dodge it). A link holding no topics is
connected on CONNACK; a `subscribe()` while connected clears it until that SUBACK; a reconnect clears it and
sets it again only with the new connection's grant; a refused subscription leaves it unset, counted, and logged
with its topic.

Over a real Mosquitto behind `MqttProxy`, a TCP proxy reading MQTT packets: it holds the link's SUBSCRIBE until
the test releases it (on loopback the race is too quick to show otherwise: the SUBSCRIBE follows the CONNACK
within a millisecond), and it rewrites the broker's SUBACK to refuse a named topic (Mosquitto 2.0 grants every
subscription, also one its ACL file denies: it filters at delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from peergrid_edge.link import MqttLink
from peergrid_sim.broker import MosquittoBroker

TOPIC = "peergrid/test/ledger/mgmc/block"
LATER = "peergrid/test/dso/verdict"
DENIED = "peergrid/test/ledger/dso/block"
SUBSCRIBE, SUBACK = 8, 9  # MQTT packet types (the fixed header's high nibble)


def split_packet(buffer: bytearray) -> bytes | None:
    """The first whole MQTT packet in `buffer`, taken out of it (None: not all of it has come)."""
    length, shift, at = 0, 0, 1
    while True:
        if at >= len(buffer):
            return None
        byte = buffer[at]
        length += (byte & 0x7F) << shift
        shift, at = shift + 7, at + 1
        if not byte & 0x80:
            break
    if len(buffer) < at + length:
        return None
    packet = bytes(buffer[: at + length])
    del buffer[: at + length]
    return packet


def body_of(packet: bytes) -> tuple[int, bytes]:
    """(where the body starts, the body) of a whole packet: after the fixed header's remaining-length bytes."""
    at = 1
    while packet[at] & 0x80:
        at += 1
    return at + 1, packet[at + 1 :]


class MqttProxy:
    """Forwards a client's MQTT connections to `broker`, packet by packet. While `released` is clear, a client's
    SUBSCRIBE waits (`held` says one came; with `hold_only`, only one naming that topic); a SUBACK's code for a
    topic in `refuse` becomes 0x80 (MQTT 3.1.1's failure). `drop()` closes every connection it carries, as a
    lost link would."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.released = threading.Event()
        self.released.set()
        self.held = threading.Event()
        self.refuse: set[str] = set()
        self.hold_only: str | None = None
        self._topics: dict[int, list[str]] = {}  # a SUBSCRIBE's packet id -> its topics, for its SUBACK
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self.held.clear()
        self.released.clear()

    def drop(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):  # shut down, not only closed: that wakes its pump's recv
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()

    def close(self) -> None:
        self._closed = True
        self.released.set()
        self.listener.close()
        self.drop()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.broker.host, self.broker.port))
            self._sockets += [client, upstream]
            threading.Thread(
                target=self._pump, args=(client, upstream, self._from_client), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self._from_broker), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, change: Callable[[bytes], bytes]) -> None:
        buffer = bytearray()
        try:
            while chunk := source.recv(65536):
                buffer += chunk
                while (packet := split_packet(buffer)) is not None:
                    sink.sendall(change(packet))
        except OSError:
            pass
        finally:
            source.close()
            sink.close()

    def _from_client(self, packet: bytes) -> bytes:
        if packet[0] >> 4 == SUBSCRIBE:
            _start, body = body_of(packet)
            topics, at = [], 2
            while at < len(body):
                (size,) = struct.unpack_from("!H", body, at)
                topics.append(body[at + 2 : at + 2 + size].decode())
                at += 2 + size + 1  # the topic, then its QoS byte
            self._topics[struct.unpack_from("!H", body)[0]] = topics
            if not self.released.is_set() and self.hold_only in (None, *topics):
                self.held.set()
                self.released.wait(30)
        return packet

    def _from_broker(self, packet: bytes) -> bytes:
        if packet[0] >> 4 != SUBACK:
            return packet
        start, body = body_of(packet)
        topics = self._topics.pop(struct.unpack_from("!H", body)[0], [])
        rewritten = bytearray(packet)
        for index, topic in enumerate(topics):
            if topic in self.refuse:
                rewritten[start + 2 + index] = 0x80
        return bytes(rewritten)


@pytest.fixture
def proxy(mosquitto: MosquittoBroker) -> Iterator[MqttProxy]:
    made = MqttProxy(mosquitto)
    yield made
    made.close()


class Peer:
    """A plain paho client publishing on the real broker (not through the proxy)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    async def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        await asyncio.to_thread(info.wait_for_publish, 5)  # the broker has it (PUBACK)
        assert info.is_published()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def run(mosquitto: MosquittoBroker, body: Callable[[Peer], Coroutine[Any, Any, None]]) -> None:
    peer = Peer(mosquitto)
    try:
        asyncio.run(body(peer))
    finally:
        peer.close()


def test_connected_waits_for_the_subscription_a_message_published_at_once_arrives(
    mosquitto: MosquittoBroker, proxy: MqttProxy
) -> None:
    got: list[bytes] = []

    async def main(peer: Peer) -> None:
        link = MqttLink("edge-e1-race", "127.0.0.1", proxy.port)
        link.subscribe(TOPIC, lambda _topic, payload: got.append(payload))
        proxy.hold()
        link.start()
        try:
            assert await asyncio.to_thread(proxy.held.wait, 10)  # CONNACK came, the SUBSCRIBE is held
            assert not link.connected.is_set()  # before: set on CONNACK
            await peer.publish(TOPIC, b"early")  # the broker has no subscription of the link's: lost
            proxy.released.set()
            await asyncio.wait_for(link.connected.wait(), 10)
            await peer.publish(TOPIC, b"at once")  # no sleep: `connected` means the broker has it
            await until(lambda: bool(got))
            assert got == [b"at once"]
        finally:
            link.stop()

    run(mosquitto, main)


def test_a_link_with_no_topics_is_connected_on_connack_and_a_later_subscribe_clears_it_until_granted(
    mosquitto: MosquittoBroker, proxy: MqttProxy
) -> None:
    got: list[bytes] = []

    async def main(peer: Peer) -> None:
        link = MqttLink("edge-e1-later", "127.0.0.1", proxy.port)
        link.start()
        try:
            await asyncio.wait_for(link.connected.wait(), 10)  # nothing to subscribe: CONNACK is enough
            proxy.hold()
            link.subscribe(LATER, lambda _topic, payload: got.append(payload))
            assert not link.connected.is_set()  # at once, on the loop (before: stayed set)
            assert await asyncio.to_thread(proxy.held.wait, 10)
            assert not link.connected.is_set()
            proxy.released.set()
            await asyncio.wait_for(link.connected.wait(), 10)
            await peer.publish(LATER, b"verdict")
            await until(lambda: bool(got))
            assert got == [b"verdict"]
        finally:
            link.stop()

    run(mosquitto, main)


def test_a_reconnect_clears_it_until_the_new_connection_is_granted_its_subscriptions(
    mosquitto: MosquittoBroker, proxy: MqttProxy
) -> None:
    got: list[bytes] = []

    async def main(peer: Peer) -> None:
        link = MqttLink("edge-e1-reconnect", "127.0.0.1", proxy.port)
        link.subscribe(TOPIC, lambda _topic, payload: got.append(payload))
        link.start()
        try:
            await asyncio.wait_for(link.connected.wait(), 10)
            await peer.publish(TOPIC, b"before")  # heard: this connection's SUBSCRIBE is through the proxy
            await until(lambda: bool(got))
            proxy.hold()
            proxy.drop()
            await until(lambda: not link.connected.is_set())
            assert await asyncio.to_thread(
                proxy.held.wait, 20
            )  # reconnected (paho waits 1 s), SUBSCRIBE held
            assert not link.connected.is_set()  # before: set again on the new CONNACK
            proxy.released.set()
            await asyncio.wait_for(link.connected.wait(), 10)
            await peer.publish(TOPIC, b"after")
            await until(lambda: len(got) == 2)
            assert got == [b"before", b"after"]
        finally:
            link.stop()

    run(mosquitto, main)


def test_a_refused_subscription_leaves_it_unset_counted_and_logged_with_its_topic(
    mosquitto: MosquittoBroker, proxy: MqttProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="peergrid.edge.link")
    proxy.refuse = {DENIED}

    async def main(peer: Peer) -> None:
        link = MqttLink("edge-e1-refused", "127.0.0.1", proxy.port)
        for topic in (TOPIC, DENIED):
            link.subscribe(topic, lambda _topic, _payload: None)
        link.start()
        try:
            await until(lambda: link.subscribe_refused == 1)
            await asyncio.sleep(0.1)  # room for a wrong `set` queued from paho's thread to land (none may)
            assert not link.connected.is_set()
            said = [r.getMessage() for r in caplog.records]
            assert said == [f"the broker refused this link's subscription to {DENIED}"]
            # the next connection, granted everything, is connected again
            proxy.refuse = set()
            proxy.drop()
            await asyncio.wait_for(link.connected.wait(), 20)
            assert link.subscribe_refused == 1
        finally:
            link.stop()

    run(mosquitto, main)


def test_connected_waits_for_every_subscribe_not_only_the_first_granted(
    mosquitto: MosquittoBroker, proxy: MqttProxy
) -> None:
    """Two subscribe() calls while connected: the first's SUBACK comes, the second's SUBSCRIBE is held;
    `connected` waits for both (a link settling every pending SUBSCRIBE on the first SUBACK passed the rest)."""

    async def main(peer: Peer) -> None:
        link = MqttLink("edge-e1-two", "127.0.0.1", proxy.port)
        link.start()
        try:
            await asyncio.wait_for(link.connected.wait(), 10)
            proxy.hold_only = DENIED  # (not refused here: only a topic name the first SUBSCRIBE lacks)
            proxy.hold()
            link.subscribe(LATER, lambda _topic, _payload: None)  # through: its SUBACK comes
            link.subscribe(DENIED, lambda _topic, _payload: None)  # held
            assert await asyncio.to_thread(proxy.held.wait, 10)
            await until(lambda: list(proxy._topics.values()) == [[DENIED]])  # LATER's SUBACK went by
            await asyncio.sleep(0.2)  # room for a wrong `set` queued from paho's thread to land (none may)
            assert not link.connected.is_set()
            proxy.released.set()
            await asyncio.wait_for(link.connected.wait(), 10)
        finally:
            link.stop()

    run(mosquitto, main)
