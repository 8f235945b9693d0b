"""Day-ahead price discovery: indicative P2P prices for every interval of the day, from quantities alone.

Promises: `indicative_prices(scenario)` returns one price per interval, found by tâtonnement: each MGMC
answers a price vector with the net P2P energy it would trade in every interval (its own day schedule, genset
on/off relaxed — an LP), the prices fall where the answers sum to a surplus and rise where they sum to a
deficit, with steps shrinking as 1/sqrt(k), and the later half of the iterates is averaged (a plain
best-response LP jumps from one extreme to the other; the average settles). The discovery runs twice: within
the DSO's prices, and held one tick inside them (`discovery_band`); where the held run's average sits on its
band's edge the forecast is that edge moved half a tick out, the upper one a tenth of a tick less
(`settled_edge`) except where the DSO's price falls later in the day and never rises above it (`leans`),
elsewhere the first run's average. Only quantities at posted prices are revealed — the same as bids and
offers — never DER data. The result is a forecast: intra-day bargaining still decides every
trade. Deterministic. Never reads clocks or I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from peergrid_controller.market import PRICE_TICK
from peergrid_controller.model import Scenario
from peergrid_controller.schedule import PEER_SPREAD, MgSchedule

HALF_TICK = PEER_SPREAD  # the plans' spread either side of the forecast (`MgSchedule`), a half tick
# how far under retail the settled upper edge puts a plan's value of a later purchase: more than the LP's
# tolerance, far less than the half tick that would take a later sale's value off the tick it posts at
PEER_LEAN = PRICE_TICK / 10


def discovery_band(feed_in: float, retail: float) -> tuple[float, float]:
    """The prices the held tâtonnement may post in an interval whose DSO buys at `feed_in` and sells at
    `retail`: one tick inside each. A plan trades with peers a half tick either side of the posted price
    (`MgSchedule`'s spread), so at retail every buyer's plan takes the DSO and at feed-in every seller's: such
    a price moves no trade to peers. Left free, the iterates swung between retail (sellers only: a surplus)
    and a step below it (every buyer at a peer: a deficit), and their average settled below the clearing
    price: on the rule-free 20-MG day 0.135 all night against retail 0.14, where the central runs a genset at
    0.137/kWh that the plans then left off (M12, M16). A band narrower than two ticks is its midpoint."""
    middle = (feed_in + retail) / 2
    return min(feed_in + PRICE_TICK, middle), max(retail - PRICE_TICK, middle)


def settled_edge(held: float, band: tuple[float, float], lean: bool = True) -> float | None:
    """The forecast where the held discovery's average `held` sits on an edge of its `band`: the edge moved
    half a tick out, so that a plan's values of a later trade (the forecast less a half tick for a sale, plus
    a half tick for a purchase, `MgSchedule`) fall on the market's ticks rather than between two of them.
    On the edge itself both fell exactly between ticks: at the lower edge a storage MG valued its stored
    energy at feed-in + a half tick and asked the tick above the PV sellers at feed-in, buyers took the two
    ticks as one level, and a buyer could gain by moving its purchase (M16: 6 MGs seed 2, guard off,
    intervals 44-47, 0.008). Which way: at the lower edge the feeder has a surplus and the market's side is
    the sellers', whose later sale is then worth feed-in, what the market pays the PV sellers beside them
    (no seller counts on more than the grid pays it), a buyer's later purchase a tick above; at the upper edge
    the feeder is short and a seller's later sale is worth a tick below retail (on the 20-MG day's night
    0.139, above the genset's 0.137 that the plans then run), and a buyer's later purchase `PEER_LEAN` below
    retail: at retail itself a storage MG that could sell now at retail and buy back from a peer later was
    indifferent between that and keeping its energy, and the plan's LP picked either (M19: ieee33's midday,
    retail 0.22, it kept it: strict 0.939106 -> 0.938082). The later sale, then worth retail less a tick less
    `PEER_LEAN`, still posts at the tick below retail (`price_tick` rounds to the nearest). `lean=False`:
    the upper edge without the lean, M17's (see `leans`).
    None off the edges, and where the band is one price (narrower than two ticks: no edge to settle)."""
    low, high = band
    if high - low < PRICE_TICK / 10:
        return None
    if held <= low + 1e-9:
        return round(low - HALF_TICK, 6)
    if held >= high - 1e-9:
        return round(high + HALF_TICK - (PEER_LEAN if lean else 0.0), 6)
    return None


def leans(retail: Sequence[float], t: int) -> bool:
    """Whether interval `t`'s settled upper edge leans (`PEER_LEAN`): everywhere except where the DSO's price
    `retail` falls later in the day and never rises above `t`'s, the day's falling tail (the evening peak
    before the night). The lean is a tie-break: a store sells now at retail rather than keep energy it can buy
    back from a peer later. Before a dearer price the store keeps what that price needs anyway, and the lean
    moves only the rest, sold to short peers now (M19: ieee33's midday, 0.22 before the 0.30 evening). In the
    falling tail nothing dearer comes, and the lean emptied the stores at the tail's start and left its end
    to the DSO: on 6 MGs seed 1 mg006 sold its stored energy at 68-78 and bought at 79-83 (M19). There the
    upper edge stays M17's and the LP's corner picks; that it keeps the energy is measured, not derived (M20,
    docs/market.md: 6 MGs seeds 1 and 3 gain 0.46 and 0.72 points of share). A flat day has no tail: it
    leans throughout. (Kept energy is worth retail at most, so no forecast makes keeping it beat selling
    now at retail: the edge can leave the tie or break it towards selling, nothing more.)"""
    later = retail[t + 1 :]
    return not later or min(later) >= retail[t] - 1e-9 or max(later) > retail[t] + 1e-9


def _discover(
    scenario: Scenario,
    iterations: int,
    span: Sequence[tuple[float, float]],
    held: Sequence[tuple[float, float]],
) -> list[float]:
    """The averaged iterates, stepped by each interval's DSO `span` (feed-in, retail) and held within
    `held`."""
    n, dt = scenario.intervals, scenario.interval_hours
    prices = [(a + b) / 2 for a, b in span]
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
            min(max(p - step * (b - a) * z / (v + 1e-9), low), high) if v > 1e-9 else p
            for p, z, v, (a, b), (low, high) in zip(prices, excess, volume, span, held, strict=True)
        ]
    return [round(s / counted, 6) for s in total]


def indicative_prices(scenario: Scenario, iterations: int = 24) -> tuple[float, ...]:
    n = scenario.intervals
    span = [
        (
            min(mg.tariff.feed_in[t] for mg in scenario.microgrids),
            max(mg.tariff.retail[t] for mg in scenario.microgrids),
        )
        for t in range(n)
    ]
    free = _discover(scenario, iterations, span, span)
    # the held run moves interior prices too (the storage plans answer the edges), by a few ticks on the
    # 20-MG day's mornings, and those lost up to 2.4 points of the central gain (M16): only its edges are kept
    bands = [discovery_band(a, b) for a, b in span]
    held = _discover(scenario, iterations, span, bands)
    retail = [b for _, b in span]
    settled = [
        settled_edge(h, band, leans(retail, t)) for t, (h, band) in enumerate(zip(held, bands, strict=True))
    ]
    return tuple(f if s is None else s for f, s in zip(free, settled, strict=True))
