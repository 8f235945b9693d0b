"""Islanded operation: with the broker cut, polling and dispatch go on, commitments queue on disk, and after
reconnection every one reaches the chain exactly once, in order, provably holding the readings kept locally."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from conftest import edge_settings, run_for, wait_until

from peergrid_edge.commitments import check
from peergrid_edge.daemon import EdgeDaemon
from peergrid_ledger.tx import Tx, decode_tx


class NonceChain:
    """Stands in for the MGMC chain's admission rule: a sender's nonce must be exactly last + 1."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.host, self.port, self.topic = host, port, topic
        self.accepted: list[Tx] = []
        self.replays = 0
        self.gaps = 0
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
        tx = decode_tx(bytes(message.payload))
        assert tx.signature_ok()
        with self.lock:
            last = self.accepted[-1].nonce if self.accepted else 0
            if tx.nonce <= last:
                self.replays += 1
            elif tx.nonce != last + 1:
                self.gaps += 1
            else:
                self.accepted.append(tx)


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
    daemon = EdgeDaemon(settings)
    chain = NonceChain(mosquitto.host, mosquitto.port, daemon.tx_topic)
    chain.connect()
    queued_while_down: list[int] = []
    polls_while_down: list[int] = []

    async def body() -> None:
        assert await wait_until(lambda: len(chain.accepted) >= 2, timeout=15)
        mosquitto.stop()
        chain.disconnect()
        polls_before = sum(s.polls for s in daemon.states.values())
        await asyncio.sleep(4.0)
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
    assert chain.gaps == 0
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
            proof = store.prove(interval, tx.body["readings"] - 1)
            assert check(proof, tx.body["root"])
            assert proof.to_json()["reading"]["device"] in ("pv1", "bess1")
    finally:
        store.close()
