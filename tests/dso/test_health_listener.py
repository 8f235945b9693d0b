"""The DSO's health listener over a real Mosquitto keeps taking reports after one that breaks the decoder
(review21 F2: 60 KB of '[' used to end paho's network thread; /api/nodes then showed stale reports forever)."""

from __future__ import annotations

import json
import logging

import paho.mqtt.client as mqtt
from helpers_wait import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from peergrid_dso.services.health import MqttHealthListener, NodeBoard
from peergrid_sim.broker import MosquittoBroker

TOPIC = "peergrid/f1/health/mgmc-1"


def report_at(board: NodeBoard) -> object:
    return board.snapshot()["nodes"].get("mgmc-1", {}).get("report", {}).get("at")


def test_a_report_after_a_poisonous_one_is_still_taken(
    mosquitto: MosquittoBroker, monkeypatch, caplog
) -> None:
    board = NodeBoard("f1")
    listener = MqttHealthListener(board, mosquitto.host, mosquitto.port, "dso-health")
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="mgmc-1")
    # A bug in ingest itself (planted for the report at=2) is caught by the listener too.
    real_ingest = board.ingest

    def ingest(topic: str, payload: bytes, **kw: float) -> bool:
        if b'"at": 2.0' in payload:
            raise KeyError("a bug in ingest")
        return real_ingest(topic, payload, **kw)

    monkeypatch.setattr(board, "ingest", ingest)
    listener.start()
    try:
        assert wait_until(lambda: listener.client.is_connected())
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()

        def publish(payload: bytes | str) -> None:
            publisher.publish(TOPIC, payload, qos=1).wait_for_publish(timeout=5)

        # The listener subscribes in on_connect: repeat the first report until it is heard.
        assert wait_until(
            lambda: (
                publish(json.dumps({"node": "mgmc-1", "devices": [], "at": 1.0})) or report_at(board) == 1.0
            )
        )
        with caplog.at_level(logging.ERROR, logger="peergrid_dso.health"):
            publish(b"[" * 60_000)  # RecursionError inside json.loads
            publish(json.dumps({"node": "mgmc-1", "devices": [], "at": 2.0}))  # the planted bug
            publish(json.dumps({"node": "mgmc-1", "devices": [], "at": 3.0}))
            assert wait_until(lambda: report_at(board) == 3.0)
        alive = listener.health()  # its network loop runs on, and still hears
        assert alive["alive"] and alive["state"] == "listening"
        assert board.snapshot()["dropped"] == 2
        assert (alive["dropped"], alive["malformed"]) == (2, 1)  # the '[' malformed, the planted bug not
        assert any("ingest raised" in r.getMessage() and r.exc_info for r in caplog.records)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        listener.stop()
