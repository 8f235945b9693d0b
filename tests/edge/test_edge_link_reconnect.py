"""The edge link's reconnect back-off is bounded by the config (`broker.reconnect_max_s`, default 10 s as the
hard-coded bound before T9): paho waits 1 s after a lost connection and doubles up to the bound, so a broker back
after an outage is found within it. The lab sets its phase timeout (T8: at 10 s test_faults' mg3 rejoined 9.4 s
after its cable came back). A bound below 1 s, above 10 min, NaN or infinite is refused with the field's name.

Over a real Mosquitto stopped and restarted: the waits paho takes between refused attempts are the doubling
capped at the configured bound (before: 1, 2, 4 with a 1.5-s bound asked for), and the link comes back with its
subscription. The wall from the broker's return to the link's is measured apart from the tests (no timing
threshold here; T9's report has the figures).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from peergrid_edge.config import BrokerSettings, EdgeSettings
from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.link import RECONNECT_MIN_S, MqttLink
from peergrid_sim.broker import MosquittoBroker
from peergrid_sim.closedloop import LabChains, LoopTiming, edge_config, phase_timeout_s

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
TOPIC = "peergrid/test/health/peer"


def test_the_bound_defaults_to_ten_seconds_and_bad_bounds_are_refused() -> None:
    assert BrokerSettings().reconnect_max_s == 10.0  # a deployed config without the key behaves as before
    assert BrokerSettings.model_validate({"reconnect_max_s": 2}).reconnect_max_s == 2.0
    assert BrokerSettings.model_validate({"reconnect_max_s": 1}).reconnect_max_s == 1.0
    for bad in (0.5, 0, -3, 601, math.nan, math.inf, "soon"):
        with pytest.raises(ValidationError, match="reconnect_max_s"):
            BrokerSettings.model_validate({"reconnect_max_s": bad})


def test_the_link_hands_its_bound_to_paho_and_refuses_a_bad_one() -> None:
    default = MqttLink("edge-bound", "127.0.0.1", 9)
    assert (default.client._reconnect_min_delay, default.client._reconnect_max_delay) == (
        RECONNECT_MIN_S,
        10.0,
    )
    link = MqttLink("edge-bound", "127.0.0.1", 9, reconnect_max_s=2.5)
    assert (link.client._reconnect_min_delay, link.client._reconnect_max_delay) == (RECONNECT_MIN_S, 2.5)
    for bad in (0.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="reconnect_max_s"):
            MqttLink("edge-bound", "127.0.0.1", 9, reconnect_max_s=bad)


def test_the_labs_mgmcs_reconnect_within_their_phase_timeout(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    for interval_s in (5.0, 12.0):
        doc = edge_config(
            chains, chains.mgs[0], "ieee33", ("127.0.0.1", 1883), tmp_path / "node", [], SCENARIO,
            LoopTiming(1000.0, interval_s, 36, 4), tmp_path / "records",
        )  # fmt: skip
        settings = EdgeSettings.model_validate(doc)  # the edge takes it
        assert settings.broker.reconnect_max_s == phase_timeout_s(interval_s) < 10.0


def test_a_link_whose_broker_restarts_waits_at_most_its_bound_and_comes_back(tmp_path: Path) -> None:
    bound = 1.5
    waits: list[float | None] = []  # paho's back-off at each refused attempt while the broker is down
    refused = threading.Event()
    got: list[bytes] = []

    def on_connect_fail(client: mqtt.Client, _userdata: object) -> None:
        waits.append(client._reconnect_delay)
        if len(waits) >= 3:
            refused.set()

    async def main(broker: MosquittoBroker) -> None:
        link = MqttLink("edge-reconnect", broker.host, broker.port, keepalive_s=5, reconnect_max_s=bound)
        link.client.on_connect_fail = on_connect_fail
        link.subscribe(TOPIC, lambda _topic, payload: got.append(payload))
        link.start()
        try:
            await asyncio.wait_for(link.connected.wait(), 10)
            broker.stop()
            # three refused attempts: 1 s, then the doubling capped at the bound (1.5, 1.5), not 2 and 4
            assert await asyncio.to_thread(refused.wait, 30), f"paho stopped retrying: {waits}"
            assert not link.connected.is_set()
            assert waits[:3] == [RECONNECT_MIN_S, bound, bound]
            restarted = time.monotonic()
            await asyncio.to_thread(broker.restart)
            await asyncio.wait_for(link.connected.wait(), 30)  # liveness only: the wall is measured apart
            print(
                f"reconnected {time.monotonic() - restarted:.2f} s after the restart began (bound {bound} s)"
            )
            # its subscription came back with it: a peer's message reaches the handler
            peer = mqtt.Client(CallbackAPIVersion.VERSION2)
            peer.connect(broker.host, broker.port)
            peer.loop_start()
            try:
                deadline = time.monotonic() + 10
                while not got and time.monotonic() < deadline:
                    peer.publish(TOPIC, b"after the outage", qos=1)
                    await asyncio.sleep(0.2)
            finally:
                peer.loop_stop()
                peer.disconnect()
            assert got and got[0] == b"after the outage"
        finally:
            link.stop()

    with MosquittoBroker(tmp_path / "broker") as broker:
        asyncio.run(main(broker))


def test_the_daemon_hands_its_configs_bound_to_its_link(tmp_path: Path) -> None:
    """The daemon builds its link with the config's `broker.reconnect_max_s` (10 s unless set)."""
    for broker, bound in (({}, 10.0), ({"reconnect_max_s": 2.5}, 2.5)):
        settings = EdgeSettings.model_validate(
            {"node_id": "n", "mg": "mg1", "data_dir": str(tmp_path / str(bound)), "broker": broker}
        )
        daemon = EdgeDaemon(settings)
        try:
            assert daemon.link.client._reconnect_max_delay == bound
        finally:
            daemon.store.close()
