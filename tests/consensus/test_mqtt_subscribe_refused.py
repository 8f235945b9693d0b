"""The ledger's MQTT transport says it is connected only once the broker granted every subscription (its
SUBACK), and a refused one leaves it unset, counted and logged with the topic (review33 R33-5): a node that
cannot hear a chain's topics must not look connected."""

from __future__ import annotations

import logging

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from peergrid_ledger.consensus.mqtt_transport import MqttTransport

NODE = bytes(32)


def transport() -> MqttTransport:
    made = MqttTransport("127.0.0.1", 1, "lab", NODE, ["c1"], lambda *_: None)  # never started: no traffic
    made._subscribing = 7  # as _on_connect leaves it (the SUBSCRIBE's mid)
    return made


def codes(*values: int) -> list[ReasonCode]:
    return [ReasonCode(PacketTypes.SUBACK, identifier=v) for v in values]


def test_connected_once_every_subscription_is_granted() -> None:
    node = transport()
    node._on_subscribe(node.client, None, 6, codes(1, 1, 1, 1), None)  # another SUBSCRIBE's answer
    assert not node.connected.is_set()
    node._on_subscribe(node.client, None, 7, codes(1, 1, 1, 1), None)
    assert node.connected.is_set() and node.stats["subscribe_refused"] == 0


def test_a_refused_subscription_leaves_it_unconnected_and_says_which(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = transport()
    with caplog.at_level(logging.ERROR):
        node._on_subscribe(node.client, None, 7, codes(1, 0x80, 1, 1), None)
    assert not node.connected.is_set() and node.stats["subscribe_refused"] == 1 and node.refused
    assert "the broker refused this node's subscription to peergrid/lab/ledger/c1/consensus" in caplog.text
    assert caplog.text.count("/c1/") == 1  # the refused topic only


def test_the_refusal_stands_for_its_own_connection_only() -> None:
    """`refused` (the DSO's health names it, review34 R34-8) is this connection's: a loss or a new CONNACK
    clears it, the count stays."""
    node = transport()
    node._on_subscribe(node.client, None, 7, codes(0x80, 1, 1, 1), None)
    assert node.refused
    node._on_disconnect(node.client, None, None, None, None)
    assert not node.refused and node.stats["subscribe_refused"] == 1
    node._on_subscribe(node.client, None, 7, codes(0x80, 1, 1, 1), None)
    node.client.subscribe = lambda *_args: (0, 8)  # type: ignore[method-assign]  # no socket: the mid only
    node._on_connect(node.client, None, None, ReasonCode(PacketTypes.CONNACK, identifier=0), None)
    assert not node.refused and node._subscribing == 8
