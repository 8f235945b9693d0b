"""`/api/health` says whether the DSO's health listener still hears the feeder (session 16's note: S2 made the
listener survive any exception, but with its connection or its network loop gone the node views went stale
while /api/health said ok). Over a real Mosquitto: the broker stopped, the listener's loop ended by a callback
that raises, a subscription the broker's ACL refuses, a malformed report counted; silence past the config's
bound on an injected clock; the pure verdict for every state."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers_wait import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from peergrid_dso.services.health import NodeBoard
from peergrid_dso.services.health_listener import (
    HealthListenerSettings,
    ListenerState,
    MqttHealthListener,
    listener_health,
)
from peergrid_sim.broker import MosquittoBroker

TOPIC = "peergrid/f1/health/mgmc-1"


def report(at: float) -> bytes:
    return json.dumps({"node": "mgmc-1", "devices": [], "at": at}).encode()


class Publisher:
    """An MGMC publishing on its health topic (QoS 1, each publish waited for)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="mgmc-1")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, payload: bytes) -> None:
        self.client.publish(TOPIC, payload, qos=1).wait_for_publish(timeout=5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def publisher(mosquitto: MosquittoBroker) -> Iterator[Publisher]:
    found = Publisher(mosquitto)
    yield found
    found.close()


def counts(taken: int = 0, malformed: int = 0, dropped: int = 0) -> dict[str, int]:
    return {"taken": taken, "malformed": malformed, "dropped": dropped}


def test_the_verdict_for_each_state_of_the_listener() -> None:
    up = ListenerState(started=True, alive=True, connected=True, subscribed=True, subscribed_at=100.0)
    cases = [
        (ListenerState(), None, "starting"),
        (ListenerState(started=True, error="RuntimeError: x"), None, "dead"),
        (ListenerState(started=True, alive=True), None, "disconnected"),
        (ListenerState(started=True, alive=True, connected=True), None, "unsubscribed"),
        (up, None, "listening"),  # no bound: silence is shown, never judged
        (up, 30.0, "silent"),  # nothing since the subscription, 40 s ago
        (ListenerState(**{**up.__dict__, "last_message_at": 125.0}), 30.0, "listening"),  # 15 s ago
        (ListenerState(**{**up.__dict__, "last_message_at": 105.0}), 30.0, "silent"),  # 35 s ago
        # reconnected 20 s ago after an outage: its last report 90 s old, yet silent only since the subscription
        (
            ListenerState(**{**up.__dict__, "subscribed_at": 120.0, "last_message_at": 50.0}),
            30.0,
            "listening",
        ),
    ]
    for state, bound, expected in cases:
        doc = listener_health(state, counts(3, 1, 2), bound, 140.0)
        assert (doc["state"], doc["ok"]) == (expected, expected == "listening"), (state, bound)
        assert (doc["taken"], doc["malformed"], doc["dropped"], doc["silent_after_s"]) == (3, 1, 2, bound)
    dead = listener_health(ListenerState(started=True, error="RuntimeError: x"), counts(), None, 1.0)
    assert dead["error"] == "RuntimeError: x" and dead["last_message_age_s"] is None
    heard = listener_health(ListenerState(**{**up.__dict__, "last_message_at": 125.0}), counts(), 30.0, 140.0)
    assert (heard["last_message_age_s"], heard["silent_s"]) == (15.0, 15.0)
    assert listener_health(up, counts(), 30.0, 140.0)["silent_s"] == 40.0  # counted from the subscription
    assert "error" not in heard


def test_the_bound_comes_from_the_configs_section_and_must_be_positive() -> None:
    from pydantic import ValidationError

    from peergrid_dso.config import DsoSettings

    assert DsoSettings().health_listener.silent_after_s is None  # without a section: shown, not judged
    said = DsoSettings.model_validate({"health_listener": {"silent_after_s": 45}})
    assert said.health_listener == HealthListenerSettings(silent_after_s=45)
    for bad in (0, -1, "30", float("nan")):
        with pytest.raises(ValidationError):
            HealthListenerSettings.model_validate({"silent_after_s": bad})
    with pytest.raises(ValidationError):
        HealthListenerSettings.model_validate({"silence": 3})


def _app_settings(tmp_path: Path, broker: MosquittoBroker, silent_after_s: float | None) -> Any:
    """The server's config with its health_listener section."""
    from peergrid_dso.config import DsoSettings

    doc: dict[str, Any] = {
        "feeder": "f1", "broker": {"host": broker.host, "port": broker.port},
        "console": {"users_file": str(tmp_path / "users.json"), "lab_market": False, "lab_drift": False},
        "health_listener": {"silent_after_s": silent_after_s},
    }  # fmt: skip
    return DsoSettings.model_validate(doc)


def test_api_health_says_ok_only_while_the_listener_hears_the_feeder(
    tmp_path: Path, mosquitto: MosquittoBroker, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from peergrid_dso.app import create_app

    settings = _app_settings(tmp_path, mosquitto, 3600.0)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8080") as client:

        def health() -> dict[str, Any]:
            doc: dict[str, Any] = client.get("/api/health").json()
            return doc

        assert wait_until(lambda: health()["health_listener"]["state"] == "listening")
        first = health()
        assert first["status"] == "ok" and first["health_listener"]["silent_after_s"] == 3600.0
        # a malformed report is counted (and the listener still hears)
        assert wait_until(lambda: publisher.send(report(1.0)) or health()["health_listener"]["taken"] >= 1)
        publisher.send(b"{not json")
        assert wait_until(lambda: health()["health_listener"]["malformed"] == 1)
        doc = health()
        assert doc["status"] == "ok" and doc["health_listener"]["dropped"] == 1
        assert doc["health_listener"]["last_message_age_s"] is not None
        # the broker goes away: the listener's connection with it
        publisher.close()
        mosquitto.stop()
        assert wait_until(lambda: health()["health_listener"]["state"] == "disconnected")
        cut = health()
        assert cut["status"] == "degraded" and not cut["health_listener"]["connected"]
        assert cut["health_listener"]["alive"] is True  # its loop runs on, reconnecting
        # back: it reconnects, subscribes again, and health is ok again
        mosquitto.restart()
        assert wait_until(lambda: health()["status"] == "ok")
        assert health()["health_listener"]["subscribed"] is True
        # its network loop ends (a callback that raises, once paho no longer suppresses it): dead, and why
        listener = client.app.state.health_listener  # type: ignore[attr-defined]
        listener.client.suppress_exceptions = False

        def broken(*_args: Any) -> None:
            raise RuntimeError("a bug in the message handler")

        listener.client.on_message = broken
        again = Publisher(mosquitto)
        try:
            with caplog.at_level("ERROR", logger="peergrid_dso.health"):
                assert wait_until(
                    lambda: again.send(report(2.0)) or health()["health_listener"]["state"] == "dead"
                )
        finally:
            again.close()
        dead = health()
        assert dead["status"] == "degraded" and dead["health_listener"]["alive"] is False
        assert dead["health_listener"]["error"] == "RuntimeError: a bug in the message handler"
        assert any("network loop ended" in r.getMessage() and r.exc_info for r in caplog.records)


def test_silence_past_the_bound_is_not_ok_and_the_next_report_ends_it(
    mosquitto: MosquittoBroker, publisher: Publisher
) -> None:
    now = [1000.0]
    board = NodeBoard("f1")
    listener = MqttHealthListener(
        board, mosquitto.host, mosquitto.port, "dso-health", silent_after_s=30.0, clock=lambda: now[0]
    )
    listener.start()
    try:
        assert wait_until(lambda: listener.health()["state"] == "listening")
        now[0] += 30.0  # exactly the bound: still listening
        assert listener.health()["state"] == "listening"
        now[0] += 0.5
        silent = listener.health()
        assert (silent["state"], silent["ok"], silent["silent_s"], silent["last_message_age_s"]) == (
            "silent", False, 30.5, None,
        )  # fmt: skip
        publisher.send(report(1.0))
        assert wait_until(lambda: listener.health()["state"] == "listening")
        heard = listener.health()
        assert heard["last_message_age_s"] == 0.0 and heard["taken"] == 1
        now[0] += 31.0
        assert listener.health()["state"] == "silent"  # silent again, counted from that report
        assert listener.health()["last_message_age_s"] == 31.0
    finally:
        listener.stop()
    assert listener.health()["state"] == "dead" and "error" not in listener.health()  # stopped


def test_a_listener_the_brokers_acl_keeps_deaf_is_silent_past_the_bound(tmp_path: Path) -> None:
    # each client may read and write only its own health topic (%c: its client id): the DSO's subscription
    # to every node's is granted (Mosquitto 2.0 filters at delivery) and connected, but no report reaches it
    # - exactly what only the silence bound can tell
    now = [0.0]
    acl = ["pattern readwrite peergrid/+/health/%c"]
    with MosquittoBroker(tmp_path / "broker", acl_lines=acl) as broker:
        board = NodeBoard("f1")
        listener = MqttHealthListener(
            board, broker.host, broker.port, "dso-health", silent_after_s=30.0, clock=lambda: now[0]
        )
        listener.start()
        publisher = Publisher(broker)
        try:
            assert wait_until(lambda: listener.health()["state"] == "listening")
            publisher.send(report(1.0))  # delivered to nobody
            time.sleep(0.5)
            now[0] += 31.0
            doc = listener.health()
            assert (doc["state"], doc["ok"], doc["connected"], doc["subscribed"], doc["taken"]) == (
                "silent", False, True, True, 0,
            )  # fmt: skip
        finally:
            publisher.close()
            listener.stop()


def test_a_subscription_the_broker_refuses_is_not_listening(mosquitto: MosquittoBroker) -> None:
    # a broker that refuses a subscription says so in its SUBACK (0x80; MQTT 5: not authorised): the listener
    # is connected but deaf. Mosquitto 2.0 grants and filters at delivery instead (the test above), so the
    # SUBACK is given to the listener's callback here as paho gives it
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    listener = MqttHealthListener(NodeBoard("f1"), mosquitto.host, mosquitto.port, "dso-health")
    listener.start()
    try:
        assert wait_until(lambda: listener.health()["state"] == "listening")
        mid = listener._subscription
        assert mid is not None
        listener._on_subscribe(
            listener.client, None, mid + 1, [ReasonCode(PacketTypes.SUBACK, identifier=0x80)]
        )
        assert listener.health()["state"] == "listening"  # another subscription's answer changes nothing
        listener._on_subscribe(listener.client, None, mid, [ReasonCode(PacketTypes.SUBACK, identifier=0x80)])
        doc = listener.health()
        assert (doc["state"], doc["ok"], doc["connected"], doc["subscribed"]) == (
            "unsubscribed", False, True, False,
        )  # fmt: skip
    finally:
        listener.stop()


def test_a_listener_that_never_reaches_its_broker_is_disconnected_and_stops_promptly() -> None:
    from peergrid_sim.broker import free_port

    listener = MqttHealthListener(NodeBoard("f1"), "127.0.0.1", free_port(), "dso-health")
    assert listener.health()["state"] == "starting"
    listener.start()
    try:
        time.sleep(0.3)  # its first connect was refused; it waits to retry
        doc = listener.health()
        assert (doc["state"], doc["ok"], doc["alive"], doc["connected"]) == (
            "disconnected",
            False,
            True,
            False,
        )
    finally:
        listener.stop()  # its loop ends while it waits to reconnect (stop joins it): no longer alive
    assert listener.health()["state"] == "dead" and "error" not in listener.health()
