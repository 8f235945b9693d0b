"""Where the DSO reads a party's meter from, and by which time and keys (split out of `sealed_readings`, D5).

Promises: `MeterClock` maps a market interval to its wall-clock window and the commitment intervals whose readings
may bracket it (`metering.commitment_intervals`), as far as a signing meter's clock may take a reading
(`reachable`, capped at `meter_signing.CLOCK_REACH_COMMITS` commitment intervals each way), and bounds the PCC
meter readings one commitment interval can hold (`most_meter_readings`, review16 P1); `ChainTime` is the
chain's time a dispute is judged by (the DSO's replica: where each commitment landed, its head's time, the
sealing and deadline bounds, the genesis' `seller_vouched`); `SigningMeters` the PCC meters enrolled as
signing (`signing_meters`: from the loop's `mgs`' `meter_key`s); `ChainClock` a `MeterClock` whose t0 is the MGMC chain's posted interval clock (`loop.disputes.t0:
chain`, `market_clock`), read from the replica's state at first use; `on_chain` moves a configured t0 to a
posted clock (the chain settles on it: the DSO must meter the windows it settles). Plain data, validated on construction (`ValueError`); no I/O, no clock. What they mean to a decision:
`sealed_readings`' and `disputes`' module docstrings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from peergrid_ledger.contracts.market_clock import posted_epoch
from peergrid_ledger.meter_signing import CLOCK_REACH_COMMITS, MIN_POLL_MS
from peergrid_ledger.metering import commitment_intervals


@dataclass(frozen=True)
class MeterClock:
    """Where market interval t lies on the wall clock (ms), and the commitments' bucket length."""

    t0_ms: int  # the wall time interval `first_interval` starts
    interval_ms: int
    first_interval: int
    commit_ms: int  # the MGMCs' `commit_interval_s` in ms
    max_gap_ms: int  # the longest gap between two readings that still measures a boundary

    def __post_init__(self) -> None:
        if min(self.interval_ms, self.commit_ms, self.max_gap_ms) <= 0:
            raise ValueError("interval_ms, commit_ms and max_gap_ms must be positive")

    def window(self, interval: int) -> tuple[int, int]:
        start = self.t0_ms + (interval - self.first_interval) * self.interval_ms
        return start, start + self.interval_ms

    def commitments(self, interval: int, reach: tuple[int, int] = (0, 0)) -> range:
        """The commitment intervals whose readings may bracket the window's boundaries; `reach`: (ms before,
        ms after) further, for a meter whose clock is behind or ahead of the MGMC's stamps (`read_party`)."""
        start, end = self.window(interval)
        return commitment_intervals((start - reach[0], end + reach[1]), self.commit_ms, self.max_gap_ms)

    @property
    def reach_cap_ms(self) -> int:
        """The furthest `read_party` reads beyond a window's readings for a meter's clock (ms)."""
        return CLOCK_REACH_COMMITS * self.commit_ms

    def reachable(self, interval: int) -> range:
        """Every commitment interval a decision on `interval` may read: the window's, and as far as a meter's
        clock may take it (`reach_cap_ms` each way). What the dispute node should accept readings of."""
        return self.commitments(interval, (self.reach_cap_ms, self.reach_cap_ms))

    @property
    def most_meter_readings(self) -> int:
        """The most PCC meter readings one commitment interval can hold: one per poll at `MIN_POLL_MS`."""
        return self.commit_ms // MIN_POLL_MS + 1


class NoChainClock(RuntimeError):
    """`disputes.t0: chain` and the MGMC chain has no posted clock by the first dispute, or one whose
    interval is not the config's."""


@dataclass(frozen=True)
class ChainClock:
    """A `MeterClock` but for its t0, which is the MGMC chain's: the posted `market.clock` epoch + first_interval
    x the genesis' `settle_interval_ms` (why: a lab or pilot whose start moves fixes t0 only once the DSO runs,
    and posts it; the DSO's config was written before). `resolve` reads it; no I/O."""

    interval_ms: int
    first_interval: int
    commit_ms: int
    max_gap_ms: int

    def resolve(self, state: Any, params: Any) -> MeterClock:
        """The `MeterClock` on the chain's clock; `NoChainClock` (one line) when none is posted or its interval
        is not `interval_ms`."""
        epoch = posted_epoch(state)
        if epoch is None:
            raise NoChainClock(
                "disputes.t0 is 'chain', but the MGMC chain has no interval clock posted (market.clock): "
                "post it before the MGMCs trade, or give disputes.t0 in seconds"
            )
        if int(params.settle_interval_ms) != self.interval_ms:
            raise NoChainClock(
                f"disputes.interval_s is {self.interval_ms} ms, the MGMC chain's settle_interval_ms "
                f"{params.settle_interval_ms}: the DSO would meter other windows than the chain settles"
            )
        t0 = epoch + self.first_interval * self.interval_ms
        return MeterClock(t0, self.interval_ms, self.first_interval, self.commit_ms, self.max_gap_ms)


def on_chain(clock: MeterClock, state: Any, params: Any) -> MeterClock | None:
    """`clock` with its t0 moved to the MGMC chain's posted `market.clock` (the chain settles on it, so the DSO
    meters the same windows: a config's t0 written before a lab's start moved), or None while none is posted.
    `NoChainClock` when the chain's interval is not the config's."""
    if posted_epoch(state) is None:
        return None
    return ChainClock(clock.interval_ms, clock.first_interval, clock.commit_ms, clock.max_gap_ms).resolve(
        state, params
    )


def dispute_clock(settings: Any) -> MeterClock | ChainClock:
    """The settler's market clock from the loop settings' `disputes` section (`loop_settings.DisputeSettings`):
    t0 in seconds as given, or with `t0: chain` the MGMC chain's posted clock, read at first use."""
    d = settings.disputes
    interval_ms, commit_ms, gap_ms = (
        round(s * 1000) for s in (d.interval_s, d.commit_interval_s, d.max_gap_s)
    )
    if d.t0 == "chain":
        return ChainClock(interval_ms, settings.first_interval, commit_ms, gap_ms)
    return MeterClock(round(d.t0 * 1000), interval_ms, settings.first_interval, commit_ms, gap_ms)


class Blocks(Protocol):
    """Where the replica's transactions landed: a `BlockStore` or a `LocalChain`."""

    def locate_tx(self, txid: bytes) -> tuple[int, int] | None: ...

    def header(self, height: int) -> Any: ...  # a block.Header: its `time` (ms)


@dataclass(frozen=True)
class ChainTime:
    """What the DSO reads of the chain's time for a dispute (module docstring): where each commitment landed,
    the chain's time now (its head block's), the two bounds in ms, and the genesis' `seller_vouched`."""

    blocks: Blocks
    now_ms: int
    seal_within_ms: int  # a commitment counts when sealed at most this long after its interval ended
    wait_ms: int  # after the second statement, how long a side may stay unmetered before it loses the min
    seller_vouched: bool = False  # a withheld statement settles as its hold, else its penalty (`disputes`)

    def __post_init__(self) -> None:
        if self.seal_within_ms < 0 or self.wait_ms < 0:
            raise ValueError("seal_within_ms and wait_ms must not be negative")


@dataclass(frozen=True)
class SigningMeters:
    """The PCC meters enrolled as signing: the MGMC's node key -> its meter's Ed25519 public key, and how far
    (ms) a signed reading's time may lie from its leaf's `at_ms` (the meter's clock against the MGMC's, plus
    the time between the meter's last render and the poll) before it is noted (never left out for it)."""

    keys: Mapping[bytes, bytes]
    bound_ms: int

    def __post_init__(self) -> None:
        if self.bound_ms < 0:
            raise ValueError("bound_ms must not be negative")


def signing_meters(mgs: Mapping[str, Any], bound_s: float) -> SigningMeters | None:
    """The PCC meters enrolled as signing from the loop's `mgs` (`loop_settings.MgEntry`: node key -> its
    `meter_key`), with the `disputes` section's `meter_time_bound_s`; None when no MG has one."""
    found = {
        bytes.fromhex(e.node): bytes.fromhex(e.meter_key) for e in mgs.values() if e.meter_key is not None
    }
    return SigningMeters(found, round(bound_s * 1000)) if found else None
