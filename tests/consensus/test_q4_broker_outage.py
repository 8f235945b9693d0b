"""Q4: a broker outage is told once in a daemon's log - at WARNING when its connection loses the broker (or
cannot reach it at start), and again at WARNING when it is back (a log kept at WARNING shows both ends) - never
a line per reconnect attempt; and a publish the edge link refuses while disconnected is never sent later.

Before: paho 2.2 logs 'Client is not connected. Socket: None ...' at ERROR after every refused attempt, and the
DSO's health listener handed paho its logger (a lab's dso.log read one ERROR a second while its broker
restarted) and said nothing itself; the MGMC's link said nothing of a loss. A QoS 1 publish the link refused
(`publish` False) in the moment paho has closed the socket but not yet marked the connection lost stayed in
paho's queue and went out after the reconnect (a refused device command, delivered late).

Over a real Mosquitto, stopped until the connection's attempts were refused three times, then started again on
the same port; the log records are counted. The shared teller (`BrokerOutage`) and the listener's pass of paho's
own lines are driven directly."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from helpers_wait import wait_until
from paho.mqtt.client import MQTT_LOG_DEBUG, MQTT_LOG_ERR, _ConnectionState
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from peergrid_dso.services.health import NodeBoard
from peergrid_dso.services.health_listener import MqttHealthListener
from peergrid_edge.link import MqttLink
from peergrid_ledger.consensus.mqtt_transport import BrokerOutage, MqttTransport
from peergrid_sim.broker import MosquittoBroker, free_port


class RefusedAttempts:
    """Counts a client's refused connect attempts (paho's `on_connect_fail`), calling the one it had."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        self._theirs = client.on_connect_fail
        client.on_connect_fail = self._seen

    def _seen(self, *args: Any) -> None:
        self.count += 1
        if self._theirs is not None:
            self._theirs(*args)

    def wait(self, n: int) -> bool:
        return wait_until(lambda: self.count >= n)


def told(caplog: pytest.LogCaptureFixture, prefix: str) -> dict[str, list[str]]:
    """The messages of loggers under `prefix`, by level name."""
    by_level: dict[str, list[str]] = {}
    for record in caplog.records:
        if record.name.startswith(prefix):
            by_level.setdefault(record.levelname, []).append(record.getMessage())
    return by_level


def one_outage(lines: dict[str, list[str]], where: str) -> None:
    assert "ERROR" not in lines and "CRITICAL" not in lines, lines
    warned = lines.get("WARNING", [])
    assert len(warned) == 2 and where in warned[0], lines
    assert "again" in warned[1] and "failed attempts:" in warned[1], lines


# --- the DSO's health listener ------------------------------------------------------------------------


def test_the_health_listener_tells_an_outage_once_not_an_error_per_attempt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with MosquittoBroker(tmp_path / "broker") as broker:
        listener = MqttHealthListener(
            NodeBoard("f1"), broker.host, broker.port, "dso-q4", reconnect_max_s=1.0
        )
        attempts = RefusedAttempts(listener.client)
        listener.start()
        try:
            assert wait_until(lambda: listener.health()["state"] == "listening")
            broker.stop()
            assert attempts.wait(3)
            broker.restart()  # on the same port
            assert wait_until(lambda: listener.health()["state"] == "listening")
        finally:
            listener.stop()
    one_outage(told(caplog, "peergrid_dso"), f"{broker.host}:{broker.port}")


def test_a_broker_missing_when_the_listener_starts_is_one_warning_until_it_comes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    listener = MqttHealthListener(NodeBoard("f1"), "127.0.0.1", port, "dso-q4", reconnect_max_s=1.0)
    attempts = RefusedAttempts(listener.client)
    listener.start()
    try:
        assert attempts.wait(3)
        with MosquittoBroker(tmp_path / "broker", port=port):
            assert wait_until(lambda: listener.health()["state"] == "listening")
            listener.stop()  # before the broker: its own stop is no outage
    finally:
        listener.stop()
    one_outage(told(caplog, "peergrid_dso"), f"127.0.0.1:{port}")


def test_the_listener_passes_paho_s_other_lines_and_names_the_lost_socket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = MqttHealthListener(NodeBoard("f1"), "127.0.0.1", 9, "dso-q4")  # never started
    lost = ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")
    with caplog.at_level(logging.DEBUG, logger="peergrid_dso.health"):
        listener.client.on_log(listener.client, None, MQTT_LOG_ERR, "Caught exception in on_subscribe: boom")
        listener.client.on_log(listener.client, None, MQTT_LOG_DEBUG, "Sending PINGREQ")
        listener.client.on_log(listener.client, None, MQTT_LOG_ERR, "Client is not connected. Socket: None).")
        listener.outage.connected()
        listener.client.on_log(listener.client, None, MQTT_LOG_ERR, "failed to receive on socket: reset")
        listener.client.on_disconnect(listener.client, None, None, lost, None)
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("peergrid_dso.health.paho", "ERROR", "Caught exception in on_subscribe: boom"),
        ("peergrid_dso.health.paho", "DEBUG", "Sending PINGREQ"),
        ("peergrid_dso.health", "INFO", "connected to the feeder's broker 127.0.0.1:9"),
        (
            "peergrid_dso.health",
            "WARNING",
            "lost the feeder's broker 127.0.0.1:9 (failed to receive on socket: reset); reconnecting with back-off",
        ),
    ]


# --- the MGMC's link -----------------------------------------------------------------------------------


def test_the_edge_link_tells_an_outage_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def main(broker: MosquittoBroker) -> None:
        link = MqttLink("edge-q4", broker.host, broker.port, keepalive_s=5, reconnect_max_s=1.0)
        attempts = RefusedAttempts(link.client)
        link.start()
        try:
            await asyncio.wait_for(link.connected.wait(), 20)
            broker.stop()
            assert await asyncio.to_thread(attempts.wait, 3)
            await asyncio.to_thread(broker.restart)
            await asyncio.wait_for(link.connected.wait(), 30)  # cleared on the loss, set again once back
        finally:
            link.stop()

    with MosquittoBroker(tmp_path / "broker") as broker:
        asyncio.run(main(broker))
    one_outage(told(caplog, "peergrid.edge"), f"{broker.host}:{broker.port}")


def test_a_publish_refused_while_the_socket_is_gone_is_not_sent_after_the_reconnect() -> None:
    """The moment between paho closing the socket and marking the connection lost: `is_connected()` still says
    yes, paho queues a QoS 1 message for after the reconnect and answers MQTT_ERR_NO_CONN, and the link says
    False (refused). Refused, it must not stay in paho's queue."""
    link = MqttLink("edge-q4", "127.0.0.1", 9)
    link.client._state = _ConnectionState.MQTT_CS_CONNECTED  # as paho leaves it then; no socket
    assert link.client.is_connected() and link.client._sock is None
    assert link.publish("peergrid/f1/mg1/pv/set", b'{"p_w": 0}', qos=1) is False
    assert link.client._out_messages == {}

    async def confirmed() -> bool:
        link.loop = asyncio.get_running_loop()
        return await link.publish_confirmed("peergrid/f1/tx", b"tx", timeout_s=1.0)

    assert asyncio.run(confirmed()) is False
    assert link.client._out_messages == {} and link._acks == {}


# --- the ledger's transport: queued while disconnected, counted where paho's queue is full --------------


def test_the_ledger_transport_counts_a_publish_its_full_queue_refuses() -> None:
    node = MqttTransport("127.0.0.1", 9, "f1", bytes(32), ["c1"], lambda *_: None)  # never started
    node.client.max_queued_messages_set(2)
    for _ in range(3):
        node.publish("c1", "tx", b"tx")
    assert len(node.client._out_messages) == 2  # queued for the reconnect, as its contract says
    assert node.stats["dropped_queue_full"] == 1 and node.stats["published_tx"] == 2


# --- the teller --------------------------------------------------------------------------------------------


def test_the_teller_says_each_outage_once_with_its_length_and_failed_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    log = logging.getLogger("peergrid.q4")
    outage = BrokerOutage(log, "broker 127.0.0.1:1883", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger=log.name):
        outage.attempt_failed("refused")  # before any connection
        outage.attempt_failed("refused")
        now[0] = 104.0
        outage.connected()
        outage.connected()  # a second CONNACK without a loss between: said as connected, no outage
        outage.lost("Unspecified error")
        outage.lost("Unspecified error")  # told already
        outage.attempt_failed("Not authorized")
        now[0] = 112.5
        outage.connected()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == log.name]
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "INFO", "WARNING", "WARNING"]
    assert "cannot reach broker 127.0.0.1:1883" in lines[0][1] and "refused" in lines[0][1]
    assert "after 4.0 s (failed attempts: 2)" in lines[1][1]
    assert "lost broker 127.0.0.1:1883 (the connection closed)" in lines[3][1]
    assert "after 8.5 s (failed attempts: 1)" in lines[4][1]
