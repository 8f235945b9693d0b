"""The broker fixtures start a real Mosquitto, TLS refuses clients without certificates, ACLs hold."""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt
import pytest

from peergrid_sim.broker import MosquittoBroker
from peergrid_sim.certs import LabPki


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)


def _roundtrip(pub: mqtt.Client, sub: mqtt.Client, host: str, port: int, topic: str) -> bytes | None:
    got: list[bytes] = []
    subscribed = threading.Event()
    arrived = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        arrived.set()

    sub.on_message = on_message
    sub.connect(host, port)
    sub.loop_start()
    sub.subscribe("peergrid/#", qos=1)
    assert subscribed.wait(5)
    pub.connect(host, port)
    pub.loop_start()
    pub.publish(topic, b"hello", qos=1).wait_for_publish(5)
    arrived.wait(2)
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return got[0] if got else None


def test_plain_broker_moves_a_message(mosquitto: MosquittoBroker) -> None:
    assert mosquitto.port != 1883 or mosquitto.port > 0
    payload = _roundtrip(
        _client("pub"), _client("sub"), mosquitto.host, mosquitto.port, "peergrid/f1/health/x"
    )
    assert payload == b"hello"


def test_stop_ends_the_process(tmp_path) -> None:
    broker = MosquittoBroker(tmp_path).start()
    proc = broker.process
    assert proc is not None and proc.poll() is None
    broker.stop()
    assert proc.poll() is not None


def _tls_client(pki: LabPki, cn: str | None, client_id: str) -> mqtt.Client:
    client = _client(client_id)
    if cn is None:
        client.tls_set(ca_certs=str(pki.ca_cert), cert_reqs=ssl.CERT_REQUIRED)
    else:
        pair = pki.clients[cn]
        client.tls_set(ca_certs=str(pki.ca_cert), certfile=str(pair.cert), keyfile=str(pair.key))
    return client


def test_tls_broker_refuses_a_client_without_certificate(
    mosquitto_tls: MosquittoBroker, test_pki: LabPki
) -> None:
    client = _tls_client(test_pki, None, "anon")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        client.connect(mosquitto_tls.host, mosquitto_tls.port)
        # TLS 1.3 may report the missing certificate only on the first read.
        for _ in range(20):
            rc = client.loop(timeout=0.1)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"loop rc={rc}")


def test_tls_acl_keeps_a_device_in_its_own_subtree(mosquitto_tls: MosquittoBroker, test_pki: LabPki) -> None:
    own = _roundtrip(
        _tls_client(test_pki, "mgmc-1", "p1"),
        _tls_client(test_pki, "dso", "s1"),
        mosquitto_tls.host,
        mosquitto_tls.port,
        "peergrid/f1/health/mgmc-1",
    )
    assert own == b"hello"
    # mgmc-1 spoofs mgmc-2's client id and topic: the ACL keys on the certificate CN, so it is dropped.
    spoofed = _roundtrip(
        _tls_client(test_pki, "mgmc-1", "mgmc-2"),
        _tls_client(test_pki, "dso", "s2"),
        mosquitto_tls.host,
        mosquitto_tls.port,
        "peergrid/f1/health/mgmc-2",
    )
    assert spoofed is None
