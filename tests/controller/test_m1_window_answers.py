"""An MG that states a trading window answers the day-ahead session with nothing outside it (M1, review30 R30-2).

An MGMC can trade only inside the window its first forward accept states (`exchange.accept`'s `window`), so a
position it answered outside moved the session's prices with energy that never clears, and left its make-whole
claim two days to choose from (R30-2). `DayAheadConfig.windows` gives `allocate` each MG's window: its day is
solved with P2P fixed to nothing outside (`dayjudge.OwnRules`' range [0, 0] there), which is not its whole
day's answer clipped: a battery that filled inside the window for a sale outside sells inside instead.
"""

from __future__ import annotations

import dataclasses

import pytest

from peergrid_controller.dayahead import allocate
from peergrid_controller.dayexchange import DayAheadConfig, DayAheadError, answer
from peergrid_controller.dayjudge import OwnRules
from peergrid_controller.daymodel import DayModel
from peergrid_controller.model import Battery, ContractRules, Load, Microgrid, PvArray, Scenario, Tariff
from peergrid_controller.simrecords import SimulationConfig
from peergrid_controller.simulate import simulate
from peergrid_controller.synth import synthetic_scenario

KWH = DayAheadConfig(value_per_kwh=0.0)  # the kWh stops


def free_day() -> Scenario:
    """Four MGs, eight 3-hour intervals, no gensets; mg001 and mg002 have batteries."""
    sc = synthetic_scenario(4, 8, seed=0, interval_hours=3)
    return Scenario(
        sc.name, sc.interval_hours, tuple(dataclasses.replace(m, gensets=()) for m in sc.microgrids)
    )


WINDOWS = (("mg001", 2, 5), ("mg002", 3, 7), ("mg004", 0, 5))  # mg003 states none: the whole session


def test_each_mg_answers_nothing_outside_its_window() -> None:
    day = free_day()
    whole = allocate(day, KWH)
    windowed = allocate(day, dataclasses.replace(KWH, windows=WINDOWS))
    assert windowed.converged and windowed.stop == "kwh"
    for name, first, last in WINDOWS:
        outside = [q for t, q in enumerate(windowed.positions[name]) if not first <= t <= last]
        assert outside == [0.0] * len(outside), (name, windowed.positions[name])
        assert any(q != 0.0 for q in whole.positions[name][:first] + whole.positions[name][last + 1 :]), name
    # mg001's battery: inside its window its answer is its day's without the trades outside, not those
    # trades cut off its whole day's answer (interval 2: 85.604 kWh sold where the whole day sold 50.229)
    clipped = [q if 2 <= t <= 5 else 0.0 for t, q in enumerate(whole.positions["mg001"])]
    assert list(windowed.positions["mg001"]) != clipped
    # only mg003 may trade in interval 1, and nobody with it: it trades nothing there either
    assert all(q[1] == 0.0 for q in windowed.positions.values())


def test_a_window_over_the_whole_session_is_no_window() -> None:
    day = free_day()
    whole = allocate(day, KWH)
    every = allocate(day, dataclasses.replace(KWH, windows=tuple((mg.name, 0, 7) for mg in day.microgrids)))
    assert every == whole


def store(n: int = 4) -> Microgrid:
    """14 kW of PV in interval 1 only, a 10-kWh lossless battery, no load (tests/edge/test_edge_fee_claim.py)."""
    pv = tuple(14.0 if t == 1 else 0.0 for t in range(n))
    battery = Battery(
        "b", 10.0, 10.0, 10.0, 1.0, 1.0, soc_min=0.0, soc_max=1.0, soc_initial=0.0, wear_cost=0.0
    )
    return Microgrid("store", Tariff((0.30,) * n, (0.05,) * n), pv=(PvArray("pv", pv),), batteries=(battery,),
                     loads=(Load("none", (0.0,) * n, (0.0,) * n),), rules=ContractRules(max_quantity_kwh=20.0))  # fmt: skip


def test_the_answer_is_its_day_solved_inside_the_window_not_its_whole_day_clipped() -> None:
    """At 0.20 0.20 0.20 0.28 the store's whole day sells its 14 kWh of PV in 1, buys 10 kWh in 2 and sells
    them from its battery in 3 at 0.28. Clipped to its window 1-2 that is 14 kWh sold and 10 bought, a
    purchase its dispatch holds for a sale it can never make (its battery's 10 kWh then fed in at 0.05).
    Solved inside the window it sells its 14 kWh there and buys nothing."""
    prices, mg = (0.20, 0.20, 0.20, 0.28), store()

    def answered(window: range | None) -> tuple[int, ...]:
        rules = OwnRules(mg, 1.0, 4, KWH.fee_margin, KWH.resolution_kwh, window=window)
        return answer(DayModel(mg, 1.0), prices, rules.bounds(), rules.fees())[1]

    assert answered(None) == (0, 14_000, -10_000, 10_000)
    inside = answered(range(1, 3))
    assert inside[0] == inside[3] == 0 and inside[1] + inside[2] == 14_000 and min(inside) == 0, inside


@pytest.mark.parametrize(
    ("windows", "why"),
    [
        ((("mg001", 3, 2),), r"0 <= first <= last whole intervals, got \('mg001', 3, 2\)"),
        ((("mg001", -1, 2),), r"0 <= first <= last"),
        ((("mg001", 1.0, 2),), r"0 <= first <= last"),
        ((("mg001", 1),), r"\(MG name, first, last\)"),
        ((3,), r"\(MG name, first, last\)"),
        ((("mg001", 0, 1), ("mg001", 2, 3)), r"names 'mg001' more than once"),
    ],
)
def test_a_malformed_window_is_refused_with_what_it_must_be(windows: object, why: str) -> None:
    with pytest.raises(DayAheadError, match=why):
        DayAheadConfig(windows=windows)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("windows", "why"),
    [
        ((("mg009", 0, 1),), "names 'mg009', which is no microgrid of the scenario"),
        ((("mg002", 3, 8),), r"mg002's window \[3, 8\] ends past the session's last interval \(7\)"),
    ],
)
def test_a_window_the_scenario_does_not_have_is_refused_before_the_session(windows: object, why: str) -> None:
    with pytest.raises(DayAheadError, match=why):
        allocate(free_day(), DayAheadConfig(windows=windows))  # type: ignore[arg-type]


def test_the_simulations_stability_check_deviates_each_mg_inside_its_window() -> None:
    """An MG that answered the session as a day trading only its window is judged deviating only there: a gain
    outside it is none its commitment cost it. Before, the check let it deviate over the whole day, and a day
    every MG of which trades 2-5 was unstable by 52.77 (made-whole unfunded); the mixed windows by 108.39."""
    day = free_day()
    for windows in ((tuple((mg.name, 2, 5) for mg in day.microgrids)), WINDOWS):
        config = SimulationConfig(
            with_central=False, market="dayahead", dayahead=DayAheadConfig(windows=windows)
        )
        result = simulate(day, config).dayahead
        assert result is not None and result.stable, (windows, result)
        assert result.max_deviation_gain < 1.0, windows  # the mixed windows: 0.534, within the tolerance
