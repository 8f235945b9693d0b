"""An owner's floor or cap whose rule fee was dropped comes back where the price net of the exchange fee crosses
the rule, as it was dropped (review26 R26-4; dayjudge.OwnRules.judge).

test_ctl_exchange_fee's floor 0.08 with the 5-tick fee margin and a one-tick fee (10^6 nano per kWh): the floor's
fee is dropped at 0.086 (net 0.085, the floor plus the margin); at 0.0805 the gross price still clears the floor
but the net (0.0795) does not, so the fee must come back: with it dropped R26's f5b found 14 of 18 synthetic MGs
selling 31-474 kWh there, at a net below their own floor. The cap side mirrors it: cap 0.20, dropped at 0.194
(net 0.195), taken back at 0.1995 (net 0.2005 above the cap), where retail (0.30) is above the cap.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.dayjudge import Cell, OwnRules
from peergrid_controller.dayrounds import Exchange
from peergrid_controller.model import Microgrid
from peergrid_controller.synth import synthetic_scenario

TICK = 10**6  # nano per kWh: one micro-unit per Wh
MARGIN = 0.005  # DayAheadConfig's fee margin, 5 ticks
SELLS, BUYS = [5.0, 5.0], [-5.0, -5.0]  # kWh: the MG's posted position in both intervals


def nano(price: float) -> int:
    return round(price * 10**9)


def ruled_mg(i: int, *, floor: float = 0.0, cap: float = float("inf")) -> Microgrid:
    """Synthetic MG i (retail 0.14 then 0.30, feed-in 0.05; MG 0 buys nothing: clean-only) with these rules."""
    mg = synthetic_scenario(3, 2, seed=0, interval_hours=12.0, rules=True).microgrids[i]
    return replace(mg, rules=replace(mg.rules, floor_price=floor, cap_price=cap))


def judged_twice(mg: Microgrid, fee: int, first: float, then: float, cell: Cell) -> tuple[bool, bool]:
    """Whether the cell's fee is dropped after a judgement at `first`, and still after one at `then`."""
    own = OwnRules(mg, 12.0, 2, MARGIN, 0.01, exchange_fee=fee)
    assert own.has_fee(*cell)
    position = SELLS if cell[1] == "sell" else BUYS
    own.apply(own.judge([nano(first)] * 2, position))
    dropped = cell in own.fee_off
    own.apply(own.judge([nano(then)] * 2, position))
    return dropped, cell in own.fee_off


@pytest.mark.parametrize(
    ("fee", "then", "still_dropped"),
    [
        (TICK, 0.0805, False),  # 80 micro-units per Wh on the tick, net 79 < 80: back (R26-4: stayed dropped)
        (TICK, 0.081, True),  # net 80 = the floor, which the rule permits: stays dropped
        (0, 0.0805, True),  # no fee: 80 clears the floor, as before
        (0, 0.079, False),  # no fee: below the floor, back as before
        (2 * TICK, 0.081, False),  # two ticks: net 79 < the floor (750,000 off the tick was run here: a fee
        (2 * TICK, 0.082, True),  # is now a whole number of ticks); net 80 = the floor: stays dropped
    ],
)
def test_a_dropped_floor_fee_comes_back_where_the_net_price_crosses_the_floor(
    fee: int, then: float, still_dropped: bool
) -> None:
    first = 0.086 if fee <= TICK else 0.087  # dropped: the net price clears the floor by the margin
    dropped, after = judged_twice(ruled_mg(0, floor=0.08), fee, first, then, (0, "sell"))
    assert dropped
    assert after is still_dropped


@pytest.mark.parametrize(
    ("fee", "then", "still_dropped"),
    [
        (TICK, 0.1995, False),  # 200 on the tick (half to even), net 201 > the cap 200: back
        (TICK, 0.199, True),  # net 200 = the cap: stays dropped
        (0, 0.1995, True),  # no fee: 200 is within the cap, as before
    ],
)
def test_a_dropped_cap_fee_comes_back_where_the_net_price_crosses_the_cap(
    fee: int, then: float, still_dropped: bool
) -> None:
    dropped, after = judged_twice(ruled_mg(1, cap=0.20), fee, 0.194, then, (1, "buy"))
    assert dropped
    assert after is still_dropped


def test_r26_f5_the_exchange_takes_the_floor_fee_back() -> None:
    # R26's f5 through dayrounds.Exchange: dropped at 0.086, at 0.0805 the MG's sell fee is its rule fee again
    # (0.08 less its feed-in, plus the exchange fee), not the exchange fee alone
    scenario = synthetic_scenario(3, 2, seed=0, interval_hours=12.0, rules=True)
    mg = scenario.microgrids[0]
    scenario = replace(
        scenario,
        microgrids=(replace(mg, rules=replace(mg.rules, floor_price=0.08)), *scenario.microgrids[1:]),
    )
    ex = Exchange(scenario, DayAheadConfig(exchange_fee=TICK), [0.086, 0.086])
    ex.q = [(1.0, 1.0), (-0.5, -0.5), (-0.5, -0.5)]  # MG 0 sells
    ex.judge_rules()
    assert (0, "sell") in ex.own_rules[0].fee_off
    ex.prices = [80_500_000, 80_500_000]
    ex.judge_rules()
    assert (0, "sell") not in ex.own_rules[0].fee_off
    sell = ex.fees(0)[0]
    assert sell is not None
    assert sell[0] == pytest.approx(0.08 - scenario.microgrids[0].tariff.feed_in[0] + 0.001)
