"""MQTT sensors against a real Mosquitto: periodic telemetry on the feeder's topic, commands applied and acked."""

from __future__ import annotations

import json
import queue
import time

import paho.mqtt.client as mqtt

from peergrid_sim.mqtt_sensor import parse_command
from peergrid_sim.physics import PvInverter


def test_parse_command_is_all_or_nothing():
    pv = PvInverter(rating_w=5000)
    assert parse_command(b'{"limit_enabled": 1, "limit_pct": 40}', pv) == (
        {"limit_enabled": 1.0, "limit_pct": 40.0},
        {},
    )
    accepted, rejected = parse_command(b'{"limit_enabled": 1, "limit_pct": 400}', pv)
    assert accepted == {} and "limit_pct" in rejected
    assert parse_command(b"\xff", pv)[1] == {"*": "payload is not JSON"}
    assert parse_command(b'{"limit_pct": "x"}', pv)[1] == {"limit_pct": "value must be a number"}
    assert parse_command(b"[]", pv)[0] == {}
    # nested past the decoder's recursion limit: refused like any non-JSON payload, not raised into the
    # device's command handler (review21's lab-only twin of the DSO health board's F2)
    assert parse_command(b"[" * 100_000, pv) == ({}, {"*": "payload is not JSON"})


def _first(inbox: queue.Queue[tuple[str, dict]], suffix: str, within_s: float = 10.0) -> tuple[str, dict]:
    """The next message whose topic ends with `suffix`, skipping the others; fails after `within_s` (telemetry
    keeps arriving every period, so a per-get timeout alone would wait forever for a message that never comes)."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            topic, message = inbox.get(timeout=left)
        except queue.Empty:
            break
        if topic.endswith(suffix):
            return topic, message
    raise AssertionError(f"no message on *{suffix} within {within_s} s")


def pv_over_mqtt(broker, name="mqtt"):
    """A one-MG scenario whose only device, a 4-kW PV ("pvroof"), talks MQTT to `broker` every 0.2 s."""
    return {
        "name": name,
        "feeder": "f1",
        "broker": {"host": broker.host, "port": broker.port},
        "profiles": {"flat": {"irradiance": [[0, 900], [24, 900]]}},
        "microgrids": [
            {
                "name": "mg1",
                "bus": 5,
                "profile": "flat",
                "devices": [
                    {
                        "name": "pvroof",
                        "kind": "pv",
                        "protocol": "mqtt",
                        "period_s": 0.2,
                        "params": {"rating_w": 4000},
                    },
                ],
            }
        ],
    }


def test_telemetry_and_commands_over_a_real_broker(run_sim, mosquitto):
    sim = run_sim(pv_over_mqtt(mosquitto))
    endpoint = sim.endpoint("pvroof")
    assert endpoint["protocol"] == "mqtt" and endpoint["topic"] == "peergrid/f1/telemetry/mg1/pvroof"
    inbox: queue.Queue[tuple[str, dict]] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: inbox.put((m.topic, json.loads(m.payload)))
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe([(endpoint["topic"], 1), (f"{endpoint['topic']}/ack", 1)])
    client.loop_start()
    try:
        _, telemetry = _first(inbox, endpoint["topic"])
        assert telemetry["kind"] == "pv" and telemetry["readings"]["ac_w"] > 2000
        client.publish(f"{endpoint['topic']}/set", json.dumps({"limit_enabled": 1, "limit_pct": 25}), qos=1)
        _, message = _first(inbox, "/ack")
        assert message["accepted"] == {"limit_enabled": 1.0, "limit_pct": 25.0} and message["rejected"] == {}
        assert sim.call(lambda: sim.app.sim.device("mg1/pvroof").model.limit_pct) == 25
        client.publish(f"{endpoint['topic']}/set", b"not json", qos=1)
        _, message = _first(inbox, "/ack")
        assert message["rejected"] == {"*": "payload is not JSON"}
    finally:
        client.loop_stop()
        client.disconnect()


def test_sensors_reach_a_tls_broker_with_a_client_certificate(run_sim, tmp_path, test_pki):
    from peergrid_sim.broker import MosquittoBroker

    client_pair = test_pki.clients["mgmc-1"]
    with MosquittoBroker(tmp_path / "broker", tls=test_pki) as broker:
        scenario = {
            "name": "tls",
            "feeder": "f1",
            "broker": {
                "host": broker.host,
                "port": broker.port,
                "ca_file": str(test_pki.ca_cert),
                "cert_file": str(client_pair.cert),
                "key_file": str(client_pair.key),
            },
            "microgrids": [
                {
                    "name": "mg1",
                    "bus": 5,
                    "devices": [{"name": "meter", "kind": "meter", "protocol": "mqtt", "period_s": 0.2}],
                }
            ],
        }
        sim = run_sim(scenario)
        inbox: queue.Queue[dict] = queue.Queue()
        other = test_pki.clients["dso"]
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.tls_set(ca_certs=str(test_pki.ca_cert), certfile=str(other.cert), keyfile=str(other.key))
        client.on_message = lambda c, u, m: inbox.put(json.loads(m.payload))
        client.connect(broker.host, broker.port)
        client.subscribe(sim.endpoint("meter")["topic"], qos=1)
        client.loop_start()
        try:
            assert inbox.get(timeout=10)["kind"] == "meter"
        finally:
            client.loop_stop()
            client.disconnect()


def test_run_with_broker_and_broker_tls_flags(tmp_path, test_pki):
    import signal
    import subprocess
    import sys

    from peergrid_ledger.tied import tied_popen
    from peergrid_sim.broker import MosquittoBroker

    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\nfeeder: f9\nmicrogrids: [{name: mg1, bus: 3, devices: "
        "[{name: meter, kind: meter, protocol: mqtt, period_s: 0.2}]}]\nbroker: {host: 127.0.0.1, port: 1}\n"
    )
    pair, other = test_pki.clients["mgmc-2"], test_pki.clients["dso"]
    with MosquittoBroker(tmp_path / "broker", tls=test_pki) as broker:
        inbox: queue.Queue[dict] = queue.Queue()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.tls_set(ca_certs=str(test_pki.ca_cert), certfile=str(other.cert), keyfile=str(other.key))
        client.on_message = lambda c, u, m: inbox.put(json.loads(m.payload))
        client.connect(broker.host, broker.port)
        client.subscribe("peergrid/f9/telemetry/mg1/meter", qos=1)
        client.loop_start()
        proc = tied_popen(
            [
                sys.executable,
                "-m",
                "peergrid_sim.cli",
                "run",
                str(path),
                "--broker",
                f"{broker.host}:{broker.port}",
                "--broker-tls",
                str(test_pki.ca_cert),
                str(pair.cert),
                str(pair.key),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert inbox.get(timeout=20)["device"] == "meter"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
            client.loop_stop()
            client.disconnect()
        assert proc.returncode == 0


def test_no_telemetry_before_the_broker_acknowledged_the_command_subscriptions():
    """A client that saw a device's telemetry may command it at once: the sensors publish only after the SUBACK."""
    import asyncio
    from types import SimpleNamespace

    from paho.mqtt.reasoncodes import ReasonCode

    from peergrid_sim.mqtt_sensor import MqttSensors

    class Client:
        def __init__(self) -> None:
            self.published: list[str] = []
            self.subscribed: list[list[tuple[str, int]]] = []

        def connect_async(self, *args: object, **kwargs: object) -> None: ...
        def loop_start(self) -> None: ...
        def loop_stop(self) -> None: ...
        def disconnect(self) -> None: ...

        def subscribe(self, topics: list[tuple[str, int]]) -> tuple[int, int]:
            self.subscribed.append(topics)
            return 0, 7

        def publish(self, topic: str, payload: str, qos: int = 0) -> None:
            self.published.append(topic)

    faults = SimpleNamespace(no_response=False, down_until=0.0, delay_s=0.0)
    device = SimpleNamespace(
        mg="mg1", name="pv", kind="pv", faults=faults, reported_readings=lambda: {"ac_w": 1.0}
    )
    scenario = SimpleNamespace(
        feeder="f1", name="t", broker=SimpleNamespace(host="127.0.0.1", port=1, ca_file=None)
    )
    sensors = MqttSensors(
        scenario,
        [(SimpleNamespace(name="pv", period_s=0.01), device, "mg1")],
        clock=SimpleNamespace(now=time.time),
    )
    client = Client()
    sensors.client = client  # type: ignore[assignment]

    async def run() -> None:
        await sensors.start()
        await asyncio.sleep(0.1)
        assert client.published == []
        sensors._on_connect(client, None, None, None, None)  # type: ignore[arg-type]
        assert client.subscribed == [[("peergrid/f1/telemetry/mg1/pv/set", 1)]]
        await asyncio.sleep(0.1)
        assert client.published == [], "published before the SUBACK"
        sensors._on_subscribe(client, None, 7, [ReasonCode(9, identifier=1)], None)  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        assert client.published and set(client.published) == {"peergrid/f1/telemetry/mg1/pv"}
        await sensors.close()

    asyncio.run(run())
