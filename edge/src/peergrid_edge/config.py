"""The edge daemon's one typed config, rendered by Ansible to /etc/peergrid/edge.yaml.

Promises: every field has a default or is required, unknown keys are errors, and cross-field rules (an RTU
device names its serial port, a control range is ordered) are checked here, so the daemon never starts on a
config it would trip over later. Nothing here is reloadable: a changed file means a restart.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from peergrid_ledger.meter_signing import MIN_POLL_MS
from peergrid_ledger.settings import BrokerTlsSettings, StrictSettings

Nature = Literal["pv", "battery", "genset", "load", "meter"]


class BrokerSettings(BrokerTlsSettings):
    """The feeder's broker; TLS fields (the pilot) from `BrokerTlsSettings`."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    keepalive_s: int = Field(30, ge=5)
    # paho's reconnect back-off after a lost connection: 1 s, doubling up to this bound (s), so a broker back
    # after an outage is found within it; below 1 s the broker's own restart is hammered, and above 10 min a
    # daemon would sit islanded long after its broker returned. The lab sets its phase timeout (~2 s).
    reconnect_max_s: float = Field(10.0, ge=1, le=600)


class ControlSettings(StrictSettings):
    """Limits for one actuator. Power is in W, positive when the device injects into the MG bus."""

    min_w: float = 0.0
    max_w: float = Field(0.0, ge=0)  # 0 = take the device's own rating
    ramp_w_per_s: float = Field(0.0, ge=0)  # 0 = no ramp limit
    # Safe state on lost controller / no valid schedule:
    safe_w: float | None = None  # pv: export cap; battery: power (0); genset: output; None = leave as is
    safe_on: bool | None = None  # genset running / load connected in the safe state; None = leave as is
    sheddable: bool = False  # a load the schedule (and the safe state) may disconnect
    # The device's own communication-loss watchdog (device seconds; battery: SunSpec 124 InOutWRte_RvrtTms,
    # PV and genset: peergrid 64203 FbTms with FbW = the safe state above), fed every dispatch tick: with the
    # MGMC dead the device goes to its safe state by itself (battery hold 0 W, PV capped at safe_w, genset
    # stopped or at safe_w). Must exceed the dispatch period in device time. None: not used.
    revert_s: float | None = Field(None, gt=0, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> ControlSettings:
        if self.max_w and self.min_w > self.max_w:
            raise ValueError(f"min_w {self.min_w} is above max_w {self.max_w}")
        return self


class DeviceSettings(StrictSettings):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    nature: Nature
    protocol: Literal["modbus-tcp", "modbus-rtu", "mqtt"] = "modbus-tcp"
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=247)
    serial_port: str | None = None  # modbus-rtu: e.g. /dev/ttyUSB0
    baudrate: int = Field(19200, ge=1200, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    topic: str | None = None  # mqtt: default peergrid/<feeder>/telemetry/<mg>/<name>
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(1.0, gt=0)
    retries: int = Field(1, ge=0, le=5)  # extra attempts within one poll before it counts as failed
    failures_to_quarantine: int = Field(3, ge=1)
    quarantine_s: float = Field(5.0, gt=0)  # first back-off; doubles per failed probe
    quarantine_max_s: float = Field(300.0, gt=0)
    stale_after_s: float | None = Field(None, gt=0)  # default: 3 poll intervals + timeout
    control: ControlSettings | None = None  # None: read-only device, never written
    # The PCC meter's Ed25519 public key (64 lowercase hex), the one the DSO enrols as `mgs.<mg>.meter_key`:
    # each poll's signed reading (SunSpec vendor model 64204) is then verified and its clock compared with this
    # Pi's, for the operator only (`meter_signed.MeterWatch`, /metrics); the reading leaf is sealed as before.
    # None: nothing verified. Only on a Modbus meter (an MQTT meter's telemetry carries no signed reading).
    meter_key: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # How far the meter's signed time may be from this Pi's before a warning: the DSO's default note bound
    # (its `disputes.meter_time_bound_s`).
    meter_time_bound_s: float = Field(2.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _protocol_fields(self) -> DeviceSettings:
        if self.protocol == "modbus-rtu" and not self.serial_port:
            raise ValueError(f"device {self.name}: modbus-rtu needs serial_port")
        if self.meter_key is not None and (self.nature != "meter" or self.protocol == "mqtt"):
            raise ValueError(
                f"device {self.name}: meter_key is for a Modbus SunSpec meter (nature meter, modbus-tcp or "
                f"modbus-rtu), not a {self.nature} over {self.protocol}: nothing else carries a signed reading"
            )
        # the DSO refuses a commitment interval holding more PCC meter readings than one per MIN_POLL_MS (review16 P1)
        if self.nature == "meter" and self.poll_interval_s < MIN_POLL_MS / 1000:
            raise ValueError(
                f"device {self.name}: a PCC meter polled every {self.poll_interval_s:g} s seals more readings "
                f"than the DSO counts (one per {MIN_POLL_MS} ms, peergrid_ledger.meter_signing.MIN_POLL_MS): it "
                f"would refuse this MG's readings as padding; set poll_interval_s to {MIN_POLL_MS / 1000:g} or more"
            )
        return self

    @property
    def stale_after(self) -> float:
        return self.stale_after_s or 3 * self.poll_interval_s + self.timeout_s


class DispatchSettings(StrictSettings):
    enabled: bool = True
    period_s: float = Field(5.0, gt=0)
    schedule_timeout_s: float = Field(120.0, gt=0)  # no fresh schedule for this long -> safe state
    write_retries: int = Field(2, ge=0, le=10)
    readback_tolerance_pct: float = Field(2.0, ge=0)  # of the device's rating
    readback_delay_s: float = Field(0.2, ge=0)


class ChainSettings(StrictSettings):
    """One embedded replica: the chain's genesis file; its store lives under data_dir/<role>.db."""

    genesis: Path
    block_period_ms: int = Field(200, ge=50, le=600_000)
    round_timeout_ms: int = Field(1500, ge=100, le=600_000)
    # fsync the consensus WAL on every vote (a power cut never makes this node vote twice). The lab testbed,
    # where only processes die and many replicas share one disk, turns it off.
    wal_fsync: bool = True


class ReplicaSettings(StrictSettings):
    mgmc: ChainSettings  # the MGMC chain (this node is one of its authorities)
    dso: ChainSettings | None = None  # the DSO chain (this node co-validates it)


class LedgerSettings(StrictSettings):
    chain_id: str = Field("mgmc", min_length=1)  # ignored when replicas run: the MGMC genesis names it
    replicas: ReplicaSettings | None = None  # None: gossip only, submission confirmed on PUBACK
    key_file: Path | None = None  # None: <data_dir>/node.key, created on first start
    commit_interval_s: float = Field(60.0, gt=0)
    submit_timeout_s: float = Field(10.0, gt=0)
    # Readings of sealed intervals older than this are deleted (their proofs with them); None keeps all.
    retention_days: float | None = Field(None, gt=0)
    # A coordinated stop (the lab testbed's end, or before an upgrade): while this JSON file {chain id: height}
    # exists, each replica finalises nothing above its height and the outbox submits nothing new (it stays
    # queued on disk). None: never halts.
    halt_file: Path | None = None


class OwnerRules(StrictSettings):
    """The MG owner's contract rules (issue #7 item 3): what the chain's market contract holds it to once the
    edge posted them (`rules_poster.py`, `market.rules` under its trading key). In the owner's words: prices in
    currency per kWh, quantities in kWh per interval; every default means "no rule"."""

    floor_price: float = Field(0.0, ge=0, allow_inf_nan=False)  # never sell below (0: no floor)
    cap_price: float | None = Field(None, ge=0, allow_inf_nan=False)  # never buy above (None: no cap)
    max_quantity_kwh: float | None = Field(None, ge=0, allow_inf_nan=False)  # per interval (None: no maximum)
    clean_only: bool = False  # buy only renewable-backed offers
    clean_premium: float = Field(0.0, ge=0, allow_inf_nan=False)  # extra per kWh it pays for clean energy


class MarketSettings(StrictSettings):
    """The trading agent (needs `ledger.replicas` with both chains). The scenario file is this MG's model and
    forecast (firmware-sim's format); only this MG's entry and the public tariffs and rules are used."""

    scenario: Path
    anonym_key_file: Path  # the pseudonym it trades under (enrolled on the DSO chain)
    t0: float  # wall time (s since the epoch) when interval `first_interval` starts
    interval_s: float = Field(gt=0)  # real seconds per trading interval (the accelerated clock)
    first_interval: int = Field(0, ge=0)
    intervals: int | None = Field(None, ge=1)  # stop trading after this interval count (None: no count)
    # How many of the scenario's days it trades, one after another on the same chain (`agent_day.Calendar`):
    # interval t is day t // n of an n-interval scenario, planned on the scenario's profile t mod n, and the
    # first day is the one of `first_interval` (from it). None: day after day, as long as it runs (a pilot).
    # `intervals`, where given, counts across the days. 1 (the default): the one day, as before.
    days: int | None = Field(1, ge=1)
    phase_timeout_s: float = Field(3.0, gt=0)  # how long a bargaining phase waits for slow peers
    # Rounds per bargaining (the first, and each re-bargaining the DSO asks for). None: `EdgeSettings` fills in
    # the simulation's cap of 50 where an interval holds them, fewer on an accelerated clock (`_rounds`); alone
    # (no EdgeSettings around it) the agent takes 50. At least 2: the bargaining stops on a round that repeats
    # the previous one.
    max_rounds: int | None = Field(None, ge=2, le=200)
    dso_timeout_s: float = Field(20.0, gt=0)  # no DSO verdict by then: dispatch the agreed schedule anyway
    record_file: Path | None = None  # one JSON line per interval (the testbed's report reads them)
    # Run the day-ahead exchange session (dayahead_agent.py) once before the first interval, every MGMC from
    # its own replica, and once it completed its forward trades (forward_agent.py: each MGMC accepts what pays
    # for its own MG, the lowest member key clears); the intervals the clear closed are traded by them, the
    # rest bargained intraday as before. Outcomes are recorded (record file, status). Off by default.
    dayahead: bool = False
    # Some MG of the feeder has a genset: the session runs the commitment phases. Not on the chain, so every
    # MGMC must be set alike (a difference fails the stage); a genset MGMC without it refuses the stage.
    dayahead_gensets: bool = False
    # Keep the clean book beside the general one (the controller's `DayAheadConfig.clean_book`, off there too):
    # where a member is clean-only on the chain's rules the coordinator (the lowest member key) opens a clean
    # session (dayahead_clean.py). Not on the chain: every MGMC should be set alike. Where they are not, the
    # coordinator's switch decides and every member follows the session as opened (clean or not, whatever its
    # own switch). Off by default.
    dayahead_clean: bool = False
    # On a settle_by_both MGMC chain the coordinator opens the session only once the DSO's cover prices
    # (market.tariff) of every member are on the chain for the intervals it trades, waiting at most this long
    # (s; with the stage's deadline at most half the time left to its close); then it opens unpriced, saying
    # so in one log line. Members wait that much longer for the opening: set every MGMC alike. 0: no wait.
    dayahead_tariff_wait_s: float = Field(20.0, ge=0, allow_inf_nan=False)
    # The DSO server's API (e.g. http://127.0.0.1:8080), where this MGMC posts its sealed PCC readings when one
    # of its trades is disputed (settle_by_both: the DSO settles a dispute from both parties' readings, which the
    # chain holds only as a Merkle root: pcc_readings.py). None: a dispute is logged and left to the DSO.
    dso_api_url: str | None = None
    # The owner's individual rationality in the intraday bargaining (`guard.py`, the simulation's rationality.py):
    # "strict" keeps the day's cost within its conventional (DSO-only) cost plus `risk_allowance` whatever the
    # peers do; "trades" lets each trade only what the conventional alternative would; "off" (the default, the
    # edge as before) guards nothing. `forecast` is what the day is planned on: "none" (as before: no peer
    # prices, the plan never leans on peers) or "market": the day-ahead session's final prices when it
    # completed, else the chain's latest agreed price (every MGMC derives the same from its replica).
    rationality: Literal["strict", "trades", "off"] = "off"
    forecast: Literal["none", "market"] = "none"
    # How far above its conventional day cost this owner lets its day end in the worst case (currency per day;
    # the strict guard's slack at the day's start, the simulation's `risk_allowance`). 0: the exact guarantee.
    risk_allowance: float = Field(0.0, ge=0, allow_inf_nan=False)
    # The owner's contract rules (floor, cap, maximum quantity, clean-only, clean premium), posted on the MGMC
    # chain as `market.rules` under the anonym and kept by the agent; where given they replace this MG's rules
    # in the scenario (its `market.mg_rules`/`market.rules`). None: the scenario's, as before (the lab).
    rules: OwnerRules | None = None

    @model_validator(mode="after")
    def _one_day_ahead(self) -> MarketSettings:
        """More than one day is refused with the day-ahead stage: each day's session must clear before its
        first interval, while the day before still trades, and its make-whole waits for that day's
        settlements; the agent runs neither beside its intervals (not built)."""
        if self.dayahead and self.days != 1:
            raise ValueError(
                f"market.days {self.days} needs market.dayahead off: the agent runs a day-ahead session before "
                "its first day only (the next day's would have to clear while the day before still trades)"
            )
        return self

    @model_validator(mode="after")
    def _allowance_acts(self) -> MarketSettings:
        """A positive allowance is refused where it cannot act: it loosens the strict guard's budget only, and
        only a plan that leans on a price forecast has anything to spend it on."""
        if self.risk_allowance > 0 and self.rationality != "strict":
            raise ValueError(
                f"market.risk_allowance {self.risk_allowance:g} needs market.rationality strict (it is the strict "
                f"guard's slack): with rationality {self.rationality} it would be accepted and never used"
            )
        if self.risk_allowance > 0 and self.forecast == "none":
            raise ValueError(
                f"market.risk_allowance {self.risk_allowance:g} needs market.forecast market: without a price "
                f"forecast the plan never leans on peers, so the allowance has nothing to pay for"
            )
        return self

    @field_validator("dso_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        if (
            scheme not in ("http", "https")
            or not sep
            or not rest
            or rest.startswith("/")
            or any(c.isspace() for c in value)
        ):
            raise ValueError(f"expected an http(s) URL like http://127.0.0.1:8080, got {value!r}")
        return value.rstrip("/")


class MetricsSettings(StrictSettings):
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)  # None: no endpoint; 0: any free port


# The share of an interval the bargaining rounds may use, counted at their fastest (two MGMC-chain block
# periods a round) over the first bargaining and every re-bargaining the genesis allows. The rest is left for
# what must also happen within the interval: each bargaining's closing `trade` in a final block, the DSO's
# security check and contract between bargainings, and the dispatch. A budget, not a measurement: rounds are
# seldom at their fastest (2-4 s at 500-ms blocks with 30 MGMCs, bench/RESULTS.md), so this bounds what can
# never fit rather than promising what will.
ROUNDS_SHARE = 0.75


def slot_start(market: MarketSettings, t: int) -> float:
    """The wall second chain interval t's slot starts on `market`'s clock: t0 + (t - first_interval) x
    interval_s, the one clock of every day (a later day's settings, `agent_day.Calendar.settings_of`, name the
    same second for t)."""
    return market.t0 + (t - market.first_interval) * market.interval_s


def slot_at(market: MarketSettings, wall: float) -> int:
    """The chain interval whose slot wall second `wall` is in on `market`'s clock (before the first: a lower
    number)."""
    return market.first_interval + math.floor((wall - market.t0) / market.interval_s)


def rounds_that_fit(interval_s: float, block_period_ms: int, bargainings: int) -> int:
    """The most rounds per bargaining such that `bargainings` bargainings, each round two block periods,
    take at most `ROUNDS_SHARE` of an interval of `interval_s` seconds (0 when not even one round fits)."""
    return int(interval_s * 1000 * ROUNDS_SHARE // (bargainings * 2 * block_period_ms))


def genesis_bargaining(genesis: Path) -> tuple[int, int] | None:
    """What the MGMC chain's genesis allows each interval's bargaining: (re-bargainings, `Params.max_reopens`;
    rounds one bargaining may take, `Params.max_rounds`, 0 for no cap: the chain refuses a position past it).
    None when the file is not there (yet: `check-config` before the genesis is installed; the daemon cannot
    start without it). A genesis that is there but unreadable or malformed is an error: the daemon would trip
    over it."""
    from peergrid_ledger.consensus.node_cli import load_genesis
    from peergrid_ledger.settings import ConfigError

    if not genesis.exists():
        return None
    try:
        params = load_genesis(genesis).params
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return params.max_reopens, params.max_rounds


class EnrolmentSettings(StrictSettings):
    """The MGMC's enrolment at the DSO on first boot (`enrolment.py`); absent: it never asks (the lab, whose
    DSO enrols each MG from its own config)."""

    url: str  # the DSO server, https://dso.example:8443 (http only to a loopback host)
    token_file: Path = Path("/etc/peergrid/enrolment-token")  # written by the flash (cloud-init user-data)
    ca_file: Path | None = None  # the operator's CA for the DSO's certificate; None: the system's trust store
    # the pseudonym enrolled beside the identity key; None: market.anonym_key_file, else <data_dir>/keys/anonym.key
    anonym_key_file: Path | None = None
    retry_s: float = Field(2.0, gt=0, le=600)  # first wait between asks; doubles up to retry_max_s
    retry_max_s: float = Field(60.0, gt=0, le=3600)
    timeout_s: float = Field(10.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from peergrid_edge.enrolment import check_url

        return check_url(value)


class EdgeSettings(StrictSettings):
    node_id: str = Field(min_length=1)
    mg: str = Field(min_length=1)
    feeder: str = Field("feeder1", min_length=1)
    broker: BrokerSettings = BrokerSettings()
    data_dir: Path = Path("/var/lib/peergrid")
    health_period_s: float = Field(1.0, gt=0)
    devices: list[DeviceSettings] = Field(default_factory=list)
    dispatch: DispatchSettings = DispatchSettings()
    ledger: LedgerSettings = LedgerSettings()
    metrics: MetricsSettings = MetricsSettings()
    market: MarketSettings | None = None
    enrolment: EnrolmentSettings | None = None

    def node_key_file(self) -> Path:
        """The node's identity key: as configured (`ledger.key_file`), else in the state folder."""
        return self.ledger.key_file or self.data_dir / "node.key"

    def anonym_key_file(self) -> Path:
        """The anonym enrolled beside the node key: as configured, else the market's, else in the state folder."""
        if self.enrolment is not None and self.enrolment.anonym_key_file is not None:
            return self.enrolment.anonym_key_file
        if self.market is not None:
            return self.market.anonym_key_file
        return self.data_dir / "keys" / "anonym.key"

    @field_validator("market")
    @classmethod
    def _rounds(cls, market: MarketSettings | None, info: ValidationInfo) -> MarketSettings | None:
        """Fills in the trading agent's rounds per bargaining (`market.max_rounds`) when not given: the
        simulation's cap (`BargainingConfig.max_rounds`, 50, under which the market's figures are measured)
        where the interval holds it, else as many as it holds (`rounds_that_fit`; at least 2, the fewest that
        can stop on a repeated round, even where not 2 fit: that clock overruns its intervals); an explicit cap
        must fit.

        Rounds needed: the simulation's worst measured is 29 (100 MGs). The edge's, opened at the previous
        interval's price over a 12-hour day of 5 MGs with owners' rules (tests/edge/test_edge_owner_rules.py):
        at most 22 on the hand-built case, 13-18 on seeds 1-3, and on seed 9 two intervals still ran to 50
        (three from the interval's price too: that market's own limit). A 15-min interval at 200-ms blocks
        with three re-bargainings holds 50 (`rounds_that_fit`: 421); the lab's accelerated clock (6-s
        intervals, 200-ms blocks, three re-bargainings) holds 2, where the old bound (the whole interval for
        one bargaining) gave 15 and so let one bargaining alone fill the interval."""
        ledger = info.data.get("ledger")
        if market is None or ledger is None or ledger.replicas is None:
            return market  # no market, or the rule that it needs replicas names the mistake
        block_ms = ledger.replicas.mgmc.block_period_ms
        allowed = genesis_bargaining(ledger.replicas.mgmc.genesis)
        reopens, chain_cap = allowed or (None, 0)
        fit = rounds_that_fit(market.interval_s, block_ms, 1 + (reopens or 0))
        if market.max_rounds is None:
            # imported here, not at the top: the controller's bargaining brings numpy, 12 MB of resident memory
            # that a daemon which does not trade (no market) never uses
            from peergrid_controller.moves import BargainingConfig

            default = max(2, min(BargainingConfig().max_rounds, fit))
            # the chain's cap is at least 2 (genesis_params), so the floor of 2 stays within it
            return market.model_copy(update={"max_rounds": min(default, chain_cap) if chain_cap else default})
        if chain_cap and market.max_rounds > chain_cap:
            raise ValueError(
                f"market.max_rounds {market.max_rounds} is more than the MGMC genesis' max_rounds {chain_cap}: "
                f"the chain refuses any offer, bid or move past round {chain_cap} of a bargaining"
            )
        if market.max_rounds > fit:
            counted = (
                "the first bargaining only (the MGMC genesis is not there to say how many re-bargainings)"
                if reopens is None
                else f"the first bargaining and the {reopens} re-bargaining(s) the MGMC genesis allows (max_reopens)"
            )
            raise ValueError(
                f"market.max_rounds {market.max_rounds} cannot be played within interval_s {market.interval_s:g}: "
                f"a round is at least two MGMC-chain blocks (block_period_ms {block_ms}), and {counted} may use "
                f"{ROUNDS_SHARE:.0%} of the interval (the rest is for closing, the DSO's check and dispatch), "
                f"so at most {fit} fit"
            )
        return market

    @model_validator(mode="after")
    def _unique_names(self) -> EdgeSettings:
        seen: set[str] = set()
        for d in self.devices:
            if d.name in seen:
                raise ValueError(f"device name {d.name!r} is used twice")
            seen.add(d.name)
        if self.market is not None and (self.ledger.replicas is None or self.ledger.replicas.dso is None):
            raise ValueError("market needs ledger.replicas with both the mgmc and the dso chain")
        return self

    def topic(self, *parts: str) -> str:
        return "/".join(("peergrid", self.feeder, *parts))
