"""Day-ahead price discovery: indicative P2P prices for every interval of the day, from quantities alone.

Promises: `indicative_prices(scenario)` returns one price per interval, found by tâtonnement: each MGMC
answers a price vector with the net P2P energy it would trade in every interval (its own day schedule, genset
on/off relaxed — an LP), the prices fall where the answers sum to a surplus and rise where they sum to a
deficit, with steps shrinking as 1/sqrt(k), and the later half of the iterates is averaged (a plain
best-response LP jumps from one extreme to the other; the average settles). Only quantities at posted prices
are revealed — the same as bids and offers — never DER data. The result is a forecast: intra-day bargaining
still decides every trade. Deterministic. Never reads clocks or I/O.
"""

from __future__ import annotations

import math

from peergrid_controller.model import Scenario
from peergrid_controller.schedule import MgSchedule


def indicative_prices(scenario: Scenario, iterations: int = 24) -> tuple[float, ...]:
    n, dt = scenario.intervals, scenario.interval_hours
    lo = [min(mg.tariff.feed_in[t] for mg in scenario.microgrids) for t in range(n)]
    hi = [max(mg.tariff.retail[t] for mg in scenario.microgrids) for t in range(n)]
    prices = [(a + b) / 2 for a, b in zip(lo, hi, strict=True)]
    total = [0.0] * n
    counted = 0
    for k in range(iterations):
        excess = [0.0] * n
        volume = [0.0] * n
        for mg in scenario.microgrids:
            sched = MgSchedule(mg, dt, p2p_prices=prices, day_ahead=True)
            plan = sched.solve()
            for t, x in enumerate(plan.p2p_net_export):
                excess[t] += x
                volume[t] += abs(x)
        if k >= iterations // 2:
            total = [s + p for s, p in zip(total, prices, strict=True)]
            counted += 1
        step = 0.5 / math.sqrt(k + 1)
        prices = [
            min(max(p - step * (b - a) * z / (v + 1e-9), a), b) if v > 1e-9 else p
            for p, z, v, a, b in zip(prices, excess, volume, lo, hi, strict=True)
        ]
    return tuple(round(s / counted, 6) for s in total)
