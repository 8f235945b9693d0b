"""`baselines.interval_costs` on an empty day, through its caller `forward_accept.dispatch` (R10: an MG whose
forward session cleared nothing has an empty `net_wh`; pricing its day raised IndexError).
"""

from __future__ import annotations

import pytest
from helpers_ctl import battery_site

from peergrid_controller import baselines, forward_accept
from peergrid_controller.model import Scenario
from peergrid_controller.schedule import MgSchedule

DT = 1.0
N = 8


def test_the_day_of_an_mg_that_traded_nothing_forward_is_its_day_without_p2p() -> None:
    """An empty `kwh` (no interval traded) fixes no P2P: the MG's day as if it traded nothing, with no
    interval to carry a per-interval cost; its cost is its conventional day's (the battery site has a
    terminal term, so a cost dropped with the intervals would show)."""
    mg = battery_site("mg1", N)
    empty = forward_accept.dispatch(mg, DT, [])
    nothing = forward_accept.dispatch(mg, DT, [0.0] * N)
    conventional = baselines.conventional(Scenario("alone", DT, (mg,))).per_interval["mg1"]
    assert empty.physical == ()
    assert empty.cost == pytest.approx(nothing.cost) == pytest.approx(sum(conventional))
    assert sum(nothing.physical) == pytest.approx(nothing.cost)
    assert nothing.physical == pytest.approx(conventional)


def test_interval_costs_refuses_a_negative_count_by_name() -> None:
    mg = battery_site("mg1", N)
    sched = MgSchedule(mg, DT)
    sched.solve()
    x = sched.last_solution().x
    assert baselines.interval_costs(sched.cols, x, 0) == ()
    with pytest.raises(ValueError, match="-1 intervals"):
        baselines.interval_costs(sched.cols, x, -1)
