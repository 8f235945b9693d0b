"""Over a real Mosquitto: a transaction whose one publish was lost (sent before the proposer subscribed) still
lands, because the replica that took it gossips it again (`ChainReplica`, `regossip.Regossip`) — for every
embedder, not only the DSO's adapter. Before, it sat in the sender's pool until `tx_max_age` (600 s).

Two in-process ledger nodes, each with its own MQTT connection: the chain's only authority, and a follower
that submits the transaction before the authority is connected at all.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.mqtt_transport import MqttTransport
from peergrid_ledger.consensus.node import ChainReplica, Node, wall_ms
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import sign_tx

CHAIN = "mgmc"


def test_a_publish_lost_before_the_proposer_subscribed_still_lands(tmp_path: Path, mosquitto: Any) -> None:
    authority, follower = Keypair.generate(), Keypair.generate()
    genesis = Genesis(
        chain=CHAIN, time=wall_ms() - 1000, authorities=(authority.public,),
        accounts=(Account(follower.public, ("dso",)),),
    )  # fmt: skip
    nodes: dict[str, tuple[Node, MqttTransport, BlockStore]] = {}
    for name, key in (("authority", authority), ("follower", follower)):
        node = Node(key)
        transport = MqttTransport(mosquitto.host, mosquitto.port, "lab", key.public, [CHAIN], node.deliver,
                                  client_id=f"{name}-{tmp_path.name}")  # fmt: skip
        store = BlockStore.create(tmp_path / name, genesis)
        node.replicas[CHAIN] = ChainReplica(
            store, key, EngineConfig(block_period_ms=200), transport, node.schedule_for(CHAIN),
            regossip_ms=(500, 2_000),
        )  # fmt: skip
        nodes[name] = (node, transport, store)
    sender = nodes["follower"][0].replicas[CHAIN]
    proposer = nodes["authority"][0].replicas[CHAIN]
    body = {"operator": "olga", "action": "switch 7", "txs": []}
    tx = sign_tx(follower, CHAIN, "operator_action", sender.app.next_nonce(follower.public), wall_ms(), body)

    async def run() -> None:
        stop, tasks = asyncio.Event(), []

        async def up(name: str) -> None:
            node, transport, _ = nodes[name]
            node.attach_loop()
            transport.start()
            assert await asyncio.to_thread(transport.connected.wait, 20), name
            await asyncio.sleep(0.2)  # its subscriptions acknowledged
            tasks.append(asyncio.create_task(node.run(stop)))

        try:
            await up("follower")
            assert type(sender.submit(tx.raw, wall_ms())).__name__ == "Accepted"
            await asyncio.sleep(0.3)  # flushed by the node's tick: published, and nobody else subscribed
            assert sender.transport.stats["published_tx"] == 1  # type: ignore[attr-defined]
            await up("authority")  # subscribed now; the first publish is gone for good
            for _ in range(150):  # at most 30 s (back-off 0.5, 1, 2, 2 ... s)
                if sender.store.locate_tx(tx.txid) is not None:
                    break
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
            for _node, transport, _store in nodes.values():
                transport.stop()

    asyncio.run(run())
    landed = {name: store.locate_tx(tx.txid) is not None for name, (_n, _t, store) in nodes.items()}
    regossiped = sender.stats["tx_regossiped"]
    for _node, _transport, store in nodes.values():
        store.close()
    assert landed == {"authority": True, "follower": True}, (landed, regossiped)  # (before: pending)
    assert regossiped >= 1
    assert proposer.stats["tx_accepted"] == 1  # it reached the proposer only by the gossip again
    assert tx.txid not in sender.app.mempool  # landed: never gossiped again
    assert sender.regossip.due(wall_ms() + 60_000, sender.app.mempool.__contains__) == []
