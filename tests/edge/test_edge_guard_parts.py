"""The guard's pure parts (`guard.py`): the forecast every MGMC derives alike, the mix of two plans the strict
dispatch sends the DERs, the guard's choice against the simulation's own (`Guarded.dispatch`), the record."""

from __future__ import annotations

from dataclasses import replace

import pytest
from edge_helpers import pv_battery_schedule
from test_trader import traded_chain

from peergrid_controller.builder import MgState
from peergrid_controller.rationality import Guarded
from peergrid_controller.schedule import MgSchedule
from peergrid_edge.guard import DayBudget, choose, guard_curve, market_forecast, mix, record


def test_the_forecast_is_the_sessions_prices_else_the_chains_latest_agreed_price_else_none() -> None:
    chain, _ = traded_chain(7)  # interval 7 agreed 6 kWh at 0.120 and 2 kWh at 0.160: 0.130 per kWh
    session = tuple(100_000_000 + k * 1_000_000 for k in range(12))  # nano-currency per kWh
    assert market_forecast(session, chain.state, 9, 12) == pytest.approx([0.109, 0.110, 0.111])
    # no completed session (or one that does not cover the day): the latest interval before t with trades,
    # held flat, however many empty intervals came since
    assert market_forecast(None, chain.state, 9, 12) == pytest.approx([0.130] * 3)
    assert market_forecast(session[:8], chain.state, 11, 12) == pytest.approx([0.130])
    assert market_forecast(None, chain.state, 8, 10) == pytest.approx([0.130] * 2)
    assert market_forecast(None, chain.state, 7, 10) is None  # nothing agreed before interval 7
    assert market_forecast(None, chain.state, 0, 10) is None


def test_a_mix_of_two_plans_is_each_share_of_both() -> None:
    _, sched = pv_battery_schedule(4)
    a = sched.dispatch(10.0)
    b = sched.dispatch(-5.0)
    assert mix(a, b, 1.0) == a and mix(a, b, 0.0) == b
    half = mix(a, b, 0.25)
    assert half.battery_kw[0] == pytest.approx(0.25 * a.battery_kw[0] + 0.75 * b.battery_kw[0])
    assert half.p2p_net_export == pytest.approx(tuple(0.25 * x + 0.75 * y for x, y in
                                                      zip(a.p2p_net_export, b.p2p_net_export, strict=True)))  # fmt: skip
    assert half.cost == pytest.approx(0.25 * a.cost + 0.75 * b.cost)


@pytest.mark.parametrize("left", [1e9, None, -1e9])
def test_the_strict_choice_is_the_simulations_and_its_plan_meets_the_trade(left: float | None) -> None:
    """Against `Guarded.dispatch` itself: a roomy budget follows the plan, the budget at the conventional
    value of where the MG stands takes the alternative (or a share of the plan), a budget below it the
    alternative whole; the plan handed to the DERs meets the agreed trade and costs what the guard booked."""
    mg, _ = pv_battery_schedule(6)
    state = replace(MgState.initial(mg), soc_kwh=(100.0,))
    lean = MgSchedule(mg, 1.0, start=0, state=state, p2p_prices=[0.2] * 6)  # leans on a peer price
    lean.solve()
    fallback = Guarded.fallback(mg, 1.0, 0, state, lean.commitment(), left or 0.0)
    budget = DayBudget("strict", 0.0, fallback.value if left is None else left)
    curve, guard = guard_curve(budget, mg, 1.0, 0, state, lean, lean.response_curve(0.05, 0.25), 0.05, 0.25,
                               1e9)  # fmt: skip
    assert guard is not None and curve.at(0.25) <= lean.response_curve(0.05, 0.25).at(0.25) + 1e-9
    trade_kw = 5.0
    chosen = choose(budget, guard, 0, lean, trade_kw, 5.0 * 0.15)
    _, cost, state_after = guard.dispatch(type(guard.alone)(lean, None), trade_kw, 5.0 * 0.15, budget.left)
    assert chosen.cost == pytest.approx(cost) and chosen.state == state_after
    assert chosen.plan.p2p_net_export[0] == pytest.approx(trade_kw)
    expected = {1e9: "plan", -1e9: "fallback"}
    assert chosen.how == expected[left] if left in expected else chosen.how in ("plan", "fallback", "mixed")
    fields = record(budget, chosen, cost - 0.75 + 0.5)
    assert fields["guard"]["dso_cost"] == pytest.approx(0.5)  # what the guard did not choose is named


def test_off_and_trades_dispatch_the_plan_and_record_it_so() -> None:
    _, sched = pv_battery_schedule(4)
    for mode in ("off", "trades"):
        budget = DayBudget(mode, 0.0, 10.0)
        chosen = choose(budget, None, 0, sched, 3.0, 0.45)
        assert (chosen.sched, chosen.how, chosen.cost) == (sched, "unguarded", None)
        assert chosen.plan.p2p_net_export[0] == pytest.approx(3.0)
        held = choose(budget, None, 0, sched, 3.0, 0.45, forward_held=True)
        assert held.how == ("unguarded" if mode == "off" else "forward")
    assert DayBudget("strict", 2.0, 10.0, 4.0).status() == {
        "mode": "strict", "risk_allowance": 2.0, "budget_day": 10.0, "budget_left": 6.0,
    }  # fmt: skip
    assert record(DayBudget("off", 0.0, 10.0, 4.0), chosen, 1.0) == {
        "budget_left": 6.0, "risk_allowance": 0.0, "budget_day": 10.0,
        "guard": {"mode": "off", "dispatch": "unguarded"},
    }  # fmt: skip
