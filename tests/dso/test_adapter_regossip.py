"""A DSO transaction whose only gossip was lost still lands: the DSO's replica gossips what the `ChainAdapter`
submitted to it again (`consensus.regossip`, its defaults: 2 s doubling to 16 s) until it is in a block, and
the adapter learns that from the chain, never by assuming. The adapter has no re-gossip of its own any more
(it kept a second schedule until every replica re-gossiped): this test is what shows it was redundant.

Over a real Mosquitto, two in-process ledger nodes, each with its own MQTT connection: the MGMC chain's only
authority (the proposer) and the DSO's non-voting follower (as in `dso_node.DsoNode`). The DSO sends while the
authority is not yet subscribed, so the broker drops its one publish (what D6 feared: a replica starting
late, or a broker blip). Before, the transaction stayed in the DSO's pool until `tx_max_age` and held every
later transaction of the key behind it; the waiting submit timed out.

- sent before the proposer subscribed: it lands, and the waiting submit says so, without anyone asking again;
- a transaction of the same key and nonce that the proposer took instead (another process's, e.g. before a
  restart) is reported as not landed, naming the nonce, not as landed because the nonce was used.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from peergrid_dso.node_chains import ChainAdapter, Changed
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.mqtt_transport import MqttTransport
from peergrid_ledger.consensus.node import ChainReplica, Node, wall_ms
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import sign_tx

CHAIN = "mgmc"


class Net:
    """The authority and the DSO's follower on one broker; neither connected until told."""

    def __init__(self, tmp_path: Path, broker: Any) -> None:
        self.authority, self.dso = Keypair.generate(), Keypair.generate()
        genesis = Genesis(
            chain=CHAIN, time=wall_ms() - 1000, authorities=(self.authority.public,),
            accounts=(Account(self.dso.public, ("dso",)),),
        )  # fmt: skip
        self.nodes: dict[str, tuple[Node, MqttTransport, BlockStore]] = {}
        for name, key in (("authority", self.authority), ("dso", self.dso)):
            node = Node(key)
            transport = MqttTransport(broker.host, broker.port, "lab", key.public, [CHAIN], node.deliver,
                                      client_id=f"{name}-{tmp_path.name}")  # fmt: skip
            store = BlockStore.create(tmp_path / name, genesis)
            node.replicas[CHAIN] = ChainReplica(
                store, key, EngineConfig(block_period_ms=200), transport, node.schedule_for(CHAIN)
            )
            self.nodes[name] = (node, transport, store)
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.changed = Changed()
        self.replica("dso").on_commit.append(self.changed.fire)

    def replica(self, name: str) -> ChainReplica:
        return self.nodes[name][0].replicas[CHAIN]

    def store(self, name: str) -> BlockStore:
        return self.nodes[name][2]

    async def up(self, name: str) -> None:
        node, transport, _ = self.nodes[name]
        node.attach_loop()
        transport.start()
        assert await asyncio.to_thread(transport.connected.wait, 20), name
        await asyncio.sleep(0.2)  # its subscriptions acknowledged
        self.tasks.append(asyncio.create_task(node.run(self.stop)))

    async def down(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 20)
        for _node, transport, store in self.nodes.values():
            transport.stop()
            store.close()


def action(text: str) -> dict[str, Any]:
    return {"operator": "olga", "action": text, "txs": []}


def test_a_transaction_whose_first_gossip_was_lost_still_lands(tmp_path: Path, mosquitto: Any) -> None:
    async def run() -> tuple[Any, Net]:
        net = Net(tmp_path, mosquitto)
        await net.up("dso")  # the follower only: nobody else is subscribed, the publish is dropped
        adapter = ChainAdapter(net.nodes["dso"][0], CHAIN, asyncio.get_running_loop(), net.changed)
        try:
            waiting = asyncio.create_task(
                adapter.submit(net.dso, "operator_action", action("switch 7"), timeout=30)
            )
            await asyncio.sleep(1.0)
            assert net.replica("dso").transport.stats["published_tx"] >= 1  # type: ignore[attr-defined]
            assert not waiting.done()
            await net.up("authority")  # subscribed now; the first publish is gone for good
            result = await waiting
            return result, net
        finally:
            await net.down()

    result, net = asyncio.run(run())
    assert result.ok, result  # (before: "timeout" after 30 s, the transaction pending until tx_max_age)
    assert net.replica("authority").stats["tx_accepted"] >= 1  # it reached the proposer by the gossip again
    assert net.replica("dso").stats["tx_regossiped"] >= 1  # the replica's re-gossip: the adapter has none
    for name in ("dso", "authority"):
        found = BlockStore.open(tmp_path / name)
        assert found.locate_tx(result.txid) is not None, name  # in a final block on both replicas
        found.close()


def test_a_nonce_another_transaction_used_is_not_reported_landed(tmp_path: Path, mosquitto: Any) -> None:
    async def run() -> tuple[Any, bytes, Net]:
        net = Net(tmp_path, mosquitto)
        await net.up("dso")
        adapter = ChainAdapter(net.nodes["dso"][0], CHAIN, asyncio.get_running_loop(), net.changed)
        try:
            nonce = net.replica("dso").app.next_nonce(net.dso.public)
            waiting = asyncio.create_task(
                adapter.submit(net.dso, "operator_action", action("ours"), timeout=30)
            )
            await asyncio.sleep(0.5)
            # the proposer holds another transaction of the DSO's key with that nonce (another process's)
            other = sign_tx(net.dso, CHAIN, "operator_action", nonce, wall_ms(), action("another process's"))
            assert type(net.replica("authority").submit(other.raw, wall_ms())).__name__ == "Accepted"
            await net.up("authority")
            return await waiting, other.txid, net
        finally:
            await net.down()

    result, other, _net = asyncio.run(run())
    assert not result.ok and result.reason == "refused", result  # (before: ok, the nonce being used)
    assert "was used by another transaction" in result.detail, result
    found = BlockStore.open(tmp_path / "dso")
    assert found.locate_tx(other) is not None and found.locate_tx(result.txid) is None
    found.close()
