"""Seeded synthetic feeders of N microgrids with four mixes (PV-heavy, storage, genset, load-heavy).

Promises: `synthetic_scenario(n, intervals, seed)` is a pure function of its arguments (same seed, same scenario,
byte for byte). Used by the benchmark and tests; the lab's scenarios come from YAML files instead.
Never reads files, clocks or the global random state.
"""

from __future__ import annotations

import math
import random

from peergrid_controller.model import (
    Battery,
    ContractRules,
    CostSegment,
    Genset,
    Load,
    Microgrid,
    PvArray,
    Scenario,
    Tariff,
)

MIXES = ("pv-heavy", "storage", "genset", "load-heavy")


def solar_shape(hour: float) -> float:
    """Clear-sky-like per-unit PV output: zero before 6 h and after 18 h, peak 1.0 at noon."""
    if hour <= 6.0 or hour >= 18.0:
        return 0.0
    return float(math.sin(math.pi * (hour - 6.0) / 12.0) ** 1.5)


def load_shape(hour: float, kind: str) -> float:
    """Per-unit demand: residential peaks morning and evening, commercial in office hours."""
    if kind == "commercial":
        return 0.35 + 0.65 * math.exp(-(((hour - 13.0) / 4.0) ** 2))
    return 0.3 + 0.45 * math.exp(-(((hour - 8.0) / 1.5) ** 2)) + 0.7 * math.exp(-(((hour - 19.5) / 2.0) ** 2))


def tou_retail(hour: float) -> float:
    if 17.0 <= hour < 21.0:
        return 0.30
    if 7.0 <= hour < 17.0:
        return 0.22
    return 0.14


def synthetic_scenario(
    n: int, intervals: int = 96, seed: int = 0, interval_hours: float = 0.25, rules: bool = False
) -> Scenario:
    """`rules=True` gives each MG owner-preset floors, caps, quantity limits and some clean-only buyers."""
    rng = random.Random(seed)
    hours = [(k + 0.5) * interval_hours % 24.0 for k in range(intervals)]
    tariff = Tariff(
        retail=tuple(tou_retail(h) for h in hours),
        feed_in=tuple(0.05 for _ in hours),
    )
    microgrids = []
    for i in range(n):
        mix = MIXES[i % len(MIXES)]
        cloud = [1.0 - 0.3 * rng.random() * (rng.random() < 0.2) for _ in hours]
        peak_load = rng.uniform(40.0, 120.0) * (2.0 if mix == "load-heavy" else 1.0)
        kind = "commercial" if rng.random() < 0.4 else "residential"
        pv_kw = peak_load * {"pv-heavy": 2.5, "storage": 1.2, "genset": 0.5, "load-heavy": 0.3}[mix]
        critical_share = rng.uniform(0.5, 0.8)
        demand = [peak_load * load_shape(h, kind) * rng.uniform(0.95, 1.05) for h in hours]
        pv = PvArray(
            "pv", tuple(round(pv_kw * solar_shape(h) * c, 3) for h, c in zip(hours, cloud, strict=True))
        )
        load = Load(
            "load",
            critical_kw=tuple(round(d * critical_share, 3) for d in demand),
            sheddable_kw=tuple(round(d * (1 - critical_share), 3) for d in demand),
            voll=rng.choice([0.6, 1.0, 2.0]),
        )
        batteries: tuple[Battery, ...] = ()
        if mix in ("storage", "pv-heavy"):
            size = peak_load * (3.0 if mix == "storage" else 1.0)
            batteries = (
                Battery(
                    "battery",
                    capacity_kwh=round(size, 1),
                    max_charge_kw=round(size / 3, 1),
                    max_discharge_kw=round(size / 3, 1),
                    soc_initial=0.5,
                ),
            )
        gensets: tuple[Genset, ...] = ()
        if mix == "genset":
            rated = round(peak_load * 1.2, 1)
            min_kw = round(rated * 0.3, 1)
            half = round((rated - min_kw) / 2, 3)
            base = rng.uniform(0.10, 0.16)
            gensets = (
                Genset(
                    "genset",
                    max_kw=rated,
                    min_kw=min_kw,
                    segments=(
                        CostSegment(half, round(base, 4)),
                        CostSegment(rated - min_kw - half, round(base + 0.04, 4)),
                    ),
                    min_kw_cost_per_h=round(min_kw * (base + 0.03), 3),
                    startup_cost=round(rated * 0.02, 3),
                    ramp_kw_per_interval=round(
                        min(rated * 2.0 * interval_hours, rated), 1
                    ),  # half rating per 15 min
                    min_up_intervals=max(1, round(1.0 / interval_hours)),  # one hour
                    min_down_intervals=max(1, round(1.0 / interval_hours)),
                ),
            )
        mg_rules = ContractRules()
        if rules:
            mg_rules = ContractRules(
                floor_price=round(rng.uniform(0.05, 0.09), 3),
                cap_price=round(rng.uniform(0.2, 0.3), 3),
                max_quantity_kwh=round(peak_load * 0.5, 1),
                clean_only=rng.random() < 0.15,
                clean_premium=round(rng.uniform(0.0, 0.03), 3),
            )
        microgrids.append(
            Microgrid(
                f"mg{i + 1:03d}",
                tariff,
                pv=(pv,),
                batteries=batteries,
                gensets=gensets,
                loads=(load,),
                rules=mg_rules,
            )
        )
    return Scenario(f"synthetic-{n}-seed{seed}", interval_hours, tuple(microgrids))
