"""What a simulated day takes and gives back (simulate.py): its configuration and its results.

Promises: frozen records and nothing else — `SimulationConfig` in; per interval an `IntervalResult`; for the day a
`SimulationResult` (with a `DayAheadSummary` in day-ahead mode) whose `totals()` sums the intervals. cli_output.py
builds its JSON from these fields by name. Neither market's runner is here, so both (simulate.py,
simulate_dayahead.py) import these without importing each other. A config the market cannot take raises
`ConfigError` when it is made (a risk allowance that is negative, not finite, or given where it does not
apply). Never reads clocks or I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from peergrid_controller.bargaining import BargainingConfig
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.delivery import DeliveryFault
from peergrid_controller.market import Trade


class ConfigError(ValueError):
    """A simulation config the market cannot take; the message names the field and why."""


@dataclass(frozen=True)
class SimulationConfig:
    bargaining: BargainingConfig = field(default_factory=BargainingConfig)
    with_central: bool = True
    central_time_limit_s: float = 120.0
    forecast_iterations: int = 24  # > 0: day-ahead price discovery first (forecast.py); the plans lean on it
    # a price forecast given from outside instead of the discovery (one per interval; e.g. the central
    # optimum's shadow prices, to measure what the per-interval market makes of perfect price information)
    forecast_prices: tuple[float, ...] | None = None
    # individual rationality (rationality.py): "strict" (default) trades and dispatches only within the MG's
    # day budget (its conventional day cost minus what it has paid), judged against falling back on the DSO
    # alone for the rest of the day, so no MG ends worse off than with the DSO alone; "trades" bounds each
    # trade by what the conventional alternative would trade and leaves dispatch to the plan; "off" trusts
    # the day-ahead forecast (more welfare, no guarantee)
    rationality: Literal["strict", "trades", "off"] = "strict"
    recommit_every: int = (
        4  # genset on/off re-decided (MILP) every this many intervals; dispatch-only LPs between
    )
    # "intraday": interval by interval bargaining against day-ahead indicative prices (the settings above);
    # "dayahead": forward trades for the whole day allocated by exchange ADMM (dayahead.py), each MG's
    # exact IR check, recorded through the market contract (forward.py); each MG then dispatches with its
    # trades fixed. `rationality` and the forecast settings do not apply to it (its check is exact).
    # The default stays "intraday" although day-ahead captured more of the central gain in the bench with the
    # same no-worse-off guarantee (docs/market.md): its day-level stability check fails wherever a genset
    # is, owner rules keep it from converging, and the per-interval bargaining's tests and the DSO console
    # are built on this mode; switching is one field here once those are settled.
    market: Literal["intraday", "dayahead"] = "intraday"
    dayahead: DayAheadConfig = field(default_factory=DayAheadConfig)
    # day-ahead only: MGs that do not deliver part of their forward trades (delivery.py) — these, and
    # `random_faults` of the other MGs with trades, drawn with `fault_seed` once the trades are known
    delivery_faults: tuple[DeliveryFault, ...] = ()
    random_faults: int = 0
    fault_seed: int = 0
    # the owner's risk allowance (rationality.py; intraday market, strict rationality only), currency per MG
    # per day: the MG's day budget starts this far above its conventional day cost, so its day ends at most
    # this far above it whatever its peers do. `risk_allowance` is every MG's but those `mg_risk_allowance`
    # names (each owner sets its own risk; names checked against the scenario by simulate). 0 everywhere,
    # the default, is the exact guarantee.
    risk_allowance: float = 0.0
    mg_risk_allowance: dict[str, float] = field(default_factory=dict)
    # day-ahead with an exchange fee (`dayahead.exchange_fee` > 0: uplift_fund.py): the make-whole is paid
    # from the fund, which holds `uplift_fund` micro-units carried over from earlier days before this day's
    # collection, `uplift_reserve` of them reserved by an earlier day (owed and not paid: no refund returns
    # it); what it holds above the reserve and `uplift_fund_cap` goes back to the day's fee payers (None: no
    # cap, nothing goes back - the chain's cap at its bound 10^15; the chain's genesis default 0 refunds all)
    uplift_fund: int = 0
    uplift_fund_cap: int | None = None
    uplift_reserve: int = 0

    def __post_init__(self) -> None:
        funds = [("uplift_fund", self.uplift_fund)]
        funds += [("uplift_fund_cap", self.uplift_fund_cap)] if self.uplift_fund_cap is not None else []
        funds += [("uplift_reserve", self.uplift_reserve)]
        for label, amount in funds:
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                raise ConfigError(f"{label} must be a whole number of micro-units >= 0, got {amount!r}")
        if self.uplift_reserve > self.uplift_fund:
            raise ConfigError(
                f"uplift_reserve ({self.uplift_reserve}) is part of uplift_fund ({self.uplift_fund}): at most it"
            )
        given = [("risk_allowance", self.risk_allowance)]
        given += [(f"mg_risk_allowance[{name!r}]", x) for name, x in sorted(self.mg_risk_allowance.items())]
        for label, x in given:
            amount = isinstance(x, int | float) and not isinstance(x, bool)
            if not (amount and math.isfinite(x) and x >= 0.0):
                raise ConfigError(f"{label} must be a finite amount >= 0, got {x!r}")
        if any(x > 0.0 for _, x in given) and (self.market != "intraday" or self.rationality != "strict"):
            raise ConfigError(
                "risk_allowance applies to the intraday market's strict rationality only "
                f"(market {self.market}, rationality {self.rationality})"
            )

    def allowance(self, mg: str) -> float:
        """The risk allowance of MG `mg`: its own where it has one, else every MG's."""
        return self.mg_risk_allowance.get(mg, self.risk_allowance)


@dataclass(frozen=True)
class IntervalResult:
    interval: int
    p2p_welfare: float
    central_welfare: float
    conventional_welfare: float
    rounds: int
    converged: bool
    stable: bool
    max_taker_gain: float
    max_pricing_gain: float
    mg_cost_p2p: dict[str, float]
    mg_cost_conventional: dict[str, float]
    trades: tuple[Trade, ...]  # as agreed
    # day-ahead: the same trades with the quantity delivered, i.e. settled (None: intraday, where dispatch
    # delivers every agreed trade)
    delivered: tuple[Trade, ...] | None = None


@dataclass(frozen=True)
class DayAheadSummary:
    iterations: int  # ADMM iterations (every MG solves once per iteration)
    solves: int
    recommits: int
    converged: bool
    primal_residual: float
    dual_residual: float
    declined: tuple[str, ...]  # MGs whose exact IR check failed
    max_deviation_gain: float  # day: largest gain of one MG deviating alone at the final prices
    prices: tuple[float, ...]
    # make-whole payments (uplift.py), currency units: paid in all, whether the payers' surplus covered
    # what was owed (else nothing is paid and the outcome is not stable) and by how much it fell short
    uplift_total: float = 0.0
    uplift_funded: bool = True
    uplift_shortfall: float = 0.0
    uplift_credit: dict[str, float] = field(default_factory=dict)  # per payee
    uplift_charge: dict[str, float] = field(default_factory=dict)  # per payer
    # re-solved with the credits and charges, each MG's gain valued at its own rules (uplift.py). Within
    # tolerance by construction whenever the uplift is funded: a payee's is 0 (its credit covers its gain),
    # every other MG's was within its tolerance already — so `stable` follows from `uplift_funded`, and this
    # figure shows the re-solve agrees, not that the prices support the outcome (max_deviation_gain does)
    max_deviation_gain_with_uplift: float = 0.0
    # funded, and no MG gains more than its tolerance with the payments (ex ante), valued at its own rules
    stable: bool = False
    # per MG rationed at its own floor or cap whose gain (less any credit) exceeds its tolerance: the gain
    # it keeps, which no uniform price removes; not paid, and not counted against `stable`
    rationed_at_own_rule: dict[str, float] = field(default_factory=dict)
    stop: str = "kwh"  # which stop ended the allocation (dayahead.Allocation.stop)
    # whether the ADMM's moves were signed transactions on the venue's chain (a venue without an exchange
    # recorder, e.g. the memory venue or a wrapper that hides it, allocates off the chain)
    moves_on_chain: bool = False
    # delivery (delivery.py): the faults played; per MG its own committed energy not delivered and a
    # counterparty's shortfall it covered with the DSO (kWh); credits withheld from MGs that did not deliver
    # and the charges not collected for them (currency; uplift_credit/uplift_charge are what was paid); per
    # MG how much its day (uplift included) cost above its conventional day (only those above it); the
    # imbalance compensation per MG, received (+) or paid (−) for the day (delivery.py)
    faults: tuple[DeliveryFault, ...] = ()
    shortfall_kwh: dict[str, float] = field(default_factory=dict)
    covered_kwh: dict[str, float] = field(default_factory=dict)
    uplift_withheld: dict[str, float] = field(default_factory=dict)
    uplift_refund: dict[str, float] = field(default_factory=dict)
    worse_than_conventional: dict[str, float] = field(default_factory=dict)
    compensation: dict[str, float] = field(default_factory=dict)
    # the exchange fee (nano per kWh per side; 0: none, and the fields below stay empty): each MG's fee for
    # the day and the fund (currency): before the day, collected, after the payout and the refund above the
    # cap (per fee payer); the uplift fields above are then the fund's payout (no charges)
    exchange_fee: int = 0
    fee_paid: dict[str, float] = field(default_factory=dict)
    fee_collected: float = 0.0
    fund_before: float = 0.0
    fund_after: float = 0.0
    fund_refund: dict[str, float] = field(default_factory=dict)
    # of the fund, the part reserved (owed and not paid: uplift_fund.py) before and after the day
    fund_reserve_before: float = 0.0
    fund_reserve_after: float = 0.0
    # before the make-whole: the largest of each MG's deviation gain over its tolerance, and the MGs whose
    # gain exceeds it (uplift.earns; what the make-whole owes them): how far the allocation's stop left the
    # day from stable before the payments (review28 R28-3: `stable` is after them). The gain is valued at
    # the MG's own rules as the make-whole values it (max_deviation_gain is not): being rationed at its own
    # floor or cap is worth nothing by its owner's declaration (rationed_at_own_rule reports it apart)
    max_gain_ratio: float = 0.0
    earning: tuple[str, ...] = ()
    # the largest ratio among `earning` with each genset MG's gensets held at its committed on/off
    # (deviation.at_own_commitment; 0 when nobody earns): what the value stop leaves at the MG's own
    # commitment, against max_gain_ratio, which adds re-committing them (no uniform price supports that)
    max_gain_ratio_held: float = 0.0


@dataclass(frozen=True)
class SimulationResult:
    scenario: str
    intervals: tuple[IntervalResult, ...]
    central_mip_gap: float
    dayahead: DayAheadSummary | None = None
    # the risk allowance each MG's day was run with (SimulationConfig.allowance); empty when every MG's is 0
    risk_allowance: dict[str, float] = field(default_factory=dict)
    # the clean premium each MG's owner paid over the day (rationality.premium_paid; the strict guard lets the
    # MG's day end this far above its conventional one); empty when none did
    premium_paid: dict[str, float] = field(default_factory=dict)

    def totals(self) -> dict[str, object]:
        names = sorted(self.intervals[0].mg_cost_p2p) if self.intervals else []
        return {
            "p2p_welfare": sum(i.p2p_welfare for i in self.intervals),
            "central_welfare": sum(i.central_welfare for i in self.intervals),
            "conventional_welfare": sum(i.conventional_welfare for i in self.intervals),
            "rounds_max": max((i.rounds for i in self.intervals), default=0),
            "converged": all(i.converged for i in self.intervals),
            "stable": all(i.stable for i in self.intervals),
            "mg_cost_p2p": {n: sum(i.mg_cost_p2p[n] for i in self.intervals) for n in names},
            "mg_cost_conventional": {
                n: sum(i.mg_cost_conventional[n] for i in self.intervals) for n in names
            },
        }
