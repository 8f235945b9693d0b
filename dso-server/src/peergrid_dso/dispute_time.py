"""The clock and the chain's time the DSO judges disputes by, both read from its MGMC-chain replica.

Promises: `ReplicaTime.clock(replica)` is where market intervals lie on the wall clock: with `disputes.t0: chain`
(a `meter_clock.ChainClock`) the replica's posted `market.clock`, read the first time a dispute needs it
(`meter_clock.NoChainClock` if none by then); with a t0 in seconds that t0 until the chain has a posted clock,
then the chain's (`meter_clock.on_chain`, with one WARNING naming both where they differ: the chain settles on
its clock, so the DSO meters those windows). Once read from the chain it is not read again. `chain_time(replica)`
is the time a decision is judged by (`sealed_readings.ChainTime`): the replica's store, its head's time, and the
sealing and deadline bounds, the chain's `settle_wait_ms` unless the DSO gives its own. Reads the replica's
committed state only; called on the node's event loop. Split out of dispute_node, under whose logger it logs.
"""

from __future__ import annotations

import logging
from typing import Any

from peergrid_dso.meter_clock import ChainClock, on_chain
from peergrid_dso.sealed_readings import ChainTime, MeterClock
from peergrid_ledger.contracts.market_clock import posted_epoch

log = logging.getLogger("peergrid_dso.dispute_node")  # the name its warning had before the split


class ReplicaTime:
    def __init__(
        self,
        clock: MeterClock | ChainClock,  # ChainClock: its t0 read from the replica at first use
        seal_within_ms: int | None = None,  # None: the chain's settle_wait_ms
        wait_ms: int | None = None,  # None: the chain's settle_wait_ms
    ) -> None:
        self._clock = clock
        self._clock_final = False  # read from the chain's posted clock (`clock`)
        self.seal_within_ms, self.wait_ms = seal_within_ms, wait_ms

    def clock(self, replica: Any) -> MeterClock:
        """Where market intervals lie on the wall clock (see the module)."""
        state = replica.app.state
        if isinstance(self._clock, ChainClock):
            self._clock = self._clock.resolve(state, replica.store.genesis.params)
            self._clock_final = True
        elif not self._clock_final and posted_epoch(state) is not None:
            posted = on_chain(self._clock, state, replica.store.genesis.params)
            assert posted is not None
            if posted != self._clock:  # a t0 configured before the start moved: the chain's rules
                log.warning("disputes.t0 %d ms; the MGMC chain's clock says %d: metering on the chain's",
                            self._clock.t0_ms, posted.t0_ms)  # fmt: skip
            self._clock, self._clock_final = posted, True
        return self._clock

    def chain_time(self, replica: Any) -> ChainTime:
        """The replica's time for the resolver: its store, its head's time, the bounds in ms."""
        store = replica.store
        params = store.genesis.params
        wait = int(params.settle_wait_ms)
        return ChainTime(
            store,
            int(replica.app.tip.time),
            wait if self.seal_within_ms is None else self.seal_within_ms,
            wait if self.wait_ms is None else self.wait_ms,
            bool(params.seller_vouched),
        )
