"""Small hand-built microgrids for the controller tests (flat profiles make the answers hand-computable)."""

from __future__ import annotations

from peergrid_controller.model import (
    Battery,
    ContractRules,
    CostSegment,
    Genset,
    Load,
    Microgrid,
    PvArray,
    Tariff,
)


def flat(value: float, n: int) -> tuple[float, ...]:
    return tuple(value for _ in range(n))


def tariff(n: int, retail: float = 0.25, feed_in: float = 0.05, **limits: float) -> Tariff:
    return Tariff(flat(retail, n), flat(feed_in, n), **limits)


def load_only(
    name: str, kw: float, n: int = 4, rules: ContractRules | None = None, **tariff_kw: float
) -> Microgrid:
    return Microgrid(
        name,
        tariff(n, **tariff_kw),
        loads=(Load("load", flat(kw, n), flat(0.0, n)),),
        rules=rules or ContractRules(),
    )


def pv_site(
    name: str, pv_kw: float, load_kw: float, n: int = 4, rules: ContractRules | None = None
) -> Microgrid:
    return Microgrid(
        name,
        tariff(n),
        pv=(PvArray("pv", flat(pv_kw, n)),),
        loads=(Load("load", flat(load_kw, n), flat(0.0, n)),),
        rules=rules or ContractRules(),
    )


def genset_site(name: str, n: int = 8, **genset_kw: float) -> Microgrid:
    params: dict[str, float] = {"max_kw": 100.0, "min_kw": 30.0, "min_kw_cost_per_h": 4.5}
    params.update(genset_kw)
    gen = Genset(
        "gen",
        max_kw=params["max_kw"],
        min_kw=params["min_kw"],
        segments=(CostSegment(params["max_kw"] - params["min_kw"], 0.15),),
        min_kw_cost_per_h=params["min_kw_cost_per_h"],
        min_up_intervals=int(genset_kw.get("min_up", 1)),
        min_down_intervals=int(genset_kw.get("min_down", 1)),
    )
    return Microgrid(name, tariff(n), gensets=(gen,), loads=(Load("load", flat(50.0, n), flat(0.0, n)),))


def battery_site(name: str, n: int = 8) -> Microgrid:
    retail = tuple(0.10 if k < n // 2 else 0.30 for k in range(n))
    return Microgrid(
        name,
        Tariff(retail, flat(0.05, n)),
        batteries=(
            Battery("bat", capacity_kwh=40.0, max_charge_kw=20.0, max_discharge_kw=20.0, soc_initial=0.5),
        ),
        loads=(Load("load", flat(10.0, n), flat(0.0, n)),),
    )
