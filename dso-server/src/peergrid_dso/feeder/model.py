"""The feeder as plain, immutable data: buses, loads, branches with ratings, MG connection buses.

Promises: a `Feeder` is self-consistent (bus indices in range, one root, positive impedances) or its
constructor `build_feeder` raises `FeederDataError` naming the offending item. Per-unit values use the
feeder's own `base_mva` and `base_kv`. Branch numbers are 1-based in file order, as papers print them.
Never imports pandapower: services compute on this, pandapower only validates (see `acvalidate`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace


class FeederDataError(ValueError):
    """Network data that cannot describe a feeder (bad index, zero impedance, no root...)."""


@dataclass(frozen=True)
class Branch:
    number: int  # 1-based, file order
    from_bus: int  # 0-based bus index
    to_bus: int
    r_pu: float
    x_pu: float
    rating_mva: float  # thermal limit at nominal voltage; math.inf when unknown
    closed: bool  # status in the data file (ties are open)


@dataclass(frozen=True)
class Feeder:
    name: str
    base_mva: float
    base_kv: float
    bus_ids: tuple[int, ...]  # external bus numbers, index = internal bus index
    load_p_mw: tuple[float, ...]
    load_q_mvar: tuple[float, ...]
    root: int  # substation bus index (slack)
    branches: tuple[Branch, ...]
    mg_buses: Mapping[str, int] = field(default_factory=dict)  # MG id -> bus index
    vmin_pu: float = 0.90
    vmax_pu: float = 1.05
    root_vm_pu: float = 1.0

    @property
    def n_bus(self) -> int:
        return len(self.bus_ids)

    def bus_index(self, bus_id: int) -> int:
        try:
            return self.bus_ids.index(bus_id)
        except ValueError:
            raise FeederDataError(f"{self.name}: no bus {bus_id}") from None

    def branch(self, number: int) -> Branch:
        if not 1 <= number <= len(self.branches):
            raise FeederDataError(f"{self.name}: no branch {number} (branches are 1..{len(self.branches)})")
        return self.branches[number - 1]

    def initially_open(self) -> tuple[int, ...]:
        return tuple(b.number for b in self.branches if not b.closed)

    def with_branches(self, extra: Iterable[Branch]) -> Feeder:
        return _checked(replace(self, branches=self.branches + tuple(extra)))

    def with_mg_buses(self, mg_buses: Mapping[str, int]) -> Feeder:
        """MG id -> external bus number."""
        return _checked(replace(self, mg_buses={mg: self.bus_index(bus) for mg, bus in mg_buses.items()}))

    def with_ratings(self, rating_mva: Mapping[int, float]) -> Feeder:
        """Branch number -> rating (MVA). Unnamed branches keep theirs."""
        for number in rating_mva:
            self.branch(number)
        return replace(
            self,
            branches=tuple(
                replace(b, rating_mva=rating_mva.get(b.number, b.rating_mva)) for b in self.branches
            ),
        )


def ka_to_mva(i_ka: float, kv: float) -> float:
    return math.sqrt(3.0) * kv * i_ka


def build_feeder(**kwargs: object) -> Feeder:
    return _checked(Feeder(**kwargs))  # type: ignore[arg-type]


def _checked(f: Feeder) -> Feeder:
    n = f.n_bus
    if n < 2:
        raise FeederDataError(f"{f.name}: a feeder needs at least two buses")
    if len(set(f.bus_ids)) != n:
        raise FeederDataError(f"{f.name}: duplicate bus numbers")
    if len(f.load_p_mw) != n or len(f.load_q_mvar) != n:
        raise FeederDataError(f"{f.name}: load vectors do not match the bus count")
    if not 0 <= f.root < n:
        raise FeederDataError(f"{f.name}: root bus index {f.root} out of range")
    if not 0 < f.vmin_pu < f.vmax_pu:
        raise FeederDataError(f"{f.name}: voltage limits {f.vmin_pu}..{f.vmax_pu} are not an interval")
    for k, b in enumerate(f.branches, start=1):
        if b.number != k:
            raise FeederDataError(
                f"{f.name}: branch numbers must run 1..n in order (found {b.number} at {k})"
            )
        if not (0 <= b.from_bus < n and 0 <= b.to_bus < n) or b.from_bus == b.to_bus:
            raise FeederDataError(f"{f.name}: branch {k} joins invalid buses")
        if not (math.isfinite(b.r_pu) and math.isfinite(b.x_pu)) or b.r_pu < 0 or b.x_pu < 0:
            raise FeederDataError(f"{f.name}: branch {k} has invalid impedance r={b.r_pu} x={b.x_pu}")
        if b.r_pu + b.x_pu <= 0:
            raise FeederDataError(f"{f.name}: branch {k} has zero impedance")
        if not b.rating_mva > 0:
            raise FeederDataError(f"{f.name}: branch {k} has a non-positive rating")
    for mg, bus in f.mg_buses.items():
        if not 0 <= bus < n or bus == f.root:
            raise FeederDataError(f"{f.name}: MG {mg!r} must connect to a non-substation bus")
    return f
