"""The clock and the chain's time the DSO judges disputes by, both read from its MGMC-chain replica.

Promises: `ReplicaTime.clock(replica)` is where market intervals lie on the wall clock: with `disputes.t0: chain`
(a `meter_clock.ChainClock`) the replica's posted `market.clock`, read the first time a dispute needs it
(`meter_clock.NoChainClock` if none by then); with a t0 in seconds that t0 until the chain has a posted clock,
then the chain's (`meter_clock.on_chain`, with one WARNING naming both where they differ: the chain settles on
its clock, so the DSO meters those windows). Once read from the chain it is not read again. `chain_time(replica)`
is the time a decision is judged by (`sealed_readings.ChainTime`): the replica's store, its head's time, and the
sealing and deadline bounds, the chain's `settle_wait_ms` unless the DSO gives its own. Reads the replica's
committed state only; called on the node's event loop. Split out of dispute_node, under whose logger it logs.
`check_settle_wait(disputes, settle_wait_ms)` refuses at start (`ConfigError`, one line) a `loop.disputes`
section beside an MGMC chain whose settle wait leaves the MGMCs no time to post their readings: the earliest
deadline rule (`takeup.VOUCH_RULE`, `LONE_RULE`: three quarters of the wait from a statement made at the
interval's end) must come more than `POST_MARGIN_MS` after the last commitment interval that brackets the
interval's end can be sealed (`commit_interval_s` + `max_gap_s` after it: the edge posts no sooner,
`pcc_readings.MgMetering.follow`). Why refuse, not warn (D12): below that bound every dispute whose
statements came promptly settles on the deadline rules whatever the MGMCs post - an honest seller metered
"not metered", paid 0 (drill U7: 60-s commitment intervals and a 60-s wait, interval 51 settled 0 of
30,000 Wh) - and a WARNING is read after those losses; above it, how long a DSO outage at an interval's end it
bridges is the operator's trade-off (the README's 45-min wait bridges any restart, a lab's seconds none).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from peergrid_dso.meter_clock import ChainClock, on_chain
from peergrid_dso.sealed_readings import ChainTime, MeterClock
from peergrid_ledger.contracts.market_clock import posted_epoch
from peergrid_ledger.settings import ConfigError
from peergrid_ledger.takeup import LONE_RULE, VOUCH_RULE

log = logging.getLogger("peergrid_dso.dispute_node")  # the name its warning had before the split
# after the window's last commitment interval can be sealed, what the edge's post needs before a deadline rule:
# its commit tick and a block to seal it, and one quick re-post (edge `dispute_readings.QUICK_S`) where the post
# met a DSO replica a block behind (the lab's 6-s intervals leave 3 s: 18-s wait, 6-s commits, 4.5-s gap)
POST_MARGIN_MS = 2_000


def check_settle_wait(disputes: Any, settle_wait_ms: int) -> None:
    """`ConfigError` (one line) when the MGMC chain's settle wait leaves the MGMCs no time to post the readings
    of an interval's end before a deadline rule (module): `disputes` is `loop.disputes` (`commit_interval_s`,
    `max_gap_s`), `settle_wait_ms` the MGMC genesis' `settle_wait_ms`."""
    sealed_ms = round(disputes.commit_interval_s * 1000) + round(disputes.max_gap_s * 1000)
    rule_ms = settle_wait_ms * min(VOUCH_RULE, LONE_RULE)  # exact (a Fraction)
    if rule_ms <= sealed_ms + POST_MARGIN_MS:
        raise ConfigError(
            f"loop.disputes: the MGMC chain's settle_wait_ms {settle_wait_ms} applies its deadline rules "
            f"{float(rule_ms) / 1000:g} s after a statement, but an interval's last readings are sealed only "
            f"commit_interval_s + max_gap_s = {sealed_ms / 1000:g} s after its end, and "
            f"need {POST_MARGIN_MS / 1000:g} s more to be posted: every prompt dispute would "
            f"settle without them (a seller at 0); make the genesis' settle_wait_ms above "
            f"{_wait_needed_ms(sealed_ms)} or the MGMCs' commit_interval_s shorter"
        )


def _wait_needed_ms(sealed_ms: int) -> int:
    """The settle wait `check_settle_wait` takes any above, for readings sealed `sealed_ms` after an interval."""
    return math.floor((sealed_ms + POST_MARGIN_MS) / min(VOUCH_RULE, LONE_RULE))


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
