"""A member that owes decides its genset commitment and its clean switch with its buying side closed
(`dayahead_rounds.commit` and `switch` take the agent's `_bounds` seam, E13): its answers are solved so
(`DayAheadAgent._bounds`, tests/edge/test_edge_dayahead_debtor.py), and a decision taken as if it could buy
would fix a commitment or a switch for a day in which it cannot.

The rounds' two decisions are driven directly on a stand-in agent whose own rules leave purchases open and
whose `_bounds` closes them, each decision's solver call watched: it must be given the `_bounds` range.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_controller.dayahead import starting_prices
from peergrid_controller.dayexchange import Book, DayAheadConfig, nano
from peergrid_controller.model import Scenario
from peergrid_controller.synth import synthetic_scenario
from peergrid_edge import dayahead_rounds, debts

DAY: Scenario = synthetic_scenario(4, 4, seed=1, interval_hours=1.0)
CFG = DayAheadConfig()


def debtor(name: str, clean: bool) -> SimpleNamespace:
    """A stand-in agent for MG `name` one step into a session: its own rules open both sides, its `_bounds`
    (it owes) closes its buying side."""
    mg = next(mg for mg in DAY.microgrids if mg.name == name)
    n = DAY.intervals
    open_bounds = ([-50.0] * n, [50.0] * n)
    prices = [nano(p) for p in starting_prices(DAY)] * (2 if clean else 1)
    book = Book(CFG, prices, len(DAY.microgrids))
    book.take([tuple(0 for _ in prices) for _ in DAY.microgrids])
    rules = SimpleNamespace(bounds=lambda: open_bounds, fees=lambda: (None, None))
    return SimpleNamespace(
        mg=mg, dt=DAY.interval_hours, cfg=CFG, book=book, clean=clean, rules=rules,
        _bounds=lambda: debts.sales_only_bounds(open_bounds), commitment=None, switch=None,
    )  # fmt: skip


def test_a_debtor_decides_its_commitment_with_its_buying_side_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = debtor("mg003", clean=False)  # the genset MG
    traded: list[tuple[Any, ...]] = []
    real = dayahead_rounds.model_for

    def watched(*args: Any, **kwargs: Any) -> Any:
        model = real(*args, **kwargs)
        trade = model.trade
        model.trade = lambda *a: (traded.append(a), trade(*a))[1]
        return model

    monkeypatch.setattr(dayahead_rounds, "model_for", watched)
    dayahead_rounds.commit(agent, (0.0,) * DAY.intervals)  # type: ignore[arg-type]
    lo, hi = traded[0][1], traded[0][2]  # the commitment MILP's range (the first model built)
    assert (list(lo), list(hi)) == agent._bounds()
    assert min(lo) == 0.0  # no purchase anywhere, where its own rules would have opened one
    assert agent.commitment is not None and len(agent.commitment) == len(agent.mg.gensets)


def test_a_debtor_decides_its_clean_switch_with_its_buying_side_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = debtor("mg001", clean=True)  # a clean seller (no genset, not clean-only)
    seen: list[tuple[Any, ...]] = []
    real = dayahead_rounds.decide_switch

    def watched(*args: Any) -> Any:
        seen.append(args[4])  # (mg, dt, prices, rho, bounds, ...)
        return real(*args)

    monkeypatch.setattr(dayahead_rounds, "decide_switch", watched)
    model = dayahead_rounds.switch(agent, (0.0,) * (2 * DAY.intervals))  # type: ignore[arg-type]
    assert seen == [agent._bounds()]
    assert len(agent.switch) == DAY.intervals
    # the switch's model answers within that range: nothing bought, general or clean
    model.trade(agent.book.price_floats, *agent._bounds(), None, None)
    answer = model.solve()
    n = DAY.intervals
    assert all(g + c >= -1e-9 for g, c in zip(answer[:n], answer[n:], strict=True))
