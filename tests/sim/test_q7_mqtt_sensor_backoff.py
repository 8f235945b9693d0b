"""firmware-sim's MQTT devices come back soon after their broker does, not on paho's default back-off (doubling to
120 s): after a 15-s broker outage in U2's lab they published again 16 s after the broker's return, while the MGMCs
reading them were back within a second or two. Over a real Mosquitto on a free loopback port, stopped until the
sensors' back-off has met its bound: paho waited 1 s, then 2 s before each refused attempt (`RECONNECT_MIN_S`
doubling to `RECONNECT_MAX_S`; paho's default would wait 4 s, then 8 and 16), and the sensors are back at their
first attempt on the returned broker, publishing again. Order and sizes of paho's waits, not a wall clock: nothing
here is timed."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import paho.mqtt.client as mqtt
from helpers_reconnect import Reconnects, back_on_first_try, doubling
from helpers_wait import wait_until
from test_sim_mqtt import pv_over_mqtt

from peergrid_sim.broker import MosquittoBroker
from peergrid_sim.mqtt_sensor import RECONNECT_MAX_S, RECONNECT_MIN_S

# refused attempts until the waits have met the bound: 1, 2, 2 (paho's default: 1, 2, 4)
GROWN = 3


def test_the_sensors_back_off_within_the_edge_links_bounds() -> None:
    assert (RECONNECT_MIN_S, RECONNECT_MAX_S) == (1.0, 2.0)


def _telemetry_heard(broker: MosquittoBroker, topic: str, timeout_s: float) -> dict | None:
    """The first telemetry a fresh subscriber hears on `topic` within `timeout_s` (None: none): connected now, so
    what it hears was published now, not before an outage."""
    inbox: queue.Queue[dict] = queue.Queue()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_message = lambda c, u, m: inbox.put(json.loads(m.payload))
    listener.connect(broker.host, broker.port)
    listener.subscribe(topic, qos=0)
    listener.loop_start()
    try:
        return inbox.get(timeout=timeout_s)
    except queue.Empty:
        return None
    finally:
        listener.disconnect()
        listener.loop_stop()


def test_sensors_publish_again_at_their_first_attempt_on_the_returned_broker(tmp_path: Path, run_sim) -> None:
    with MosquittoBroker(tmp_path / "broker") as broker:
        sim = run_sim(pv_over_mqtt(broker, name="q7-backoff"))
        topic = sim.endpoint("pvroof")["topic"]
        assert _telemetry_heard(broker, topic, 30.0) is not None  # connected and publishing
        reconnects = Reconnects(sim.app.mqtt.client)
        broker.stop()
        assert wait_until(lambda: sim.app.mqtt.outage.down_since is not None)  # the loss seen
        assert wait_until(lambda: len(reconnects.waits()) >= GROWN), reconnects.waits()
        returned = reconnects.mark()
        broker.restart()
        heard = _telemetry_heard(broker, topic, 30.0)  # liveness only: the order below is the claim
        assert heard is not None, "no telemetry after the broker's return"
        assert heard["device"] == "pvroof"
        waits = reconnects.waits()
        assert waits[:GROWN] == doubling(RECONNECT_MIN_S, RECONNECT_MAX_S, GROWN), waits
        assert max(waits) == RECONNECT_MAX_S, waits
        assert back_on_first_try(reconnects.since(returned)), reconnects.since(returned)
        assert sim.app.mqtt.outage.down_since is None  # its outage told as over (`BrokerOutage`)
