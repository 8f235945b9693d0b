"""A lone authority's MGMC chain for the DSO tests that drive the DSO's real `ChainAdapter` against a real
consensus replica (LevelDB store, real engine) with no network: the authority proposes and finalises a block at
each proposal timer the test fires (`helpers_replica.pump`, or `pumping` as a task). `changed` and `node` are
what a `ChainAdapter` takes. The genesis is the test's: its accounts, contracts and params, its time a second
ago."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

from helpers_replica import Wire, pump, wall_ms

from peergrid_dso.node_chains import Changed
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.node import ChainReplica
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.store import BlockStore

CHAIN = "mgmc"


class LoneMgmcChain:
    def __init__(
        self, store_dir: Path, authority: Keypair, accounts: Iterable[Account], contracts: Iterable[str],
        params: Params | None = None,
    ) -> None:  # fmt: skip
        genesis = Genesis(
            chain=CHAIN, time=wall_ms() - 1000, authorities=(authority.public,), accounts=tuple(accounts),
            contracts=tuple(contracts), params=params or Params(),
        )  # fmt: skip
        self.store = BlockStore.create(store_dir, genesis)
        self.wire = Wire()
        self.replica = ChainReplica(
            self.store, authority, EngineConfig(block_period_ms=50), self.wire, self.wire.schedule
        )
        self.replica.start(wall_ms())
        self.changed = Changed()
        self.replica.on_commit.append(self.changed.fire)
        self.node = SimpleNamespace(replicas={CHAIN: self.replica}, clock=wall_ms)

    async def pumping(self, stop: asyncio.Event) -> None:
        """Blocks as their timers fall due, until `stop`."""
        while not stop.is_set():
            pump(self.replica, self.wire)
            await asyncio.sleep(0.01)
