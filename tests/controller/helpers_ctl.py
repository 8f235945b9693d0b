"""Small hand-built microgrids for the controller tests (flat profiles make the answers hand-computable), and
`AllocationTape`: one day's allocation solved once for tests that run it on several venues."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from peergrid_controller.dayahead import Allocation, allocate
from peergrid_controller.dayexchange import DayAheadConfig, ExchangeRecorder, keeps_clean
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


# the calls allocate makes on its recorder (dayexchange.ExchangeRecorder), each answered by the recorder
RECORDER_CALLS = ("open", "position", "settled", "judgements", "step", "close")
Call = tuple[str, tuple[Any, ...], dict[str, Any], Any]


class AllocationTape:
    """`allocate` (simulate.py's, same signature) that solves each day once. The first call for a (scenario,
    config, opening prices, kind of recorder) runs the real allocate and tapes every call it makes on the
    recorder with the answer; a later call for the same day, with another venue's recorder, plays those
    calls onto it in order, each answer checked to be the taped one (AssertionError otherwise), and returns
    the same allocation. The new venue's chain then holds the same moves: only the MGs' solving is skipped,
    which the answers show the same. For CLI tests that run one day on several venues (settling options,
    transport): install with `monkeypatch.setattr(simulate_module, "allocate", TAPE)`."""

    def __init__(self) -> None:
        self.taped: dict[tuple[object, ...], tuple[Allocation, list[Call]]] = {}
        self.played = 0

    def __call__(
        self,
        scenario: Scenario,
        config: DayAheadConfig | None = None,
        initial_prices: Sequence[float] | None = None,
        recorder: ExchangeRecorder | None = None,
    ) -> Allocation:
        key = (
            scenario,
            config,
            None if initial_prices is None else tuple(initial_prices),
            recorder is None,
            keeps_clean(recorder),
        )
        if key in self.taped:
            allocation, calls = self.taped[key]
            for name, args, kwargs, answer in calls:
                assert getattr(recorder, name)(*args, **kwargs) == answer, (name, args, kwargs)
            self.played += 1
            return allocation
        calls: list[Call] = []
        if recorder is not None:
            for name in RECORDER_CALLS:
                setattr(recorder, name, _taping(name, getattr(recorder, name), calls))
        try:
            allocation = allocate(scenario, config, initial_prices, recorder)
        finally:
            if recorder is not None:
                for name in RECORDER_CALLS:
                    vars(recorder).pop(name, None)
        self.taped[key] = (allocation, calls)
        return allocation


def _taping(name: str, real: Callable[..., Any], calls: list[Call]) -> Callable[..., Any]:
    def taped(*args: Any, **kwargs: Any) -> Any:
        answer = real(*args, **kwargs)
        calls.append((name, copy.deepcopy(args), copy.deepcopy(kwargs), copy.deepcopy(answer)))
        return answer

    return taped
