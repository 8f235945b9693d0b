"""The lab's broker refuses a publish above MAX_PACKET_BYTES: its sender is disconnected and no subscriber ever
receives it (review21 F4: without a limit a 64 MiB publish reached every subscriber whole). The ledger's
largest envelope still goes through, and the broker keeps serving everyone else."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from peergrid_ledger.consensus.transport import CONSENSUS, MAX_ENVELOPE_BYTES, topic
from peergrid_sim.broker import MAX_PACKET_BYTES, BrokerConfig, MosquittoBroker

TOPIC = topic("lab", "mgmc", CONSENSUS)


class Subscriber:
    def __init__(self, broker: MosquittoBroker) -> None:
        self.sizes: list[int] = []
        self.marker = threading.Event()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe("peergrid/#", qos=1)
        assert subscribed.wait(10)

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == b"marker":
            self.marker.set()
        else:
            self.sizes.append(len(msg.payload))

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publisher(broker: MosquittoBroker, name: str) -> tuple[mqtt.Client, threading.Event]:
    dropped = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
    client.on_disconnect = lambda *_a: dropped.set()
    client.reconnect_delay_set(min_delay=30, max_delay=30)  # stay disconnected once refused
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client, dropped


def test_the_rendered_config_bounds_packets_a_little_above_the_largest_envelope(tmp_path) -> None:
    assert f"max_packet_size {MAX_PACKET_BYTES}\n" in BrokerConfig(1883).render(tmp_path)
    assert MAX_ENVELOPE_BYTES < MAX_PACKET_BYTES <= MAX_ENVELOPE_BYTES + 64 * 1024


def test_an_oversized_publish_never_reaches_a_subscriber(mosquitto: MosquittoBroker) -> None:
    watcher = Subscriber(mosquitto)
    big, big_dropped = publisher(mosquitto, "too-big")
    honest, honest_dropped = publisher(mosquitto, "honest")
    try:
        # the largest envelope a replica takes, on the ledger's consensus topic: delivered whole
        honest.publish(TOPIC, b"\x00" * MAX_ENVELOPE_BYTES, qos=1).wait_for_publish(30)
        # one byte past the broker's packet limit (the topic and header make it larger still): refused
        big.publish(TOPIC, b"\x00" * MAX_PACKET_BYTES, qos=1)
        assert big_dropped.wait(30)  # the broker disconnected the sender
        # the broker handled the oversized packet before this: the sender is gone. The next message
        # from another client arrives; the refused one never did.
        honest.publish(TOPIC, b"marker", qos=1).wait_for_publish(10)
        assert watcher.marker.wait(30)
        assert watcher.sizes == [MAX_ENVELOPE_BYTES]
        assert not honest_dropped.is_set()
        assert "Client too-big disconnected due to oversize packet" in mosquitto.log_path.read_text()
    finally:
        for client in (big, honest):
            client.loop_stop()
            client.disconnect()
        watcher.stop()
