"""Signed envelopes, drops that are counted not raised, two chains in one process, node config errors."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from peergrid_ledger import codec, keys
from peergrid_ledger.consensus.actions import Timer
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.labnet import lab_key
from peergrid_ledger.consensus.mqtt_transport import MqttTransport
from peergrid_ledger.consensus.node import ChainReplica, FileWal, Node
from peergrid_ledger.consensus.node_cli import main as node_main
from peergrid_ledger.consensus.transport import (
    CONSENSUS,
    TX,
    EnvelopeError,
    encode_tx_batch,
    open_envelope,
    seal_envelope,
    topic,
)
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import sign_tx
from peergrid_ledger.verify import verify_store

AUTHORITY = lab_key("transport-authority")
CLIENT = lab_key("transport-client")
STRANGER = lab_key("stranger")


def genesis(chain: str) -> Genesis:
    return Genesis(
        chain=chain,
        time=int(time.time() * 1000) - 1000,
        authorities=(AUTHORITY.public,),
        accounts=(Account(CLIENT.public, ("anonym",), "client"),),
    )


class Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes, bytes | None]] = []

    def publish(self, chain: str, kind: str, data: bytes, to: bytes | None = None) -> None:
        self.published.append((chain, kind, data, to))


def test_envelopes_refuse_what_they_should() -> None:
    sealed = seal_envelope("a", CONSENSUS, AUTHORITY, b"body")
    assert open_envelope("a", sealed).sender == AUTHORITY.public
    cases = {
        "wrong-chain": sealed,
        "oversized": sealed + b"x" * 10,
        "malformed": b"\x00\x01garbage",
    }
    for reason, data in cases.items():
        with pytest.raises(EnvelopeError) as err:
            open_envelope("b" if reason == "wrong-chain" else "a", data, max_size=len(sealed) + 5)
        assert err.value.reason == reason
    items = codec.decode(sealed)
    items[3] = b"other body"  # signature no longer matches
    with pytest.raises(EnvelopeError, match="unsigned"):
        open_envelope("a", codec.encode(items))
    items[4] = b""
    with pytest.raises(EnvelopeError, match="unsigned"):
        open_envelope("a", codec.encode(items))


def test_replica_counts_every_drop_and_takes_good_transactions(tmp_path: Path) -> None:
    store = BlockStore.create(tmp_path / "db", genesis("c1"))
    sent = Recorder()
    timers: list[tuple[Timer, int]] = []
    replica = ChainReplica(store, AUTHORITY, EngineConfig(), sent, lambda t, at: timers.append((t, at)))
    replica.start(int(time.time() * 1000))
    now = int(time.time() * 1000)
    good = sign_tx(
        CLIENT, "c1", "der_commitment", 1, now, {"interval": 1, "root": bytes(32), "readings": 1}
    ).raw
    replica.receive(TX, seal_envelope("c1", TX, CLIENT, encode_tx_batch([good, b"junk"])), now)
    replica.receive(TX, seal_envelope("c1", TX, STRANGER, encode_tx_batch([good])), now)
    replica.receive(TX, seal_envelope("c2", TX, CLIENT, encode_tx_batch([good])), now)
    replica.receive(CONSENSUS, seal_envelope("c1", TX, CLIENT, b""), now)
    replica.receive(CONSENSUS, b"\xff" * 64, now)
    replica.receive(CONSENSUS, seal_envelope("c1", CONSENSUS, CLIENT, b"not a consensus message"), now)
    stats = replica.status()["stats"]
    assert stats["tx_accepted"] == 1 and stats["tx_rejected"] == 1
    assert stats["dropped_unknown-sender"] == 1 and stats["dropped_wrong-chain"] == 1
    assert stats["dropped_malformed"] == 3  # wrong kind for the topic, garbage, and (by the engine) bad body
    # a single authority finalises alone: its own block carries the transaction
    for timer, at in sorted(timers, key=lambda t: t[1]):
        if timer.kind == "propose":
            replica.fire(timer, at)
    assert replica.app.head().height == 1 and replica.app.committed_txs == 1
    assert any(kind == "block" for _, kind, _, _ in sent.published)
    store.close()
    assert verify_store(BlockStore.open(tmp_path / "db")).ok


def test_file_wal_replaces_atomically(tmp_path: Path) -> None:
    wal = FileWal(tmp_path / "c.wal")
    assert wal.load() is None
    wal.save(b"one")
    wal.save(b"two")
    assert wal.load() == b"two" and not (tmp_path / "c.tmp").exists()


def test_mqtt_transport_drops_oversized_and_reconnects(mosquitto) -> None:
    got: list[tuple[str, str, bytes]] = []
    arrived = threading.Event()

    def deliver(chain: str, kind: str, payload: bytes) -> None:
        got.append((chain, kind, payload))
        arrived.set()

    transport = MqttTransport(
        mosquitto.host, mosquitto.port, "lab", AUTHORITY.public, ["c1"], deliver, max_payload=100
    )
    transport.start()
    try:
        assert transport.connected.wait(10)
        sender = mqtt.Client(CallbackAPIVersion.VERSION2)
        sender.connect(mosquitto.host, mosquitto.port)
        sender.loop_start()
        sender.publish(topic("lab", "c1", TX), b"x" * 500, qos=1).wait_for_publish(5)
        sender.publish(topic("lab", "c1", "sync", AUTHORITY.public), b"small", qos=1).wait_for_publish(5)
        assert arrived.wait(5)
        assert got == [("c1", "sync", b"small")]
        assert transport.stats["dropped_oversized"] == 1
        # one it would publish over the bound never leaves it (the broker's max_packet_size would disconnect
        # it, and paho would send it again after every reconnect); the next one still goes out
        transport.publish("c1", "sync", b"y" * 500, to=AUTHORITY.public)
        assert transport.stats["dropped_outgoing_oversized"] == 1 and transport.stats["published_sync"] == 0
        arrived.clear()
        transport.publish("c1", "sync", b"fits", to=AUTHORITY.public)
        assert arrived.wait(5) and got[-1] == ("c1", "sync", b"fits") and len(got) == 2
        sender.loop_stop()
        sender.disconnect()
        mosquitto.restart()
        deadline = time.monotonic() + 15
        while transport.stats["connects"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert transport.stats["connects"] >= 2 and transport.stats["disconnects"] >= 1
    finally:
        transport.stop()


def test_two_chains_side_by_side_in_one_process(tmp_path: Path, mosquitto) -> None:
    node = Node(AUTHORITY, tmp_path / "status.json")
    chains = ["mgmc-chain", "dso-chain"]
    transport = MqttTransport(mosquitto.host, mosquitto.port, "lab", AUTHORITY.public, chains, node.deliver)
    stores = [BlockStore.create(tmp_path / chain, genesis(chain)) for chain in chains]
    config = EngineConfig(block_period_ms=100, round_timeout_ms=1000)

    async def scenario() -> None:
        node.attach_loop()
        for chain, store in zip(chains, stores, strict=True):
            node.replicas[chain] = ChainReplica(
                store,
                AUTHORITY,
                config,
                transport,
                node.schedule_for(chain),
                FileWal(tmp_path / f"{chain}.wal"),
            )
        transport.start()
        stop = asyncio.Event()
        runner = asyncio.create_task(node.run(stop))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and min(r.app.head().height for r in node.replicas.values()) < 3:
            await asyncio.sleep(0.05)
        stop.set()
        await runner
        transport.stop()

    asyncio.run(scenario())
    status = json.loads((tmp_path / "status.json").read_text())
    assert set(status["chains"]) == set(chains)
    assert all(status["chains"][c]["height"] >= 3 for c in chains)
    assert status["chains"][chains[0]]["head"] != status["chains"][chains[1]]["head"]
    for store in stores:
        assert verify_store(store).ok
        store.close()


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_node_config_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "node.key"
    keys.write_keyfile(key_file, AUTHORITY)
    good_genesis = _write(tmp_path / "g.json", json.dumps(genesis("c1").to_json()))
    cases = {
        "unknown key 'colour'": f"key_file: {key_file}\ncolour: red\nchains: [{{genesis: {good_genesis}, data_dir: {tmp_path}/d}}]\n",
        "missing required key 'chains'": f"key_file: {key_file}\n",
        "no such key file": f"key_file: {tmp_path}/nope.key\nchains: [{{genesis: {good_genesis}, data_dir: {tmp_path}/d}}]\n",
        "cannot read genesis": f"key_file: {key_file}\nchains: [{{genesis: {tmp_path}/none.json, data_dir: {tmp_path}/d}}]\n",
        "block_period_ms": f"key_file: {key_file}\nchains: [{{genesis: {good_genesis}, data_dir: {tmp_path}/d, block_period_ms: 1}}]\n",
    }
    for expected, text in cases.items():
        config = _write(tmp_path / "node.yaml", text)
        with pytest.raises(SystemExit) as exit_info:
            node_main(["--config", str(config)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    other = BlockStore.create(tmp_path / "other", genesis("c2"))
    other.close()
    config = _write(
        tmp_path / "node.yaml",
        f"key_file: {key_file}\nchains: [{{genesis: {good_genesis}, data_dir: {tmp_path}/other}}]\n",
    )
    with pytest.raises(SystemExit):
        node_main(["--config", str(config)])
    assert "another chain" in capsys.readouterr().err
