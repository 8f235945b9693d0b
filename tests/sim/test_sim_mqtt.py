"""MQTT sensors against a real Mosquitto: periodic telemetry on the feeder's topic, commands applied and acked."""

from __future__ import annotations

import json
import queue

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


def test_telemetry_and_commands_over_a_real_broker(run_sim, mosquitto):
    scenario = {
        "name": "mqtt",
        "feeder": "f1",
        "broker": {"host": mosquitto.host, "port": mosquitto.port},
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
    sim = run_sim(scenario)
    endpoint = sim.endpoint("pvroof")
    assert endpoint["protocol"] == "mqtt" and endpoint["topic"] == "peergrid/f1/telemetry/mg1/pvroof"
    inbox: queue.Queue[tuple[str, dict]] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: inbox.put((m.topic, json.loads(m.payload)))
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe([(endpoint["topic"], 1), (f"{endpoint['topic']}/ack", 1)])
    client.loop_start()
    try:
        topic, telemetry = inbox.get(timeout=10)
        while topic != endpoint["topic"]:
            topic, telemetry = inbox.get(timeout=10)
        assert telemetry["kind"] == "pv" and telemetry["readings"]["ac_w"] > 2000
        client.publish(f"{endpoint['topic']}/set", json.dumps({"limit_enabled": 1, "limit_pct": 25}), qos=1)
        while True:
            topic, message = inbox.get(timeout=10)
            if topic.endswith("/ack"):
                break
        assert message["accepted"] == {"limit_enabled": 1.0, "limit_pct": 25.0} and message["rejected"] == {}
        assert sim.call(lambda: sim.app.sim.device("mg1/pvroof").model.limit_pct) == 25
        client.publish(f"{endpoint['topic']}/set", b"not json", qos=1)
        while True:
            topic, message = inbox.get(timeout=10)
            if topic.endswith("/ack"):
                break
        assert message["rejected"] == {"*": "payload is not JSON"}
    finally:
        client.loop_stop()
        client.disconnect()
