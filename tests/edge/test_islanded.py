"""Islanded operation: with the broker cut, polling and dispatch go on, commitments queue on disk, and after
reconnection every one reaches the chain exactly once, in order, provably holding the readings kept locally."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from edge_helpers import edge_settings, run_for, wait_until

from peergrid_edge.commitments import check
from peergrid_edge.daemon import EdgeDaemon
from peergrid_ledger import keyspace
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair, write_keyfile
from peergrid_ledger.results import Reason, Rejected
from peergrid_ledger.tx import Tx, decode_tx


class LedgerOverMqtt:
    """The MGMC chain's own rules (a single-authority `LocalChain`) fed by the broker's tx topic."""

    def __init__(self, host: str, port: int, topic: str, node_key: Keypair) -> None:
        self.host, self.port, self.topic = host, port, topic
        authority = Keypair.from_seed(b"A" * 32)
        genesis = Genesis(
            chain="mgmc",
            time=int(time.time() * 1000) - 60_000,
            authorities=(authority.public,),
            accounts=(Account(node_key.public, ("mgmc",), "mgmc-test"),),
        )
        self.chain = LocalChain(genesis, authority, clock=lambda: int(time.time() * 1000))
        self.accepted: list[Tx] = []
        self.rejected: list[Rejected] = []
        self.lock = threading.Lock()
        self.client: mqtt.Client | None = None

    def connect(self) -> None:
        subscribed = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.on_message = self._on_message
        client.on_subscribe = lambda *args: subscribed.set()
        client.connect(self.host, self.port)
        client.loop_start()
        client.subscribe(self.topic, qos=1)
        assert subscribed.wait(5)
        self.client = client

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        raw = bytes(message.payload)
        with self.lock:
            result = self.chain.submit(raw)
            if isinstance(result, Rejected):
                self.rejected.append(result)
                return
            self.accepted.append(decode_tx(raw))
            self.chain.seal()


def test_commitments_queue_while_the_broker_is_down_and_arrive_exactly_once(
    run_sim, tmp_path: Path, mosquitto
) -> None:
    sim = run_sim([{"name": "pv1", "kind": "pv"}, {"name": "bess1", "kind": "battery"}])
    settings = edge_settings(
        tmp_path,
        sim,
        {"bess1": {"safe_w": 0}},
        broker={"host": mosquitto.host, "port": mosquitto.port},
    )
    node_key = Keypair.generate()
    settings.data_dir.mkdir(parents=True)
    write_keyfile(settings.data_dir / "node.key", node_key)
    daemon = EdgeDaemon(settings)
    chain = LedgerOverMqtt(mosquitto.host, mosquitto.port, daemon.tx_topic, node_key)
    chain.connect()
    queued_while_down: list[int] = []
    polls_while_down: list[int] = []

    async def body() -> None:
        assert await wait_until(lambda: len(chain.accepted) >= 2, timeout=15)
        mosquitto.stop()
        chain.disconnect()
        polls_before = sum(s.polls for s in daemon.states.values())
        # islanded until 3 commitments queued and 10 polls were made (about 4 s; longer on a loaded host)
        await wait_until(
            lambda: (
                daemon.store.queued() >= 3
                and sum(s.polls for s in daemon.states.values()) - polls_before >= 10
            ),
            timeout=20,
        )
        queued_while_down.append(daemon.store.queued())
        polls_while_down.append(sum(s.polls for s in daemon.states.values()) - polls_before)
        mosquitto.restart()
        chain.connect()
        assert await wait_until(lambda: daemon.store.queued() == 0, timeout=20)
        await asyncio.sleep(1.5)

    asyncio.run(run_for(daemon, body))
    chain.disconnect()
    assert queued_while_down[0] >= 3, "commitments should have queued on disk while islanded"
    assert polls_while_down[0] >= 10, "polling must go on while islanded"
    # Only resends of an already-applied nonce may be refused (exactly once); never a gap, a bad time, etc.
    assert all(r.reason == Reason.REPLAYED_NONCE for r in chain.rejected), chain.rejected
    nonces = [tx.nonce for tx in chain.accepted]
    assert nonces == list(range(1, len(nonces) + 1))
    intervals = [tx.body["interval"] for tx in chain.accepted]
    assert intervals == sorted(set(intervals)), "each interval committed once, in order"
    # Any single reading kept in the local LevelDB proves against the root the chain holds.
    from peergrid_edge.store import EdgeStore

    store = EdgeStore(settings.data_dir / "edge.db")
    try:
        assert len(chain.accepted) == store.submitted
        for tx in chain.accepted[:: max(1, len(chain.accepted) // 4)]:
            interval = tx.body["interval"]
            assert store.sealed_root(interval) == tx.body["root"]
            assert chain.chain.view.get(keyspace.der_commitment(node_key.public, interval)) is not None
            proof = store.prove(interval, tx.body["readings"] - 1)
            assert check(proof, tx.body["root"])
            assert proof.to_json()["reading"]["device"] in ("pv1", "bess1")
    finally:
        store.close()


def test_health_over_a_tls_broker_with_client_certificates(
    run_sim, tmp_path: Path, mosquitto_tls, test_pki
) -> None:
    sim = run_sim([{"name": "pv1", "kind": "pv"}])
    me = test_pki.clients["mgmc-1"]
    broker = {
        "host": mosquitto_tls.host,
        "port": mosquitto_tls.port,
        "ca_file": str(test_pki.ca_cert),
        "cert_file": str(me.cert),
        "key_file": str(me.key),
    }
    daemon = EdgeDaemon(edge_settings(tmp_path, sim, broker=broker, node_id="mgmc-1"))
    seen: list[bytes] = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    other = test_pki.clients["mgmc-2"]
    watcher.tls_set(ca_certs=str(test_pki.ca_cert), certfile=str(other.cert), keyfile=str(other.key))
    watcher.on_message = lambda c, u, m: seen.append(bytes(m.payload))
    watcher.connect(mosquitto_tls.host, mosquitto_tls.port)
    watcher.subscribe("peergrid/+/health/mgmc-1", qos=1)
    watcher.loop_start()
    try:

        async def body() -> None:
            assert await wait_until(lambda: any(b'"ok":true' in p for p in seen), timeout=15)

        asyncio.run(run_for(daemon, body))
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    import json

    health = json.loads(seen[-1])
    assert health["node"] == "mgmc-1" and health["devices"][0]["name"] == "pv1"
    assert set(health["devices"][0]) == {
        "name",
        "nature",
        "ok",
        "stale",
        "error",
        "power_w",
        "energy_wh",
        "models",
    }


def test_schedule_over_mqtt_is_dispatched_and_its_loss_returns_to_safe_state(
    run_sim, tmp_path: Path, mosquitto
) -> None:
    import json

    sim = run_sim([{"name": "pv1", "kind": "pv"}])
    broker = {"host": mosquitto.host, "port": mosquitto.port}
    settings = edge_settings(
        tmp_path, sim, {"pv1": {"safe_w": 8000}}, broker=broker, dispatch={"schedule_timeout_s": 2.0}
    )
    daemon = EdgeDaemon(settings)
    pv = sim.device("mg1", "pv1")
    controller = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    controller.connect(mosquitto.host, mosquitto.port)
    controller.loop_start()
    now = time.time()
    message = {
        "interval": 9,
        "valid_from": now - 1,
        "valid_until": now + 600,
        "setpoints": {"pv1": {"limit_w": 2500}},
    }

    async def body() -> None:
        assert await wait_until(lambda: daemon.link.client.is_connected(), timeout=10)
        controller.publish(daemon.schedule_topic, json.dumps(message), qos=1).wait_for_publish(5)
        assert await wait_until(lambda: sim.call(lambda: pv.model.limit_pct) == 25, timeout=10)
        assert daemon.mode == "schedule"
        # The controller goes quiet: after schedule_timeout_s the PV goes to its safe export cap.
        assert await wait_until(lambda: sim.call(lambda: pv.model.limit_pct) == 80, timeout=10)
        assert daemon.mode == "safe"

    try:
        asyncio.run(run_for(daemon, body))
    finally:
        controller.loop_stop()
        controller.disconnect()


def test_a_restarted_daemon_continues_its_nonces_and_seals_what_it_left_open(
    run_sim, tmp_path: Path, mosquitto
) -> None:
    sim = run_sim([{"name": "pv1", "kind": "pv"}])
    settings = edge_settings(tmp_path, sim, broker={"host": mosquitto.host, "port": mosquitto.port})
    node_key = Keypair.generate()
    settings.data_dir.mkdir(parents=True)
    write_keyfile(settings.data_dir / "node.key", node_key)
    first = EdgeDaemon(settings)
    chain = LedgerOverMqtt(mosquitto.host, mosquitto.port, first.tx_topic, node_key)
    chain.connect()

    async def run_a_while(daemon: EdgeDaemon, at_least: int) -> None:
        async def body() -> None:
            assert await wait_until(lambda: len(chain.accepted) >= at_least, timeout=15)
            await asyncio.sleep(0.6)  # stop mid-interval: its readings stay open on disk

        await run_for(daemon, body)

    try:
        asyncio.run(run_a_while(first, 2))
        asyncio.run(run_a_while(EdgeDaemon(settings), len(chain.accepted) + 3))
    finally:
        chain.disconnect()
    assert all(r.reason == Reason.REPLAYED_NONCE for r in chain.rejected), chain.rejected
    assert [tx.nonce for tx in chain.accepted] == list(range(1, len(chain.accepted) + 1))
    intervals = [tx.body["interval"] for tx in chain.accepted]
    assert intervals == sorted(set(intervals))
