"""The microgrid as the scheduler sees it: natures (PV, battery, genset, load), tariffs and contract rules.

Promises: plain frozen dataclasses with per-interval profiles already expanded to the simulation's intervals;
units are kW for power, kWh for energy, currency per kWh for prices and hours for the interval length.
Assumes validation happened when the objects were built (see `scenario.py`); `validate_microgrid` re-checks
the invariants the optimiser relies on. Never holds device vendor details, sockets or clocks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field


class ModelError(ValueError):
    """A microgrid description that the scheduler cannot work with (names the field)."""


@dataclass(frozen=True)
class PvArray:
    name: str
    available_kw: tuple[float, ...]  # forecast per interval, before curtailment


@dataclass(frozen=True)
class Battery:
    name: str
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    efficiency_charge: float = 0.95
    efficiency_discharge: float = 0.95
    soc_min: float = 0.1  # fractions of capacity
    soc_max: float = 0.95
    soc_initial: float = 0.5
    wear_cost: float = 0.005  # per kWh discharged: keeps the schedule from cycling for nothing


@dataclass(frozen=True)
class CostSegment:
    """One convex piece of the genset's fuel cost: `width_kw` more output at `cost_per_kwh`."""

    width_kw: float
    cost_per_kwh: float


@dataclass(frozen=True)
class Genset:
    name: str
    max_kw: float
    min_kw: float
    segments: tuple[CostSegment, ...]  # widths sum to max_kw - min_kw, costs non-decreasing
    min_kw_cost_per_h: float = 0.0  # fuel cost of running at min_kw for one hour
    startup_cost: float = 0.0
    ramp_kw_per_interval: float = math.inf
    min_up_intervals: int = 1
    min_down_intervals: int = 1
    initially_on: bool = False
    initial_kw: float = 0.0
    intervals_in_state: int = 1_000  # how long it has been on (or off) before the horizon starts


@dataclass(frozen=True)
class Load:
    name: str
    critical_kw: tuple[float, ...]  # always served
    sheddable_kw: tuple[float, ...]  # may be shed at the value of lost load
    voll: float = 1.0  # value of lost load, per kWh


@dataclass(frozen=True)
class Tariff:
    """DSO prices per interval: the MG buys at retail and sells at feed-in."""

    retail: tuple[float, ...]
    feed_in: tuple[float, ...]
    max_import_kw: float = math.inf
    max_export_kw: float = math.inf


@dataclass(frozen=True)
class ContractRules:
    """The owner's preset rules, enforced by the chain's market contract (not by the MGMC's goodwill)."""

    floor_price: float = 0.0  # never sell below
    cap_price: float = math.inf  # never buy above
    max_quantity_kwh: float = math.inf  # per interval, either side
    clean_only: bool = False  # buy only renewable-backed offers
    clean_premium: float = 0.0  # extra per kWh this buyer will pay for renewable-backed energy


@dataclass(frozen=True)
class Microgrid:
    name: str
    tariff: Tariff
    pv: tuple[PvArray, ...] = ()
    batteries: tuple[Battery, ...] = ()
    gensets: tuple[Genset, ...] = ()
    loads: tuple[Load, ...] = ()
    rules: ContractRules = field(default_factory=ContractRules)

    @property
    def intervals(self) -> int:
        return len(self.tariff.retail)


@dataclass(frozen=True)
class Scenario:
    name: str
    interval_hours: float
    microgrids: tuple[Microgrid, ...]

    @property
    def intervals(self) -> int:
        return self.microgrids[0].intervals if self.microgrids else 0


def _finite_nonneg(where: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ModelError(f"{where}: must be finite and >= 0, got {value}")


def validate_microgrid(mg: Microgrid) -> None:
    """Raise ModelError naming the first field that breaks an invariant the optimiser relies on."""
    n = mg.intervals
    if n == 0:
        raise ModelError(f"{mg.name}: tariff has no intervals")
    for label, series in (("tariff.retail", mg.tariff.retail), ("tariff.feed_in", mg.tariff.feed_in)):
        if len(series) != n:
            raise ModelError(f"{mg.name}: {label} has {len(series)} intervals, expected {n}")
        if not all(math.isfinite(p) for p in series):
            raise ModelError(f"{mg.name}: {label} has a non-finite price")
    for pv in mg.pv:
        if len(pv.available_kw) != n:
            raise ModelError(
                f"{mg.name}.{pv.name}: forecast has {len(pv.available_kw)} intervals, expected {n}"
            )
        for v in pv.available_kw:
            _finite_nonneg(f"{mg.name}.{pv.name}.available_kw", v)
    for load in mg.loads:
        for label, series in (("critical_kw", load.critical_kw), ("sheddable_kw", load.sheddable_kw)):
            if len(series) != n:
                raise ModelError(f"{mg.name}.{load.name}: {label} has {len(series)} intervals, expected {n}")
            for v in series:
                _finite_nonneg(f"{mg.name}.{load.name}.{label}", v)
        _finite_nonneg(f"{mg.name}.{load.name}.voll", load.voll)
    for b in mg.batteries:
        where = f"{mg.name}.{b.name}"
        for label, v in (
            ("capacity_kwh", b.capacity_kwh),
            ("max_charge_kw", b.max_charge_kw),
            ("max_discharge_kw", b.max_discharge_kw),
            ("wear_cost", b.wear_cost),
        ):
            _finite_nonneg(f"{where}.{label}", v)
        if not (0 < b.efficiency_charge <= 1 and 0 < b.efficiency_discharge <= 1):
            raise ModelError(f"{where}: efficiencies must be in (0, 1]")
        if not (0 <= b.soc_min <= b.soc_max <= 1):
            raise ModelError(f"{where}: need 0 <= soc_min <= soc_max <= 1")
        if not (b.soc_min <= b.soc_initial <= b.soc_max):
            raise ModelError(f"{where}: soc_initial {b.soc_initial} outside [soc_min, soc_max]")
    for g in mg.gensets:
        where = f"{mg.name}.{g.name}"
        _finite_nonneg(f"{where}.max_kw", g.max_kw)
        _finite_nonneg(f"{where}.min_kw", g.min_kw)
        if g.min_kw > g.max_kw:
            raise ModelError(f"{where}: min_kw {g.min_kw} exceeds max_kw {g.max_kw}")
        width = sum(s.width_kw for s in g.segments)
        if abs(width - (g.max_kw - g.min_kw)) > 1e-6:
            raise ModelError(f"{where}: cost segments cover {width} kW, expected max_kw - min_kw")
        costs = [s.cost_per_kwh for s in g.segments]
        if any(b < a for a, b in itertools.pairwise(costs)):
            raise ModelError(f"{where}: cost segments must have non-decreasing cost (convex cost curve)")
        if g.min_up_intervals < 1 or g.min_down_intervals < 1:
            raise ModelError(f"{where}: min up/down times are at least one interval")
        if g.ramp_kw_per_interval <= 0:
            raise ModelError(f"{where}: ramp_kw_per_interval must be > 0")
    r = mg.rules
    if r.cap_price < 0 or r.floor_price < 0 or r.max_quantity_kwh < 0 or r.clean_premium < 0:
        raise ModelError(f"{mg.name}.rules: prices, quantity and premium must be >= 0")
