"""Revoking an authority mid-run (deterministic, seeded in-memory networks): the chain continues with the
smaller set and its quorum, what the revoked key still sends is refused and counted, honest replicas agree.

Two levels: the simulation's toy chain (the engine alone: votes and proposals of a removed authority that
carries on are refused as `refused_revoked`), and real ledger replicas (`ChainReplica` over LevelDB) where the
DSO's `gov.revoke` makes every replica refuse the key's envelopes, transactions and votes.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from peergrid_ledger import keys
from peergrid_ledger.consensus.app import Rejected
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.ledger_net import LedgerNet
from peergrid_ledger.consensus.messages import quorum
from peergrid_ledger.consensus.simnet import LinkModel
from peergrid_ledger.consensus.simulation import Scenario, Simulation
from peergrid_ledger.consensus.transport import TX, encode_tx_batch, seal_envelope
from peergrid_ledger.core import authorities_at
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.tx import sign_tx
from peergrid_ledger.verify import verify_store

T0 = 1_767_225_600_000


def key(name: str) -> keys.Keypair:
    return keys.Keypair.from_seed(hashlib.sha256(b"revocation/" + name.encode()).digest())


def scenario(seed: int, n: int, byzantine: dict[int, str], victim: int, at_ms: int = 3000) -> Scenario:
    return Scenario(
        seed=seed,
        authorities=n,
        observers=0,
        byzantine=byzantine,
        chaos_link=LinkModel(1, 40, 0.0, 0.05),
        partitions=[],
        crashes=[],
        governance=[(at_ms, "remove", victim)],
        real_crypto=False,
        chaos_ms=6000,
        calm_ms=8000,
        config=EngineConfig(
            block_period_ms=300, round_timeout_ms=1000, max_backoff_exponent=3, sync_batch=16
        ),
        stale={victim},
    )


def test_a_revoked_authority_that_carries_on_is_refused_and_the_chain_continues() -> None:
    sim = Simulation(scenario(seed=11, n=4, byzantine={}, victim=3))
    report = sim.run()
    assert report.ok, report.violations  # safety, validity (from genesis) and liveness of the honest three
    rogue = sim.nodes["node3"]
    honest = [sim.nodes[name] for name in sim.honest if name != "node4"]  # node4: the spare, not in the set
    assert len({node.app.head().block_hash for node in honest}) <= 2  # at most one block apart at the end
    heights = {node.app.head().height for node in honest}
    assert min(heights) >= 15
    (effective,) = {start for start, _ in honest[0].app._state.history if start > 1}
    assert rogue.key.public not in honest[0].app.validators(effective)
    for node in honest:
        stats = node.engine.stats
        assert stats["refused_revoked"] > 0, stats
        assert stats["refused_revoked_prepare"] + stats["refused_revoked_commit"] > 0
        assert stats["refused_revoked_propose"] + stats["refused_revoked_round-change"] > 0
    assert rogue.engine.stats["committed"] >= 0  # it ran all along (it is simply ignored)


def test_quorum_follows_the_new_set_with_a_faulty_authority_left() -> None:
    """n = 5 (f = 1) with one silent authority; revoking another leaves n = 4, still f = 1, quorum 3: the
    three honest ones go on finalising without the revoked and the silent one."""
    sim = Simulation(scenario(seed=12, n=5, byzantine={0: "silent"}, victim=4))
    report = sim.run()
    assert report.ok, report.violations
    first = sim.nodes["node1"]
    (effective,) = {start for start, _ in first.app._state.history if start > 1}
    assert len(first.app.validators(effective)) == 4 and quorum(4) == 3
    assert first.app.head().height >= effective + 10
    for height in range(effective, first.app.head().height + 1):
        seals = {signer for signer, _ in first.store.certificates[height - 1].seals}
        assert len(seals) >= 3 and sim.nodes["node4"].key.public not in seals
        assert sim.nodes["node0"].key.public not in seals  # silent all along


# ------------------------------------------------------------------------------------------ real replicas

DSO = key("dso")
MGMCS = [key(f"mgmc-{i}") for i in range(3)]


def dso_chain_genesis() -> Genesis:
    """As in the closed loop: the DSO and every MGMC are authorities of the DSO chain."""
    return Genesis(
        chain="dso-revocation",
        time=T0,
        authorities=(DSO.public, *(m.public for m in MGMCS)),
        accounts=(Account(DSO.public, ("dso",), "dso"), *(Account(m.public, ("mgmc",), f"mg{i}") for i, m in
                  enumerate(MGMCS))),
        contracts=(),
    )  # fmt: skip


def test_ledger_replicas_refuse_a_revoked_mgmc_from_the_next_height(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="peergrid_ledger.node")
    revoked = MGMCS[2]
    net = LedgerNet(tmp_path, dso_chain_genesis(), [DSO, *MGMCS], seed=5, stale=[3])
    honest = ["n0", "n1", "n2"]
    net.run(1500)
    assert min(net.replicas[n].app.tip.height for n in honest) >= 3
    txid, verdict = net.submit("n0", DSO, "gov.revoke", {"key": revoked.public, "operator": "alice"})
    net.run(1500)
    where = net.replicas["n0"].store.locate_tx(txid)
    assert where is not None, verdict
    height = where[0]
    for name in honest:
        state = net.replicas[name].app.state
        assert revoked.public in authorities_at(state, height)
        assert revoked.public not in authorities_at(state, height + 1)
        assert len(net.replicas[name].engine.s.validators) == 3
    # the revoked MGMC's transactions are refused everywhere: by its own replica, by a peer's mempool, and
    # when an honest peer relays one (the envelope is fine, the transaction inside is not)
    body = {"interval": 1, "injection": 1000, "revision": 0}
    _, at_home = net.submit("n3", revoked, "equivalent_injection", body)
    assert isinstance(at_home, Rejected) and at_home.reason == "sender revoked"
    direct = sign_tx(revoked, net.genesis.chain, "equivalent_injection", 1, net.now, body)
    verdict = net.replicas["n1"].submit(direct.raw, net.now)
    assert isinstance(verdict, Rejected) and verdict.reason == "sender revoked"
    relayed = seal_envelope(net.genesis.chain, TX, DSO, encode_tx_batch([direct.raw]))
    net.replicas["n2"].receive(TX, relayed, net.now)
    assert net.stats("n2")["tx_refused_revoked"] == 1
    net.run(2500)
    top = min(net.replicas[n].app.tip.height for n in honest)
    assert top >= height + 5
    assert len({net.replicas[n].store.block(top).hash for n in honest}) == 1  # honest replicas agree
    for name in honest:
        stats = net.stats(name)
        assert stats["dropped_revoked"] > 0, stats  # its votes, proposals and gossip, from that height on
        replica = net.replicas[name]
        for h in range(height + 1, top + 1):
            seals = {signer for signer, _ in replica.store.certificate(h).votes}
            assert revoked.public not in seals and len(seals) >= quorum(3)
        assert verify_store(replica.store).ok
    assert "dropped_revoked refused" in caplog.text and "tx_refused_revoked refused" in caplog.text
