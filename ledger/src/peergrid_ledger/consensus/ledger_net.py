"""Real ledger replicas (`ChainReplica`: signed envelopes, mempool, engine, LevelDB store) over the seeded
in-memory network, for deterministic tests of the whole replica path (governance, revocation, bad input).

Promises: the same seed and calls give the same run; every envelope a replica publishes goes through
`SimNetwork` (delay, loss, partitions) to the others' `ChainReplica.receive`, so envelope checks, mempool
checks and the engine all run as in a daemon; virtual time is `genesis.time + 1000 + net.now` ms, and a
replica's clock that plus its `skew` (review23 F1). A replica can be made `stale`: it ignores governance and
keeps the genesis authority set (a revoked MGMC that goes on voting), so tests can check that what it sends
is refused. Used by tests and tools; never by a daemon.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..genesis import Genesis
from ..keys import Keypair
from ..results import Accepted as LedgerAccepted
from ..results import Reason
from ..results import Rejected as LedgerRejected
from ..store import BlockStore
from ..tx import sign_tx
from .actions import Committed, Timer
from .app import Accepted, Rejected
from .engine import EngineConfig
from .node import ChainReplica
from .simnet import LinkModel, SimNetwork

CONFIG = EngineConfig(block_period_ms=100, round_timeout_ms=1000, max_future_drift_ms=5000, sync_batch=16)


def _genesis_set(genesis: Genesis) -> Callable[[int], Sequence[bytes]]:
    frozen = sorted(genesis.authorities)

    def validators(height: int) -> Sequence[bytes]:
        return frozen

    return validators


class _NetTransport:
    def __init__(self, net: LedgerNet, name: str) -> None:
        self.net, self.name = net, name

    def publish(self, chain: str, kind: str, data: bytes, to: bytes | None = None) -> None:
        sim = self.net.sim
        if to is None:
            sim.broadcast(self.name, kind, data)
        elif to in self.net.by_key:
            sim.send(self.name, self.net.by_key[to], kind, data)


class LedgerNet:
    def __init__(
        self,
        root: Path,
        genesis: Genesis,
        node_keys: Sequence[Keypair],
        seed: int = 0,
        config: EngineConfig = CONFIG,
        link: LinkModel | None = None,
        stale: Sequence[int] = (),
        skew: Mapping[str, int] | None = None,
    ) -> None:
        self.genesis = genesis
        self.skew = dict(skew or {})
        """Replica name -> how far its clock runs ahead of the net's (ms; negative: behind)."""
        self.sim = SimNetwork(random.Random(seed))
        self.sim.link = link or LinkModel(2, 20)
        self.names = [f"n{i}" for i in range(len(node_keys))]
        self.by_key = {k.public: name for k, name in zip(node_keys, self.names, strict=True)}
        self.committed: dict[str, list[Committed]] = {name: [] for name in self.names}
        self.replicas: dict[str, ChainReplica] = {}
        self._nonces: dict[bytes, int] = {}
        for i, (name, keypair) in enumerate(zip(self.names, node_keys, strict=True)):
            store = BlockStore.create(root / name, genesis)
            replica = ChainReplica(
                store,
                keypair,
                config,
                _NetTransport(self, name),
                partial(self._schedule, name),
                clock=partial(self.now_of, name),
            )
            if i in stale:
                replica.app.validators = _genesis_set(genesis)  # type: ignore[method-assign, assignment]
            replica.on_commit.append(self.committed[name].append)
            self.replicas[name] = replica
            self.sim.attach(name, partial(self._receive, name))
        for name, replica in self.replicas.items():
            replica.start(self.now_of(name))

    @property
    def now(self) -> int:
        return self.genesis.time + 1000 + self.sim.now

    def now_of(self, name: str) -> int:
        """Replica `name`'s clock: the net's, set off by its `skew` (review23 F1)."""
        return self.now + self.skew.get(name, 0)

    def _schedule(self, name: str, timer: Timer, at_ms: int) -> None:
        self.sim.at(
            at_ms - self.skew.get(name, 0) - self.genesis.time - 1000, partial(self._fire, name, timer)
        )

    def _fire(self, name: str, timer: Timer) -> None:
        if self.sim.up[name]:
            self.replicas[name].fire(timer, self.now_of(name))

    def _receive(self, name: str, source: str, kind: str, data: bytes) -> None:
        self.replicas[name].receive(kind, data, self.now_of(name))

    def run(self, ms: int, step_ms: int = 20) -> None:
        """Advance virtual time by `ms`, flushing each replica's transaction gossip every `step_ms`."""
        end = self.sim.now + ms
        while self.sim.now < end:
            for replica in self.replicas.values():
                replica.flush()
            self.sim.run_until(min(end, self.sim.now + step_ms))

    def submit(
        self, name: str, keypair: Keypair, kind: str, body: dict[str, Any]
    ) -> tuple[bytes, Accepted | Rejected]:
        """Sign a transaction with `keypair`'s next nonce and hand it to replica `name`: its txid and the
        mempool's verdict."""
        app = self.replicas[name].app
        nonce = max(app.next_nonce(keypair.public), self._nonces.get(keypair.public, 0))
        tx = sign_tx(keypair, self.genesis.chain, kind, nonce, self.now, body)
        verdict = self.replicas[name].submit(tx.raw, self.now)
        if isinstance(verdict, Accepted):
            self._nonces[keypair.public] = nonce + 1
        return tx.txid, verdict

    def heads(self, names: Sequence[str] | None = None) -> set[bytes]:
        return {self.replicas[n].app.tip.hash for n in names or self.names}

    def stats(self, name: str) -> dict[str, int]:
        return dict(self.replicas[name].status()["stats"])


@dataclass
class ReplicaChain:
    """`sign_and_submit` over one replica of a `LedgerNet` that waits until the transaction is final (what
    the DSO's `ChainRecorder` expects of a chain): `ok` once it is in a committed block."""

    net: LedgerNet
    name: str
    wait_ms: int = 5000

    def sign_and_submit(
        self, keypair: Keypair, kind: str, body: dict[str, Any]
    ) -> LedgerAccepted | LedgerRejected:
        txid, verdict = self.net.submit(self.name, keypair, kind, body)
        if isinstance(verdict, Rejected):
            return LedgerRejected(Reason.INVALID, f"{kind} refused by the mempool: {verdict.reason}", txid)
        store = self.net.replicas[self.name].store
        for _ in range(0, self.wait_ms, 100):
            if store.locate_tx(txid) is not None:
                return LedgerAccepted(txid, {})
            self.net.run(100)
        return LedgerRejected(Reason.INVALID, f"{kind} not final within {self.wait_ms} ms", txid)
