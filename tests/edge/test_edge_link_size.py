"""The edge link judges a payload by its size before anything copies it (`MqttLink.max_payload`; review21 F4's
last point, left alone in session 16): one arriving above the bound is dropped on paho's thread, never copied
onto the event loop nor handed to a handler (before: `bytes(payload)` copied it whole and every handler got it;
the replica refused it only then); one the daemon would publish above it is dropped before paho copies it into a
packet (before: sent, and the broker's `max_packet_size` disconnected the link, paho resending it on every
reconnect). Each is counted and logged once per topic.

Over a real Mosquitto (a link bounded at 64 KiB, so the broker's own 8 MiB limit stays out of the way), and at
the link's own default bound, the ledger's envelope (8 MiB), with the memory the callback allocates measured.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import tracemalloc
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from peergrid_edge.link import MqttLink
from peergrid_ledger.consensus.transport import MAX_ENVELOPE_BYTES
from peergrid_sim.broker import MosquittoBroker

BOUND = 64 * 1024
TOPIC = "peergrid/test/ledger/mgmc/consensus"


def watcher(broker: MosquittoBroker, got: list[bytes]) -> mqtt.Client:
    """A plain paho subscriber to TOPIC that notes every payload it receives."""
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, message: got.append(bytes(message.payload))
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe(TOPIC, qos=1)
    assert subscribed.wait(5)
    return client


async def until(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_payload_above_the_links_bound_is_neither_handled_nor_sent(
    mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="peergrid.edge.link")
    handled: list[bytes] = []
    seen: list[bytes] = []
    peer = watcher(mosquitto, seen)

    async def main() -> MqttLink:
        link = MqttLink("edge-size", mosquitto.host, mosquitto.port, max_payload=BOUND)
        link.subscribe(TOPIC, lambda _topic, payload: handled.append(payload))
        link.start()
        await asyncio.wait_for(link.connected.wait(), 10)  # its subscription granted (SUBACK)
        try:
            # arriving: a peer publishes one above the bound, twice, then one at it
            for payload in (b"x" * (BOUND + 1), b"y" * (4 * BOUND), b"z" * BOUND):
                peer.publish(TOPIC, payload, qos=1).wait_for_publish(5)
            await until(lambda: len(handled) == 1)
            # leaving: above the bound it is not sent, nor waited for; the next one is
            assert not link.publish(TOPIC, b"o" * (BOUND + 1), qos=1)
            assert not await link.publish_confirmed(TOPIC, b"p" * (BOUND + 1), 5.0)
            assert await link.publish_confirmed(TOPIC, b"k" * 10, 5.0)
            await until(lambda: seen[-1:] == [b"k" * 10])
            return link
        finally:
            link.stop()

    try:
        link = asyncio.run(main())
    finally:
        peer.loop_stop()
        peer.disconnect()
    assert handled[0] == b"z" * BOUND and all(len(p) <= BOUND for p in handled)  # (it hears its own "k" too)
    assert link.dropped_oversized == 2 and link.dropped == 0
    assert link.dropped_outgoing_oversized == 2
    assert [len(p) for p in seen] == [BOUND + 1, 4 * BOUND, BOUND, 10]  # the peer's three, then only ours
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2  # once per direction and topic
    assert any(f"incoming payload of {BOUND + 1} bytes on {TOPIC}" in m for m in said)
    assert any(f"outgoing payload of {BOUND + 1} bytes on {TOPIC}" in m for m in said)


def callback_peak(link: MqttLink, size: int) -> int:
    """The bytes paho's message callback allocates (traced peak) for a payload of `size` as paho hands it over:
    a slice of its packet buffer (a bytearray)."""
    message = mqtt.MQTTMessage(topic=TOPIC.encode())
    message.payload = bytearray(size)  # type: ignore[assignment]
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        link._on_message(link.client, None, message)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_default_bound_is_the_ledgers_envelope_and_an_oversized_payload_is_never_copied() -> None:
    link = MqttLink("edge-size", "127.0.0.1", 9)
    assert link.max_payload == MAX_ENVELOPE_BYTES
    loop = asyncio.new_event_loop()
    link.loop = loop  # callbacks queue on it (not run): what the loop thread would receive
    try:
        above = callback_peak(link, MAX_ENVELOPE_BYTES + 1)
        within = callback_peak(link, MAX_ENVELOPE_BYTES)  # the control: a payload it takes is copied once
    finally:
        loop.close()
    assert above < 64 * 1024 and link.dropped_oversized == 1
    assert within >= MAX_ENVELOPE_BYTES
