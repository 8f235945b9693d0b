"""The closed loop's DSO node settings: the `loop:` section of the DSO server (`LoopSettings`) and the standalone
node's whole config (`IntervalNodeSettings`: that section plus the broker and feeder name).

Promises: typed, strict (an unknown key or a wrong type is a `ConfigError` with one line); defaults fit the lab.
Builds nothing and reads no file (the tariff file is read when the node starts: `tariff`; the MGMC chain's
genesis, which `exchange_fee` needs to have the uplift contract, by `fee_poster` then): `interval_node`
and `live` turn them into a running node. `loop_end` is where the loop's intervals end (None: they do not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from peergrid_dso.broker_tls import BrokerTls
from peergrid_dso.drivers.relay_tls import RelayTls
from peergrid_dso.live_reconnect import LEDGER_DOWN_AFTER_S
from peergrid_ledger.consensus.node_cli import ChainSettings
from peergrid_ledger.contracts.market_fee import MAX_COORDINATORS, MAX_FUND_CAP, check_fee
from peergrid_ledger.settings import StrictSettings


class MgEntry(StrictSettings):
    node: str  # the MGMC's node key (hex)
    anonym: str  # its trading pseudonym (hex)
    bus: int = Field(ge=1)
    # no PCC meter at this MG (its edge's meter_poll_s is 0): the DSO takes its stated shortfall at its word in
    # a dispute and settles without its readings; any other MG that withholds them is settled at its worst
    # (`disputes`). Set by whoever writes the DSO's `loop.mgs` (the lab's dso_node_config, the Ansible role).
    meterless: bool = False
    # its PCC meter signs its readings (vendor model 64204): the meter's Ed25519 public key (hex). The DSO then
    # counts only meter readings signed under it (`sealed_readings.SigningMeters`); unset, its readings are
    # read as before, the MGMC's own word sealed in time. Where the lab sets it: /work/notes/P6_lab.md.
    meter_key: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # its connection's capacity at the PCC (kW, the connection agreement): posted once as `market.capacity`
    # (Wh per interval) on an MGMC chain with the uplift contract, it bounds the MG's make-whole claim by what
    # it can carry, not only by its own rules (`capacity_poster.CapacityPoster`); unset: nothing posted
    capacity_kw: float | None = Field(None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _meter_key_needs_a_meter(self) -> MgEntry:
        if self.meter_key is not None and self.meterless:
            raise ValueError("meter_key: a meterless MG has no PCC meter to sign its readings")
        return self


class ExchangeFeeEntry(StrictSettings):
    """The day-ahead exchange fee the DSO posts as `market.fee` on the MGMC chain (`fee_poster.FeePoster`), in
    the contract's fields and units, those of genesis `exchange_fee` and `peergrid-ledger genesis --exchange-fee`.
    Refused as the chain would refuse the post, so a bad entry stops the start rather than being logged later."""

    # nano-currency per kWh on each side of every day-ahead trade: a whole number of ticks (multiples of
    # 1,000,000, one tick = 1 micro-unit per Wh), at most 10,000,000; 0: no fee
    fee: int
    # micro-units the uplift fund keeps after a session's payout (the rest goes back to its fee payers)
    fund_cap: int = Field(0, ge=0, le=MAX_FUND_CAP)
    # with a fee: 1 to 16 MGs of `loop.mgs` whose anonyms' sessions take it (the edges' day-ahead coordinator is
    # its session's lowest member key); without one: none
    coordinators: list[str] = Field(default_factory=list)

    @field_validator("fee")
    @classmethod
    def _whole_ticks(cls, fee: int) -> int:
        return check_fee(fee, "the fee")  # the chain's one check of a fee (its words)

    @model_validator(mode="after")
    def _as_the_contract_takes_it(self) -> ExchangeFeeEntry:
        # market.fee's own rules (set_fee; the genesis refuses the same): said here with the MG names
        if not self.fee and (self.fund_cap or self.coordinators):
            raise ValueError(
                "fund_cap and coordinators only with a fee above 0 (without one there is no fund)"
            )
        if self.fee and not 1 <= len(self.coordinators) <= MAX_COORDINATORS:
            raise ValueError(
                f"coordinators: a fee needs 1 to {MAX_COORDINATORS} MGs whose day-ahead sessions take it, got"
                f" {len(self.coordinators)}"
            )
        twice = sorted({mg for mg in self.coordinators if self.coordinators.count(mg) > 1})
        if twice:
            raise ValueError(f"coordinators: {', '.join(twice)} named twice")
        return self


class DisputeSettings(StrictSettings):
    """Settling disputed trades on the MGMC chain (`dispute_node`): where market intervals lie on the wall clock
    and how the MGMCs bucket their sealed readings, as the MGMCs' own config says (`market.t0`,
    `market.interval_s`, `ledger.commit_interval_s`)."""

    # wall s at which `first_interval` starts, or 'chain': the MGMC chain's posted interval clock (`market.clock`),
    # read at the first dispute (`meter_clock.ChainClock`; a lab whose t0 moves at the DSO's readiness)
    t0: Annotated[float, Field(ge=0)] | Literal["chain"]
    interval_s: float = Field(gt=0)
    commit_interval_s: float = Field(gt=0)
    max_gap_s: float = Field(gt=0)  # the longest gap between two PCC readings that still measures a boundary
    retry_s: float = Field(30.0, gt=0)  # a settle the chain refused is tried again after this
    # how far a meter-signed reading's time may lie from its leaf's time (an MG with a `meter_key`): the meter's
    # clock against the MGMC's, plus the time between the meter's last signature and the poll
    meter_time_bound_s: float = Field(2.0, gt=0)
    record_file: Path | None = None  # one JSON line per decision


class MarketClock(StrictSettings):
    """The market's interval clock as the MGMCs trade by it (their `market.t0` and `market.interval_s`): interval k
    runs from t0 + k x interval_s to t0 + (k + 1) x interval_s, wall s. The node reads it to tell an interval over
    (`interval_missed`); it posts nothing from it (`interval_missed` says why)."""

    t0: float = Field(ge=0, allow_inf_nan=False)  # wall s since the epoch when interval 0 starts
    interval_s: float = Field(gt=0, allow_inf_nan=False)  # real seconds per trading interval


class LoopSettings(StrictSettings):
    """What the DSO node needs besides the broker and feeder name (the `loop:` section of the DSO server)."""

    key_file: Path
    dso_chain: ChainSettings
    mgmc_chain: ChainSettings | None = None  # follow the MGMC chain as a non-voting replica (market view)
    case: str = "case33bw"  # or a MATPOWER file path
    ties: Path | None = None
    mgs: dict[str, MgEntry]
    relays_file: Path | None = None  # firmware-sim's endpoints JSON; None: relays in memory
    relays_tls: RelayTls | None = None  # Modbus/TCP Security to `modbus-tls` relays (drivers/relay_tls.py)
    first_interval: int = 0
    # how many intervals the loop runs from `first_interval`; None (null): no last interval, day after day for as
    # long as it runs (a pilot's, as the edges' `market.days` null); absent: 96, a day (the lab's and tests')
    intervals: int | None = Field(96, ge=1)
    wait_s: float = Field(4.0, gt=0)  # after the first injection, how long to wait for the others
    max_iterations: int = Field(3, ge=0)  # adjustment rounds (each re-bargained by the MGMCs) per interval
    rebargain_wait_s: float = Field(20.0, gt=0)  # how long one re-bargaining may take before the DSO goes on
    reconfigure_every: int = Field(4, ge=0)
    reconfigure_when_insecure: bool = True
    vmin_pu: float | None = Field(None, gt=0, lt=1)  # a stricter voltage floor than the feeder's (lab demos)
    record_file: Path | None = None
    status_file: Path | None = None
    mgmc_records: Path | None = None  # lab: the MGMCs' interval records (their costs) for the market view
    interval_minutes: float = Field(15.0, gt=0)  # length of a trading interval (the market view's hours)
    # the MGMCs' interval clock (a pilot's: the Ansible role renders the edges' epoch and interval); None: the MGMC
    # chain's posted `market.clock` where one is posted, else no clock (every interval acted on, however late)
    market_clock: MarketClock | None = None
    auto_enrol: bool = True  # MGMCs enrolling over the REST API: authorised at once (lab) or by an operator
    halt_file: Path | None = None  # the coordinated stop's {chain id: height}, as the MGMCs' ledger.halt_file
    disputes: DisputeSettings | None = None  # settle disputed trades (needs mgmc_chain)
    # each MG's cover prices (retail, feed-in per interval of the day; docs/closed-loop.md "Who prices the
    # cover"), posted as `market.tariff` on a settle_by_both MGMC chain (needs mgmc_chain); None: none posted
    tariff_file: Path | None = None
    # how long the node's ledger transport may be off the broker (or deaf: its subscriptions refused) before
    # /api/health says degraded
    ledger_down_after_s: float = Field(LEDGER_DOWN_AFTER_S, gt=0, le=3600)
    # the exchange fee, fund cap and coordinators the DSO posts as `market.fee` on the MGMC chain (needs
    # mgmc_chain, and its genesis the uplift contract) where the chain's standing ones differ; None: none posted
    exchange_fee: ExchangeFeeEntry | None = None

    @model_validator(mode="after")
    def _disputes_need_the_mgmc_chain(self) -> LoopSettings:
        if self.disputes is not None and self.mgmc_chain is None:
            raise ValueError("disputes: the DSO settles disputed trades on the MGMC chain: set mgmc_chain")
        if self.tariff_file is not None and self.mgmc_chain is None:
            raise ValueError("tariff_file: the DSO prices the cover on the MGMC chain: set mgmc_chain")
        if self.exchange_fee is not None:
            if self.mgmc_chain is None:
                raise ValueError(
                    "exchange_fee: the DSO posts the fee (market.fee) on the MGMC chain: set mgmc_chain"
                )
            unknown = [mg for mg in self.exchange_fee.coordinators if mg not in self.mgs]
            if unknown:
                raise ValueError(
                    f"exchange_fee.coordinators: {', '.join(unknown)} is not an MG of the loop (mgs: "
                    f"{', '.join(sorted(self.mgs))})"
                )
        return self


def loop_end(first_interval: int, intervals: int | None) -> int | None:
    """The interval after the loop's last (`first_interval + intervals`); None where it has no last interval."""
    return None if intervals is None else first_interval + intervals


class IntervalNodeSettings(LoopSettings):
    feeder: str = "lab"
    broker_host: str = "127.0.0.1"
    broker_port: int = Field(1883, ge=1, le=65535)
    broker_tls: BrokerTls | None = None  # the pilot's broker: TLS with the DSO's client certificate
    broker_reconnect_max_s: float | None = Field(None, ge=1, le=600)  # the server's broker.reconnect_max_s
