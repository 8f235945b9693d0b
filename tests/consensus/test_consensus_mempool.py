"""Transactions never sit in a mempool for good: what the chain refuses leaves every replica's pool with its
reason (also on a replica that never proposes), what it takes lands, an idle chain takes a new transaction
within a block period, and the submitter learns why its transaction was refused.

Real replicas (`ChainReplica` over LevelDB) on the seeded in-memory network (`LedgerNet`).
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

from peergrid_ledger import keys
from peergrid_ledger.consensus.app import Accepted
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.ledger_net import CONFIG, LedgerNet
from peergrid_ledger.consensus.mempool import STRIKES, Mempool, TxMeta
from peergrid_ledger.consensus.transport import TX, encode_tx_batch, seal_envelope
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.tx import sign_tx
from peergrid_ledger.verify import verify_store

T0 = 1_767_225_600_000
CHAIN = "mempool-chain"
IDLE = EngineConfig(
    block_period_ms=100, round_timeout_ms=1000, max_future_drift_ms=5000, sync_batch=16, heartbeat_ms=1000
)


def key(name: str) -> keys.Keypair:
    return keys.Keypair.from_seed(hashlib.sha256(b"mempool/" + name.encode()).digest())


AUTHORITIES = [key(f"authority-{i}") for i in range(4)]
OBSERVER, CLIENT = key("observer"), key("client")


def genesis() -> Genesis:
    return Genesis(
        chain=CHAIN,
        time=T0,
        authorities=tuple(k.public for k in AUTHORITIES),
        accounts=(
            Account(CLIENT.public, ("anonym",), "client"),
            Account(OBSERVER.public, ("anonym",), "observer"),
        ),
    )


def injection(revision: int) -> dict[str, int]:
    return {"interval": 1, "injection": 500, "revision": revision}


def test_a_transaction_the_chain_refuses_leaves_every_pool_with_its_reason_also_an_observers(
    tmp_path: Path,
) -> None:
    """Seen at 30 MGs: a transaction the contract refuses (here an injection whose revision does not increase,
    like two MGs racing to record the same thing) was dropped only by the proposer that tried it; every other
    pool kept it until its own turn to propose, and a replica that never proposes (the DSO's MGMC-chain
    follower; here an observer) kept it for good."""
    net = LedgerNet(tmp_path, genesis(), [*AUTHORITIES, OBSERVER], seed=3, config=CONFIG)
    first, verdict = net.submit("n1", CLIENT, "equivalent_injection", injection(0))
    assert isinstance(verdict, Accepted)
    net.run(600)
    assert net.replicas["n0"].store.locate_tx(first) is not None
    again, verdict = net.submit("n2", CLIENT, "equivalent_injection", injection(0))  # same revision: refused
    assert isinstance(verdict, Accepted)  # the mempool cannot know; the contract can
    net.run(40)
    assert again in net.replicas["n4"].app.mempool  # gossiped to the observer
    net.run(1500)
    for name, replica in net.replicas.items():
        assert len(replica.app.mempool) == 0, name
        assert replica.store.locate_tx(again) is None
        assert "revision must increase" in (replica.refusal(again) or ""), name
    assert net.replicas["n4"].status()["mempool_evicted"] == 1  # the observer too
    nonce = net.replicas["n2"].app.next_nonce(CLIENT.public)  # the refused one's nonce, signed again: lands
    good = sign_tx(CLIENT, CHAIN, "equivalent_injection", nonce, net.now, injection(1))
    assert isinstance(net.replicas["n2"].submit(good.raw, net.now), Accepted)
    net.run(600)
    assert all(r.store.locate_tx(good.txid) is not None for r in net.replicas.values())
    assert all(verify_store(r.store).ok for r in net.replicas.values())


def test_an_idle_chain_takes_a_new_transaction_within_one_period_and_makes_no_empty_blocks(
    tmp_path: Path,
) -> None:
    net = LedgerNet(tmp_path, genesis(), AUTHORITIES, seed=5, config=IDLE)
    net.run(4500)
    height = net.replicas["n0"].app.tip.height
    assert 3 <= height <= 5  # heartbeats, not a block every 100 ms
    stamps = [net.replicas["n0"].store.header(h).time for h in range(1, height + 1)]
    assert all(b - a >= IDLE.heartbeat_ms for a, b in itertools.pairwise(stamps)), stamps
    net.run(300)  # mid-way between two heartbeats
    txid, _ = net.submit("n3", CLIENT, "equivalent_injection", injection(0))
    submitted = net.sim.now
    while net.replicas["n3"].store.locate_tx(txid) is None and net.sim.now < submitted + 3000:
        net.run(5, step_ms=5)
    assert net.sim.now - submitted <= IDLE.block_period_ms
    net.run(200)
    assert all(r.store.locate_tx(txid) is not None for r in net.replicas.values())


def test_recheck_needs_two_refusals_running_and_remembers_a_bounded_number_of_reasons() -> None:
    nonces: dict[bytes, int] = {}
    pool = Mempool(
        lambda tx: TxMeta(hashlib.sha256(tx).digest(), tx[:1], int(tx[1:])), lambda s: nonces.get(s, 0)
    )
    for i in range(3):
        assert isinstance(pool.add(b"a%d" % i, 0), Accepted)
    pool.add(b"b0", 0)
    refuse = {b"a0", b"b0"}

    def judge(tx: bytes, is_next: bool) -> object:
        from peergrid_ledger.consensus.app import Rejected

        return Rejected("refused") if tx in refuse and is_next else None

    assert pool.recheck(judge) == []  # one refusal: another pending tx ordered first may cure it
    refuse.discard(b"b0")  # it was cured
    assert pool.recheck(judge) == [(hashlib.sha256(b"a0").digest(), "refused")]
    assert STRIKES == 2 and len(pool) == 3  # a1, a2 wait behind the evicted nonce; b0 stays
    assert pool.refusal(hashlib.sha256(b"a0").digest()) == "refused"
    for i in range(pool.limits.refusals_kept + 10):
        pool.refuse(b"%d" % i, "x")
    assert len(pool._refused) == pool.limits.refusals_kept


def test_our_own_gossip_echoed_by_the_broker_is_no_refusal(tmp_path: Path) -> None:
    net = LedgerNet(tmp_path, genesis(), AUTHORITIES, seed=2)
    replica = net.replicas["n0"]
    tx = sign_tx(AUTHORITIES[0], CHAIN, "equivalent_injection", 1, net.now, injection(0))
    assert isinstance(replica.submit(tx.raw, net.now), Accepted)
    echo = seal_envelope(CHAIN, TX, AUTHORITIES[0], encode_tx_batch([tx.raw]))
    replica.receive(TX, echo, net.now)  # what the broker sends back to its publisher
    stats = net.stats("n0")
    assert stats["own_echo"] == 1 and stats.get("tx_rejected", 0) == 0
