"""Revocation and operator records in the live system: `peergrid-dso serve` with a `loop:` section (the DSO
node in-process) and four MGMC replicas of both chains, over a real Mosquitto.

An operator revokes an MGMC from the console: `gov.revoke` of its key and anonym lands on the DSO chain and,
through the DSO's non-voting MGMC-chain replica, on the MGMC chain; from the next height the MGMC chain goes
on with three authorities, and what the revoked MGMC still sends is refused. Each chain's `operator_action`
names exactly the transactions the revocation caused there; a manual switch operation's record names
exactly its switching plan, steps and result.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from console.helpers import PASSWORD
from peergrid_dso.app import create_app
from peergrid_dso.config import DsoSettings
from peergrid_ledger import keys, query
from peergrid_ledger.consensus.app import Rejected
from peergrid_ledger.consensus.node_cli import ChainSettings, NodeSettings, build_node
from peergrid_ledger.consensus.transport import CONSENSUS, TX, encode_tx_batch, seal_envelope, topic
from peergrid_ledger.core import authorities_at
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.tx import sign_tx

FEEDER = "revlab"
BUSES = {"mg1": 18, "mg2": 22, "mg3": 25, "mg4": 33}
# heartbeat_ms: an idle chain makes a block every period, not every 2 s (the engine's default): the test waits
# for 3, 5 and 3 more blocks of idle chains, 16.8 s of its 17 at 2 s a block; 4.1 s with it (T11, load 8)
TIMING = {"block_period_ms": 150, "round_timeout_ms": 1000, "heartbeat_ms": 150}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Mgmcs:
    """The four MGMCs' ledger replicas (both chains, one MQTT connection each) on one event loop thread."""

    def __init__(self, nodes: list[Any]) -> None:
        self.nodes = nodes
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        self.stop = asyncio.Event()
        for node, transport, _ in self.nodes:
            node.attach_loop()
            transport.start()
        await asyncio.gather(*(node.run(self.stop) for node, _, _ in self.nodes))

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(15)
        for _, transport, stores in self.nodes:
            transport.stop()
            for store in stores:
                store.close()


@pytest.fixture
def live(tmp_path: Path, mosquitto: Any, users_file: Path) -> Iterator[dict[str, Any]]:
    dso = keys.Keypair.generate()
    mgmcs = {mg: keys.Keypair.generate() for mg in BUSES}
    anonyms = {mg: keys.Keypair.generate() for mg in BUSES}
    now = int(time.time() * 1000) - 1000
    mgmc_genesis = Genesis(
        chain=f"mgmc-{FEEDER}", time=now, authorities=tuple(k.public for k in mgmcs.values()),
        accounts=(Account(dso.public, ("dso",), "dso"), *(Account(k.public, ("mgmc",), mg) for mg, k in mgmcs.items()),
                  *(Account(k.public, ("anonym",), f"anonym-{mg}") for mg, k in anonyms.items())),
    )  # fmt: skip
    dso_genesis = Genesis(
        chain=f"dso-{FEEDER}", time=now, authorities=(dso.public, *(k.public for k in mgmcs.values())),
        accounts=(Account(dso.public, ("dso",), "dso"), *(Account(k.public, ("mgmc",), mg) for mg, k in mgmcs.items())),
    )  # fmt: skip
    for name, genesis in (("mgmc", mgmc_genesis), ("dso", dso_genesis)):
        (tmp_path / f"{name}-genesis.json").write_text(json.dumps(genesis.to_json()))
    nodes = []
    for mg, key in mgmcs.items():
        keys.write_keyfile(tmp_path / f"{mg}.key", key)
        chains = [
            ChainSettings(genesis=tmp_path / f"{c}-genesis.json", data_dir=tmp_path / mg / c, **TIMING)
            for c in ("dso", "mgmc")
        ]
        nodes.append(build_node(NodeSettings(key_file=tmp_path / f"{mg}.key", feeder=FEEDER, chains=chains,
                                             broker_host=mosquitto.host, broker_port=mosquitto.port)))  # fmt: skip
    replicas = Mgmcs(nodes)
    replicas.thread.start()
    keys.write_keyfile(tmp_path / "dso.key", dso)
    loop = {
        "key_file": str(tmp_path / "dso.key"),
        "dso_chain": {"genesis": str(tmp_path / "dso-genesis.json"), "data_dir": str(tmp_path / "dso" / "dso"),
                      **TIMING},
        "mgmc_chain": {"genesis": str(tmp_path / "mgmc-genesis.json"),
                       "data_dir": str(tmp_path / "dso" / "mgmc"), **TIMING},
        "mgs": {mg: {"node": mgmcs[mg].public.hex(), "anonym": anonyms[mg].public.hex(), "bus": bus}
                for mg, bus in BUSES.items()},
        "intervals": 1,
    }  # fmt: skip
    settings = DsoSettings.model_validate(
        {
            "feeder": FEEDER,
            "broker": {"host": mosquitto.host, "port": mosquitto.port},
            "console": {"users_file": str(users_file), "lab_market": False, "lab_drift": False},
            "loop": loop,
        }
    )
    try:
        with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:
            yield {"client": client, "mgmcs": mgmcs, "anonyms": anonyms, "replicas": replicas,
                   "chains": (dso_genesis.chain, mgmc_genesis.chain)}  # fmt: skip
    finally:
        replicas.close()


def chain_txs(store: Any, kind: str) -> list[Any]:
    return [tx for h in range(1, store.head_height() + 1) for tx in store.block(h).txs if tx.kind == kind]


def test_an_operator_revokes_an_mgmc_on_both_chains_and_each_record_names_what_it_caused(
    live: dict[str, Any],
) -> None:
    client, embedded = live["client"], live["client"].app.state.loop
    _, mgmc_id = live["chains"]
    victim, victim_anonym = live["mgmcs"]["mg4"], live["anonyms"]["mg4"]
    dso_store, mgmc_store = embedded.replica("dso").store, embedded.replica("mgmc").store

    def enrolled() -> bool:  # the loop enrols every MG's anonym on the DSO chain when it starts
        state = embedded.replica("dso").app.state
        return all(
            embedded.call(lambda a=a: query.account(state, a.public)) for a in live["anonyms"].values()
        )

    wait_for("the loop's enrolments", enrolled)
    wait_for("the DSO's MGMC-chain replica following", lambda: mgmc_store.head_height() >= 3)
    r = client.post("/console/api/login", json={"username": "olga", "password": PASSWORD})
    csrf = {"X-CSRF-Token": r.json()["csrf"]}
    queue = {e["label"]: e["status"] for e in client.get("/console/api/operations").json()["enrolment"]}
    assert queue == dict.fromkeys(BUSES, "authorised")

    r = client.post(f"/console/api/enrolment/{victim.public.hex()}/revoke", headers=csrf)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "revoked"

    # each chain: two gov.revoke (identity key and anonym) by olga, and an operator_action naming exactly them
    for store, entry in ((dso_store, done["chain"]), (mgmc_store, done["chain"]["mgmc_chain"])):
        revokes = chain_txs(store, "gov.revoke")
        assert {tx.body["key"] for tx in revokes} == {victim.public, victim_anonym.public}
        assert {tx.body["operator"] for tx in revokes} == {"olga"}
        (action,) = chain_txs(store, "operator_action")
        assert action.body["operator"] == "olga" and "revoke" in action.body["action"]
        assert sorted(action.body["txs"]) == sorted(tx.txid for tx in revokes)
        assert sorted(entry["txids"]) == sorted(tx.txid.hex() for tx in revokes)

    # the MGMC chain goes on with three authorities from the height after the revocation
    revoked_at = max(mgmc_store.locate_tx(tx.txid)[0] for tx in chain_txs(mgmc_store, "gov.revoke"))
    wait_for("MGMC-chain blocks after the revocation", lambda: mgmc_store.head_height() >= revoked_at + 5)
    state = embedded.replica("mgmc").app.state
    after = embedded.call(lambda: authorities_at(state, revoked_at + 1))
    assert victim.public not in after and len(after) == 3
    for h in range(revoked_at + 2, revoked_at + 6):
        signers = {signer for signer, _ in mgmc_store.certificate(h).votes}
        assert victim.public not in signers and len(signers) >= 3

    # what the revoked MGMC still sends is refused: its own replica refuses its transactions, the others drop
    # its envelopes (gossip and votes) and refuse its transactions relayed by an honest peer
    replicas = live["replicas"]
    victim_node = next(node for node, _, _ in replicas.nodes if node.keypair.public == victim.public)
    honest = [node for node, _, _ in replicas.nodes if node is not victim_node]
    body = {"interval": 1, "injection": 1000, "revision": 0}
    tx = sign_tx(victim, mgmc_id, "equivalent_injection", 1, int(time.time() * 1000), body)
    verdict = replicas.call(lambda: victim_node.replicas[mgmc_id].submit(tx.raw, victim_node.clock()))
    assert isinstance(verdict, Rejected) and verdict.reason == "sender revoked"
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rogue")
    publisher.connect(client.app.state.settings.broker.host, client.app.state.settings.broker.port)
    publisher.loop_start()
    try:
        for kind, sender, data in (
            (TX, victim, encode_tx_batch([tx.raw])),
            (CONSENSUS, victim, b"a vote from a revoked key"),
            (TX, honest[0].keypair, encode_tx_batch([tx.raw])),  # relayed by an honest MGMC
        ):
            envelope = seal_envelope(mgmc_id, kind, sender, data)
            publisher.publish(topic(FEEDER, mgmc_id, kind), envelope, qos=1).wait_for_publish(5)
    finally:
        publisher.loop_stop()
        publisher.disconnect()

    def refused(counter: str) -> bool:
        return all(replicas.call(lambda n=n: n.replicas[mgmc_id].stats[counter]) > 0 for n in honest[1:])

    wait_for("the revoked MGMC's envelopes refused", lambda: refused("dropped_revoked"), 10)
    wait_for("its relayed transaction refused", lambda: refused("tx_refused_revoked"), 10)
    head = mgmc_store.head_height()
    wait_for("the MGMC chain still going", lambda: mgmc_store.head_height() >= head + 3)
    assert embedded.running


def test_a_manual_switch_in_the_live_node_names_exactly_its_plan_steps_and_result(
    live: dict[str, Any],
) -> None:
    """Through `Operations` on this thread, after a DSO-chain transaction this thread left unsealed (an
    earlier action that failed half-way): the operator_action names the switching records only."""
    embedded = live["client"].app.state.loop
    dso_store = embedded.replica("dso").store
    ops = live["client"].app.state.console.ops
    left_over = ops.dso.recorder.submit(
        "operator_action", {"operator": "olga", "action": "left over", "txs": []}
    )
    assert [tx.txid for tx in ops.dso.chain.pending] == [left_over.txid]
    preview = ops.preview_switch("olga", 33, True)
    done = ops.operate_switch("olga", 33, True, preview["confirm"])
    assert done["ok"], done
    (entry,) = done["chain"]
    caused = [
        tx for kind in ("switching_plan", "switching_step", "switching_result") for tx in chain_txs(dso_store, kind)
        if tx.body["plan"] == done["plan"]
    ]  # fmt: skip
    assert len(caused) == 3  # plan, one step, result
    (action,) = [
        tx for tx in chain_txs(dso_store, "operator_action") if tx.body["action"] == "close branch 33"
    ]
    assert action.body["operator"] == "olga" and sorted(action.body["txs"]) == sorted(
        tx.txid for tx in caused
    )
    assert sorted(entry["txids"]) == sorted(tx.txid.hex() for tx in caused)
    assert entry["height"] == dso_store.locate_tx(action.txid)[0]
    assert "mgmc_chain" not in entry  # a switch writes nothing on the MGMC chain
    assert ops.audit[-1]["record"] == action.txid.hex() and ops.dso.chain.pending == []
