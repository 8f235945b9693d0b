"""One MG's own day for the day-ahead stage: its schedule model with P2P open in every interval.

Promises: `DayModel` wraps an `MgSchedule` over the whole day and lets every interval trade P2P at a price
(one free net-export column per interval, or a sell and a buy column when owner-rule fees apply), adds the exchange-ADMM proximal term as a piecewise-linear square
(so genset MGs stay MILPs and everyone else warm LPs), and re-solves; `largest_within` finds the largest
trades within given bounds whose day cost, payments included, stays within a budget. Used by dayahead.py and
forward.py. Never reads clocks or I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from peergrid_controller import lp as lpmod
from peergrid_controller.builder import p2p_buy_limit, p2p_sell_limit
from peergrid_controller.model import Microgrid
from peergrid_controller.schedule import MgSchedule

_Proximal = tuple[list[int], list[list[tuple[int, int]]], list[float]]  # rows, (plus, minus) per k, breaks


class DayModel:
    def __init__(
        self,
        mg: Microgrid,
        interval_hours: float,
        relaxed: bool = False,
        commitment: Sequence[Sequence[bool]] | None = None,
    ) -> None:
        """`relaxed`: genset on/off continuous in [0, 1] (the LP relaxation: every solve an LP);
        `commitment`: genset on/off fixed per genset and interval (an LP). Neither: the first solve is a MILP."""
        self.schedule = MgSchedule(mg, interval_hours, day_ahead=relaxed, commitment=commitment)
        self._rho: float | None = None
        self._prox: tuple[float, _Proximal] | None = None
        self._committed = False
        self._fees: tuple[Sequence[float] | None, Sequence[float] | None] | None = None

    def trade(
        self,
        prices: Sequence[float],
        lo_kw: Sequence[float],
        hi_kw: Sequence[float],
        sell_fee: Sequence[float] | None = None,
        buy_fee: Sequence[float] | None = None,
    ) -> None:
        """Every interval trades P2P at `prices` (currency/kWh), its net export (kW) within [lo, hi] (lo ≤ 0
        ≤ hi). With fees (currency/kWh per interval, ≥ 0) a kWh sold earns its price less `sell_fee` and a
        kWh bought costs its price plus `buy_fee`: sales and purchases then take a column each (net export =
        sell − buy); without, one free column carries the net export."""
        s = self.schedule
        h = s.highs()
        self._fees = None if sell_fee is None and buy_fee is None else (sell_fee, buy_fee)
        for k in range(s.horizon):
            sell, buy = s.cols.p2p_sell[k], s.cols.p2p_buy[k]
            if self._fees is None:
                h.changeColBounds(sell, lo_kw[k], hi_kw[k])
                h.changeColBounds(buy, 0.0, 0.0)
            else:
                h.changeColBounds(sell, 0.0, max(hi_kw[k], 0.0))
                h.changeColBounds(buy, 0.0, max(-lo_kw[k], 0.0))
        self._price(prices)

    def _price(self, prices: Sequence[float]) -> None:
        s = self.schedule
        h = s.highs()
        sell_fee, buy_fee = self._fees or (None, None)
        for k in range(s.horizon):
            h.changeColCost(s.cols.p2p_sell[k], -(prices[k] - (sell_fee[k] if sell_fee else 0.0)) * s.dt)
            if self._fees is not None:
                h.changeColCost(s.cols.p2p_buy[k], (prices[k] + (buy_fee[k] if buy_fee else 0.0)) * s.dt)

    def proximal(
        self,
        prices: Sequence[float],
        rho: float,
        anchor_kwh: Sequence[float],
        resolution_kwh: float,
        recommit: bool = False,
    ) -> None:
        """Add (rho/2)·(q_k − anchor_k)² per interval (q_k = net P2P export, kWh) beside the payments at
        `prices`: the x-update of exchange ADMM. HiGHS refuses mixed-integer QPs and its QP solver cycled for
        minutes on these models (measured), so the square is piecewise linear: exact at 0 and at
        ±resolution·2^j, segments doubling up to twice the MG's largest possible trade. The first call freezes
        genset on/off at the last MILP solution, unless `recommit` (a model not solved yet): then the next
        solve is a MILP with the proximal term."""
        s = self.schedule
        h = s.highs()
        if not recommit:
            s.fix_commitment()
        if self._prox is None or self._prox[0] != resolution_kwh:
            self._prox = (resolution_kwh, self._add_proximal_columns(resolution_kwh))
            self._rho = None
        _, (rows, segments, breaks) = self._prox
        if self._rho != rho:
            for k in range(s.horizon):
                for j, (plus, minus) in enumerate(segments[k]):
                    slope = rho / 2 * (breaks[j] + breaks[j + 1])
                    h.changeColCost(plus, slope)
                    h.changeColCost(minus, slope)
            self._rho = rho
        self._price(prices)
        for k in range(s.horizon):
            h.changeRowBounds(rows[k], anchor_kwh[k], anchor_kwh[k])

    def _add_proximal_columns(self, resolution: float) -> _Proximal:
        """Per interval: dt·(sell_k − buy_k) − Σ plus_j + Σ minus_j = anchor_k, plus_j, minus_j on [0, width_j]."""
        s = self.schedule
        h = s.highs()
        span = max(
            max(p2p_sell_limit(s.mg, t), p2p_buy_limit(s.mg, t)) * s.dt
            for t in range(s.start, s.start + s.horizon)
        )
        breaks = [0.0, resolution]
        while breaks[-1] < 2 * span + resolution:  # the anchor may sit a whole range away
            breaks.append(breaks[-1] * 2)
        widths = [b - a for a, b in itertools.pairwise(breaks)]
        widths[-1] = lpmod.INF
        rows: list[int] = []
        segments: list[list[tuple[int, int]]] = []
        empty = np.zeros(0, np.int32)
        for k in range(s.horizon):
            first = h.getNumCol()
            count = 2 * len(widths)
            hi = np.array([w for w in widths for _ in (0, 1)], dtype=np.float64)
            h.addCols(count, np.zeros(count), np.zeros(count), hi, 0, empty, empty, np.zeros(0))
            pairs = [(first + 2 * j, first + 2 * j + 1) for j in range(len(widths))]
            index = [s.cols.p2p_sell[k], s.cols.p2p_buy[k]] + [c for pair in pairs for c in pair]
            value = [s.dt, -s.dt] + [v for _ in pairs for v in (-1.0, 1.0)]
            h.addRow(0.0, 0.0, len(index), np.array(index, np.int32), np.array(value))
            rows.append(h.getNumRow() - 1)
            segments.append(pairs)
        return rows, segments, breaks

    def solve(self) -> tuple[float, ...]:
        """Net P2P export per interval (kWh) of a fresh solve."""
        self.schedule.solve()
        return self.schedule.net_export_kwh()

    def commitment(self) -> tuple[tuple[bool, ...], ...]:
        return self.schedule.commitment()

    def marginal_values(self) -> tuple[float, ...] | None:
        """The MG's own marginal value of energy per interval (currency per kWh: its balance rows' duals) at
        the last solve; None where the solve gave none (a MILP)."""
        s = self.schedule
        duals = s.last_solution().row_duals
        return tuple(duals[row] / s.dt for row in s.cols.balance_rows) if duals else None


def largest_within(
    mg: Microgrid,
    interval_hours: float,
    prices: Sequence[float],
    lo_kw: Sequence[float],
    hi_kw: Sequence[float],
    budget: float,
) -> tuple[float, ...]:
    """The largest net P2P trades (kW; toward the side each interval's [lo, hi] opens) whose day cost,
    payments at `prices` included, stays within `budget`: the cost becomes a row and the traded volume the
    objective (a MILP with gensets). Raises ScheduleError ('infeasible') when not even trading nothing fits."""
    s = MgSchedule(mg, interval_hours)
    lp = s.lp
    coefs = {j: c for j, c in enumerate(lp.cost) if c != 0.0}
    for k in range(s.horizon):
        coefs[s.cols.p2p_sell[k]] = coefs.get(s.cols.p2p_sell[k], 0.0) - prices[k] * s.dt
    lp.le(sorted(coefs.items()), budget - lp.offset)
    lp.cost = [0.0] * lp.num_cols
    for k in range(s.horizon):
        sell, buy = s.cols.p2p_sell[k], s.cols.p2p_buy[k]
        lp.col_lo[sell], lp.col_hi[sell] = lo_kw[k], hi_kw[k]
        lp.col_lo[buy] = lp.col_hi[buy] = 0.0
        lp.cost[sell] = -s.dt if hi_kw[k] > 0 else s.dt if lo_kw[k] < 0 else 0.0
    return s.solve().p2p_net_export
