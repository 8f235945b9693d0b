"""The clean-energy book of the day-ahead exchange: one MG's clean column beside its general one.

Promises: on a clean session (`clean_session`: some member's rules are clean-only, and the allocation was asked
for the clean book) every interval has two books, general energy at λᴳ_t and clean energy at λᶜ_t. Each MG
answers 2n positions, g_t (general net export) then c_t (clean: + sale, − purchase); its physical net P2P
export is x = g + c (DayModel's P2P columns), c one more column per interval (`CleanDayModel`):
- a clean seller (`clean_kind` "seller": no genset, not clean-only) sells clean only where it is not a
  general buyer: c_t > 0 ⇒ g_t ≥ 0 (the side rule). Exactly: a switch b_t per interval, c_t ≤ its sale limit
  · b_t and c_t ≤ its sale column, its purchase ≤ its purchase limit · (1 − b_t). The switch is decided like
  genset on/off (`Side`): "fixed" relaxes it to [0, 1] until `decide` fixes it once from its MILP at the
  prices found (then LPs); "exact" keeps it binary in every solve (a MILP per seller per round).
- a clean-only buyer ("buyer"): c_t = −its purchase (within its purchase limit), so g_t = its sale ≥ 0: it
  never buys general; "exact" also never lets it buy and sell in one interval (a binary: a clean purchase
  resold as general), and its answers are its net (`solve`). Its premium is a cap (cap + premium on a clean kWh: `dayrules.clean_fees`), never a
  benefit (a benefit per clean kWh made buyers over-import: M4, /work/notes/m4_clean_product.md §1).
- everyone else ("none": genset MGs that are not clean-only) has c = 0 and no extra column.
x is priced at λᴳ by DayModel's columns (with the rule fees), c adds (λᶜ − λᴳ) per kWh; the proximal term
is on g (DayModel's row, with −dt·c added) and on c (its own piecewise-linear square, the same breaks).
Posted in whole Wh (`posted_wh`): g and c each rounded as every position is, unless that puts |g + c| over
the chain's max_quantity by a Wh; then the pair is rounded jointly, x = g + c bounded (M6, E10).
Never on a day without a clean-only member: DayModel alone, byte for byte as before.
Deterministic; no clocks, no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import highspy
import numpy as np

from peergrid_controller import lp as lpmod
from peergrid_controller.builder import p2p_buy_limit, p2p_sell_limit
from peergrid_controller.daymodel import DayModel
from peergrid_controller.dayrules import chain_rules, limits_kw
from peergrid_controller.market import Offer, acceptable, wh
from peergrid_controller.model import Microgrid, Scenario

CleanKind = Literal["seller", "buyer", "none"]
# how a clean seller's switch (sells clean in an interval, or may buy general there) is decided
Side = Literal["fixed", "exact"]
_EMPTY = np.zeros(0, np.int32)


def clean_kind(mg: Microgrid) -> CleanKind:
    """Which side of the clean book an MG can take: a clean-only buyer buys clean, an MG without a genset
    sells clean, any other MG neither."""
    if mg.rules.clean_only:
        return "buyer"
    return "none" if mg.gensets else "seller"


def clean_session(scenario: Scenario) -> bool:
    """Whether a day has a clean book at all: only where some member's rules are clean-only."""
    return any(mg.rules.clean_only for mg in scenario.microgrids)


def posted_wh(g: float, c: float, max_wh: int) -> tuple[int, int]:
    """An interval's (g, c) kWh as the whole Wh it posts and accepts, for the exchange contract's checks
    (exchange_clean.check_positions, check_accept): |g + c| ≤ `max_wh`, c > 0 ⇒ g ≥ 0, c < 0 ⇒ g = 0, and a
    g ≥ 0 (a clean-only member's) stays ≥ 0, for every pair that keeps them in kWh (|g + c| ≤ max_wh / 1000).
    Each rounded to the nearest Wh, as every position is (`market.wh`), where that keeps the maximum (so
    every day the chain took before is posted as before). Rounded apart, both halves can round up: mg002's
    17917.5 + 2182.5 Wh of rules_day(4, seed 5) posted 17918 + 2183 > 20100, refused by the chain (M6). Then
    rounded jointly: the net x = g + c and c each to the nearest Wh within ±max_wh, g = x − c (0 for a clean
    purchase, and at least 0 where a clean sale or g ≥ 0 says so: then g + c = c, within the max)."""
    gw, cw = wh(g), wh(c)
    if abs(gw + cw) <= max_wh:
        return gw, cw
    cw = max(-max_wh, min(cw, max_wh))
    if cw < 0:  # a clean purchase: g = 0
        return 0, cw
    xw = max(-max_wh, min(wh(g + c), max_wh))
    gw = xw - cw
    if gw < 0 and (cw > 0 or g >= 0):
        gw = 0
    return gw, cw


def takes_clean(mg: Microgrid, price: float) -> bool:
    """Whether MG `mg`'s rules let it buy a clean kWh at `price` (currency/kWh): `market.acceptable`'s rule,
    its cap + premium on the market tick."""
    return acceptable(Offer("", 0, price, 0.0, True), mg.rules)


class CleanDayModel(DayModel):
    """DayModel with the clean column c_t (see the module contract). `solve` returns g then c (2n, kWh)."""

    def __init__(
        self,
        mg: Microgrid,
        interval_hours: float,
        relaxed: bool = False,
        commitment: Sequence[Sequence[bool]] | None = None,
        side: Side = "fixed",
        clean_intervals: Sequence[bool] | None = None,
    ) -> None:
        """`clean_intervals`: a seller's decided switch per interval ("fixed" after `decide`); None before."""
        super().__init__(mg, interval_hours, relaxed=relaxed, commitment=commitment)
        self.kind = clean_kind(mg)
        self.side = side
        self.max_wh: int = chain_rules(mg.rules)["max_quantity"]
        s = self.schedule
        n, dt = s.horizon, s.dt
        quantity = mg.rules.max_quantity_kwh / dt
        self._c: list[int] = []
        self._switch: list[int] = []
        self._cprox: tuple[list[int], list[list[tuple[int, int]]], list[float]] | None = None
        self._crho: float | None = None
        self._g_patched = False
        if self.kind == "none":
            return
        h = s.highs()
        ts = range(s.start, s.start + n)
        if self.kind == "seller":
            lo = [0.0] * n
            hi = [min(p2p_sell_limit(mg, t), quantity) for t in ts]
        else:
            lo = [-min(p2p_buy_limit(mg, t), quantity) for t in ts]
            hi = [0.0] * n
        self._c = self._add(lo, hi, 0.0)
        for k in range(n):
            if self.kind == "seller":  # c ≤ its sale column (x = sale when its purchase is off)
                self._row([self._c[k], s.cols.p2p_sell[k]], [1.0, -1.0], 0.0)
            else:  # c = −its purchase: all it buys is clean, g = its sale ≥ 0 (it never buys general)
                self._row([self._c[k], s.cols.p2p_buy[k]], [1.0, 1.0], 0.0, lower=0.0)
        if self.kind == "buyer" and side == "exact":
            # it buys (clean) or sells (general) in an interval, never both: a clean purchase resold as general
            switch = self._add([0.0] * n, [1.0] * n, 0.0)
            for k, t in enumerate(ts):
                h.changeColIntegrality(switch[k], highspy.HighsVarType.kInteger)
                self._row([s.cols.p2p_buy[k], switch[k]], [1.0, lo[k]], 0.0)
                sale = max(p2p_sell_limit(mg, t), 0.0)
                self._row([s.cols.p2p_sell[k], switch[k]], [1.0, sale], sale)
        if self.kind == "seller":
            self._switch = self._add([0.0] * n, [1.0] * n, 0.0)
            for k, t in enumerate(ts):
                self._row([self._c[k], self._switch[k]], [1.0, -max(hi[k], 0.0)], 0.0)
                big = max(p2p_buy_limit(mg, t), 0.0)
                self._row([s.cols.p2p_buy[k], self._switch[k]], [1.0, big], big)
            if side == "exact" and clean_intervals is None:
                for col in self._switch:
                    h.changeColIntegrality(col, highspy.HighsVarType.kInteger)
            if clean_intervals is not None:
                for col, on in zip(self._switch, clean_intervals, strict=True):
                    h.changeColBounds(col, float(on), float(on))

    def _add(self, lo: Sequence[float], hi: Sequence[float], cost: float) -> list[int]:
        h = self.schedule.highs()
        first, count = h.getNumCol(), len(lo)
        h.addCols(count, np.full(count, cost), np.array(lo), np.array(hi), 0, _EMPTY, _EMPTY, np.zeros(0))
        return list(range(first, first + count))

    def _row(
        self, cols: Sequence[int], coefs: Sequence[float], upper: float, lower: float = -lpmod.INF
    ) -> None:
        h = self.schedule.highs()
        h.addRow(lower, upper, len(cols), np.array(cols, np.int32), np.array(coefs))

    def trade(
        self,
        prices: Sequence[float],
        lo_kw: Sequence[float],
        hi_kw: Sequence[float],
        sell_fee: Sequence[float] | None = None,
        buy_fee: Sequence[float] | None = None,
    ) -> None:
        """DayModel.trade over 2n prices (general then clean). A seller's or buyer's sale and purchase take
        a column each (its switch bounds them apart, a buyer's purchase is its clean column), so it trades
        with zero fees where it has none."""
        if self.kind != "none" and sell_fee is None and buy_fee is None:
            sell_fee = (0.0,) * self.schedule.horizon
        super().trade(prices, lo_kw, hi_kw, sell_fee, buy_fee)

    def _price(self, prices: Sequence[float]) -> None:
        super()._price(prices)
        s = self.schedule
        h = s.highs()
        n = s.horizon
        for k, col in enumerate(self._c):
            h.changeColCost(col, -(prices[n + k] - prices[k]) * s.dt)

    def proximal(
        self,
        prices: Sequence[float],
        rho: float,
        anchor_kwh: Sequence[float],
        resolution_kwh: float,
        recommit: bool = False,
    ) -> None:
        """DayModel.proximal on g (its row becomes dt·(x − c)) and the same square on c, anchors g then c."""
        s = self.schedule
        n = s.horizon
        # a model without gensets has no on/off to freeze (a seller's new model after `decide` is unsolved)
        recommit = recommit or not s.lp.integer
        super().proximal(prices, rho, anchor_kwh[:n], resolution_kwh, recommit)
        if not self._c:
            return
        h = s.highs()
        assert self._prox is not None
        rows, _, breaks = self._prox[1]
        if not self._g_patched:
            for k in range(n):
                h.changeCoeff(rows[k], self._c[k], -s.dt)
            self._g_patched = True
        if self._cprox is None or self._cprox[2] != breaks:
            self._cprox = self._clean_proximal(breaks)
            self._crho = None
        crows, csegments, cbreaks = self._cprox
        if self._crho != rho:
            for pairs in csegments:
                for j, (plus, minus) in enumerate(pairs):
                    slope = rho / 2 * (cbreaks[j] + cbreaks[j + 1])
                    h.changeColCost(plus, slope)
                    h.changeColCost(minus, slope)
            self._crho = rho
        for k in range(n):
            h.changeRowBounds(crows[k], anchor_kwh[n + k], anchor_kwh[n + k])

    def _clean_proximal(
        self, breaks: list[float]
    ) -> tuple[list[int], list[list[tuple[int, int]]], list[float]]:
        """Per interval: dt·c_k − Σ plus_j + Σ minus_j = anchor_k (DayModel's square, on c)."""
        s = self.schedule
        h = s.highs()
        widths = [b - a for a, b in itertools.pairwise(breaks)]
        widths[-1] = lpmod.INF
        rows: list[int] = []
        segments: list[list[tuple[int, int]]] = []
        for k in range(s.horizon):
            cols = self._add([0.0] * (2 * len(widths)), [w for w in widths for _ in (0, 1)], 0.0)
            pairs = [(cols[2 * j], cols[2 * j + 1]) for j in range(len(widths))]
            index = [self._c[k], *cols]
            value = [s.dt] + [v for _ in pairs for v in (-1.0, 1.0)]
            h.addRow(0.0, 0.0, len(index), np.array(index, np.int32), np.array(value))
            rows.append(h.getNumRow() - 1)
            segments.append(pairs)
        return rows, segments, breaks

    def solve(self) -> tuple[float, ...]:
        """g then c per interval (kWh) of a fresh solve: g = x − c, each answer what the MG can do in the two
        books. A seller's relaxed switch (before `decide`) may sell clean beside a general purchase: its
        answer is then c = max(x, 0), its export all clean or its import all general (the exchange contract
        refuses c > 0 with g < 0). A clean-only buyer's answer is its net: c = min(x, 0), g = max(x, 0);
        where λᶜ < λᴳ its model would buy clean and resell it as general in one interval, which the books,
        matched apart, would cut apart (the 20-MG rules day of seed 1: 1,746 kWh of mg010's, the whole
        day's share 0.9997 allocated, 0.811 committed)."""
        x = super().solve()
        s = self.schedule
        sol = s.last_solution().x
        c = [sol[col] * s.dt for col in self._c] if self._c else [0.0] * s.horizon
        if self.kind == "seller":
            c = [max(xk, 0.0) if xk - ck < -1e-9 < ck else ck for xk, ck in zip(x, c, strict=True)]
        elif self.kind == "buyer":
            c = [min(xk, 0.0) for xk in x]
        g = [xk - ck for xk, ck in zip(x, c, strict=True)]
        for k in range(len(g)):  # the rare interval rounded apart past the max: its joint Wh (posted_wh)
            pair = posted_wh(g[k], c[k], self.max_wh)
            if pair != (wh(g[k]), wh(c[k])):
                g[k], c[k] = pair[0] / 1000, pair[1] / 1000
        return tuple(g) + tuple(c)

    def clean_intervals(self) -> tuple[bool, ...]:
        """A seller's switch per interval in the last solve (true: it sells clean there and buys nothing);
        empty for any other MG."""
        sol = self.schedule.last_solution().x
        return tuple(sol[col] > 0.5 for col in self._switch)


def clean_buy_kw(mg: Microgrid, dt: float, intervals: int | None = None) -> list[float] | None:
    """A clean-only buyer's purchase bound (kW, ≤ 0) per interval on a clean session, where it buys P2P, all of
    it clean (c ≤ x), within its physical limits and maximum quantity; None for any other MG (its own bounds
    stand). The one rule of the controller's exchange (`dayrounds.Exchange`) and the edge's members."""
    if not mg.rules.clean_only:
        return None
    free = replace(mg, rules=replace(mg.rules, clean_only=False))
    n = mg.intervals if intervals is None else intervals
    return [limits_kw(free, t, math.nan, dt)[0] for t in range(n)]


def decide_switch(
    mg: Microgrid,
    dt: float,
    prices: Sequence[float],
    rho: float,
    bounds: tuple[Sequence[float], Sequence[float]],
    fees: tuple[Sequence[float] | None, Sequence[float] | None],
    anchor_kwh: Sequence[float],
    commit_weight: float,
    resolution_kwh: float,
) -> tuple[tuple[bool, ...], CleanDayModel]:
    """A clean seller decides alone where it sells clean, as a genset MG its on/off: its MILP at the prices
    found with its proximal term at `commit_weight`·ρ anchored at `anchor_kwh` (the plan nearest its relaxed
    position that pays); its switch per interval and its model for what follows (LPs with the switch fixed).
    The one rule of `allocate` (`dayahead._switch`) and the edge's clean sellers."""
    fresh = CleanDayModel(mg, dt, side="exact")
    fresh.trade(prices, *bounds, *fees)
    fresh.proximal(prices, commit_weight * rho, anchor_kwh, resolution_kwh, True)
    fresh.solve()
    on = fresh.clean_intervals()
    return on, CleanDayModel(mg, dt, side="fixed", clean_intervals=on)
