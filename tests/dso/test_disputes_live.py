"""A real DSO node (`dso_node.DsoNode` with a `disputes` section) settles a disputed trade on a networked MGMC chain.

Over a real Mosquitto: one MGMC-chain authority (a ledger node of its own) seals the blocks; the DSO node
follows that chain as a non-voting replica and runs its DSO chain. Two MGs trade, state different energies
(disputed), and commit their PCC readings; the DSO gets the sealed leaves, finds the dispute in a final block
(its replica's on_commit), and its `settle` - gossiped to the authority's mempool - lands: the buyer pays the
energy both meters confirm, once, basis "dso"."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from peergrid_dso.dso_node import DsoNode
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_dso.sealed_readings import MeterClock
from peergrid_edge.commitments import commitment_body
from peergrid_ledger import query
from peergrid_ledger.consensus.node_cli import ChainSettings, NodeSettings, build_node
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair, write_keyfile
from peergrid_ledger.tx import sign_tx

from .test_disputes import PRICE, T, ramp, sealed_buckets

LONE = {"why": "one statement"}  # no decision yet reads as the lone one: wait on


def test_a_running_dso_node_settles_a_dispute_on_the_mgmc_chain(tmp_path: Path, mosquitto: Any) -> None:
    dso, authority = Keypair.generate(), Keypair.generate()
    anonyms = {mg: Keypair.generate() for mg in ("s", "b")}
    nodes = {mg: Keypair.generate() for mg in ("s", "b")}
    for name, key in (("dso", dso), ("authority", authority)):
        write_keyfile(tmp_path / f"{name}.key", key)
    now = int(time.time() * 1000) - 1000
    # interval T is a whole minute two to three minutes ago, so the MGs' readings of it are sealed in time
    start = (now - 120_000) // 60_000 * 60_000 - 60_000
    clock = MeterClock(t0_ms=start, interval_ms=60_000, first_interval=T, commit_ms=60_000, max_gap_ms=15_000)
    chain_clock = {"settle_epoch_ms": start - T * clock.interval_ms, "settle_interval_ms": clock.interval_ms}
    mgmc = Genesis(
        chain="mgmc-lab", time=now, authorities=(authority.public,),
        accounts=(Account(dso.public, ("dso",), "dso"),
                  *(Account(anonyms[mg].public, ("anonym",), balance=10**9) for mg in anonyms),
                  *(Account(nodes[mg].public, ("mgmc",), mg) for mg in nodes)),
        contracts=("market",), params=Params(settle_by_both=1, **chain_clock),
    )  # fmt: skip
    dso_chain = Genesis(chain="dso-lab", time=now, authorities=(dso.public,),
                        accounts=(Account(dso.public, ("dso",), "dso"),), params=Params())  # fmt: skip
    for name, genesis in (("mgmc", mgmc), ("dso", dso_chain)):
        (tmp_path / f"{name}-genesis.json").write_text(json.dumps(genesis.to_json()))

    def chain(name: str, where: str) -> dict[str, Any]:
        return {"genesis": str(tmp_path / f"{name}-genesis.json"), "data_dir": str(tmp_path / where),
                "block_period_ms": 200}  # fmt: skip

    settings = IntervalNodeSettings.model_validate({
        "key_file": str(tmp_path / "dso.key"), "feeder": "lab",
        "broker_host": mosquitto.host, "broker_port": mosquitto.port,
        "dso_chain": chain("dso", "dso-dso"), "mgmc_chain": chain("mgmc", "dso-mgmc"),
        "mgs": {mg: {"node": nodes[mg].public.hex(), "anonym": anonyms[mg].public.hex(), "bus": bus}
                for mg, bus in (("s", 18), ("b", 33))},
        "first_interval": T, "intervals": 1,
        "disputes": {"t0": clock.t0_ms / 1000, "interval_s": clock.interval_ms / 1000,
                     "commit_interval_s": clock.commit_ms / 1000, "max_gap_s": clock.max_gap_ms / 1000,
                     "record_file": str(tmp_path / "disputes.jsonl")},
    })  # fmt: skip

    async def run() -> dict[str, Any]:
        sealer, sealer_transport, sealer_stores = build_node(NodeSettings(
            key_file=tmp_path / "authority.key", feeder="lab", broker_host=mosquitto.host,
            broker_port=mosquitto.port, client_id="mgmc-authority",
            chains=[ChainSettings.model_validate(chain("mgmc", "authority"))],
        ))  # fmt: skip
        replica = sealer.replicas["mgmc-lab"]
        node = DsoNode.assemble(settings)
        assert (
            node.disputes is not None and node.disputes.on_commit in node.node.replicas["mgmc-lab"].on_commit
        )
        follower = node.node.replicas["mgmc-lab"]
        stop = asyncio.Event()
        sealer.attach_loop()
        sealer_transport.start()
        tasks = [asyncio.create_task(sealer.run(stop)), asyncio.create_task(node.run(stop))]

        async def until(what: Any, timeout: float = 20.0) -> None:
            deadline = time.monotonic() + timeout
            while not what():
                assert time.monotonic() < deadline, "timed out"
                await asyncio.sleep(0.05)

        async def land(key: Keypair, kind: str, body: dict[str, Any]) -> None:
            nonce = replica.app.next_nonce(key.public)
            tx = sign_tx(key, "mgmc-lab", kind, nonce, sealer.clock(), body)
            verdict = replica.submit(tx.raw, sealer.clock())
            assert type(verdict).__name__ == "Accepted", (kind, verdict)
            await until(lambda: replica.app.next_nonce(key.public) > nonce)

        try:
            await asyncio.sleep(0.5)  # the replicas start (a submit before would find no validators)
            s, b = anonyms["s"], anonyms["b"]
            await land(
                s, "offer", {"interval": T, "round": 1, "price": PRICE, "quantity": 500, "clean": True}
            )
            await land(
                b, "bid", {"interval": T, "round": 1, "demands": [{"seller": s.public, "quantity": 500}]}
            )
            await land(b, "trade", {"interval": T})
            [(tid, _)] = query.trades(replica.app.state, T)
            readings = {
                "s": sealed_buckets(ramp(480.0, export=True, window=clock.window(T))),
                "b": sealed_buckets(ramp(455.0, export=False, window=clock.window(T))),
            }
            for mg, buckets in readings.items():
                for bucket, leaves in sorted(buckets.items()):
                    await land(nodes[mg], "der_commitment", commitment_body(bucket, leaves))
            before = {mg: query.balance(replica.app.state, anonyms[mg].public) for mg in anonyms}
            await land(b, "settle", {"trade": tid, "delivered": 300})
            await land(s, "settle", {"trade": tid, "delivered": 500})  # disputed
            await until(lambda: (query.settlement(follower.app.state, tid) or {}).get("state") == "disputed")
            # its decision on the dispute, not the one it recorded while b's statement stood alone (the DSO
            # takes a lone word up at once and meters it from LONE_FROM: peergrid_ledger.takeup)
            await until(
                lambda: not str((node.disputes.decision(tid) or LONE).get("why")).startswith("one statement")
            )
            waiting = node.disputes.decision(tid)
            for mg, buckets in readings.items():  # what the MGMCs post to /api/dso/disputes/readings
                for bucket, leaves in buckets.items():
                    node.disputes.offer_readings(nodes[mg].public, bucket, leaves)
            await until(lambda: (query.settlement(replica.app.state, tid) or {}).get("state") == "settled")
            await until(lambda: (node.disputes.decision(tid) or {}).get("outcome") == "settled")
            await asyncio.sleep(1.0)  # more final blocks: nothing more is sent
            after = {mg: query.balance(replica.app.state, anonyms[mg].public) for mg in anonyms}
            return {"waiting": waiting, "settled": query.settlement(replica.app.state, tid),
                    "paid": {mg: after[mg] - before[mg] for mg in anonyms},
                    "dso_nonce": replica.app.next_nonce(dso.public), "decision": node.disputes.decision(tid)}  # fmt: skip
        finally:
            stop.set()
            for task in tasks:
                await asyncio.wait_for(task, 30)
            sealer_transport.stop()
            for store in sealer_stores:
                store.close()

    out = asyncio.run(run())
    assert out["waiting"]["outcome"] == "unresolved" and "not at the DSO" in out["waiting"]["why"]
    assert out["settled"]["settlement"]["basis"] == "dso" and out["settled"]["settlement"]["delivered"] == 455
    assert out["paid"] == {"s": 455 * PRICE, "b": -455 * PRICE}
    assert out["dso_nonce"] == 2  # the DSO sent one transaction on the MGMC chain: its settle
    assert out["decision"]["delivered"] == 455 and out["decision"]["txid"]
    lines = [json.loads(x) for x in (tmp_path / "disputes.jsonl").read_text().splitlines()]
    assert [d["outcome"] for d in lines][-1] == "settled"
