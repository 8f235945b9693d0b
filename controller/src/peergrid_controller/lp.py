"""A small sparse (MI)LP builder that hands its model to HiGHS in one call.

Promises: columns and rows are added in order and keep their integer index; `solve` returns a typed
`Solution` or raises `SolveError` whose `cause` is "infeasible", "unbounded" or "solver" and whose message
names the model. The objective is linear (HiGHS refuses MIQPs); minimisation only.
Assumes callers keep models small enough for one Raspberry Pi core (thousands of columns, not millions).
Never prints (HiGHS output is silenced) and never reads clocks.

Why not Pyomo here: building the same 96-interval model through Pyomo costs more than HiGHS needs to solve it
(see bench/results/market.md); `pyomo_check.py` keeps a Pyomo formulation that tests compare against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import highspy
import numpy as np
from highspy.highs import _Highs as _BareHighs  # type: ignore[attr-defined]  # no banner-printing init

INF = float("inf")


class SolveError(RuntimeError):
    """The optimiser could not produce a schedule; `cause` says why in one word."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Solution:
    objective: float
    x: tuple[float, ...]
    row_duals: tuple[float, ...]  # empty for MILPs
    mip_gap: float = 0.0  # relative gap left when a time limit stopped the search (0 when proven optimal)


class LinearProgram:
    def __init__(self, name: str) -> None:
        self.name = name
        self.cost: list[float] = []
        self.col_lo: list[float] = []
        self.col_hi: list[float] = []
        self.integer: list[int] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []
        self.row_start: list[int] = [0]
        self.row_index: list[int] = []
        self.row_value: list[float] = []
        self.offset = 0.0

    @property
    def num_cols(self) -> int:
        return len(self.cost)

    @property
    def num_rows(self) -> int:
        return len(self.row_lo)

    def var(self, lo: float = 0.0, hi: float = INF, cost: float = 0.0, integer: bool = False) -> int:
        self.cost.append(cost)
        self.col_lo.append(lo)
        self.col_hi.append(hi)
        if integer:
            self.integer.append(len(self.cost) - 1)
        return len(self.cost) - 1

    def row(self, coefs: Mapping[int, float] | Sequence[tuple[int, float]], lo: float, hi: float) -> int:
        items = coefs.items() if isinstance(coefs, Mapping) else coefs
        for index, value in items:
            if value != 0.0:
                self.row_index.append(index)
                self.row_value.append(value)
        self.row_start.append(len(self.row_index))
        self.row_lo.append(lo)
        self.row_hi.append(hi)
        return len(self.row_lo) - 1

    def eq(self, coefs: Mapping[int, float] | Sequence[tuple[int, float]], rhs: float) -> int:
        return self.row(coefs, rhs, rhs)

    def le(self, coefs: Mapping[int, float] | Sequence[tuple[int, float]], rhs: float) -> int:
        return self.row(coefs, -INF, rhs)

    def to_highs(self) -> highspy.Highs:
        lp = highspy.HighsLp()
        lp.num_col_ = self.num_cols
        lp.num_row_ = self.num_rows
        lp.offset_ = self.offset
        lp.col_cost_ = np.array(self.cost, dtype=np.float64)
        lp.col_lower_ = np.array(self.col_lo, dtype=np.float64)
        lp.col_upper_ = np.array(self.col_hi, dtype=np.float64)
        lp.row_lower_ = np.array(self.row_lo, dtype=np.float64)
        lp.row_upper_ = np.array(self.row_hi, dtype=np.float64)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_ = self.num_cols
        lp.a_matrix_.num_row_ = self.num_rows
        lp.a_matrix_.start_ = np.array(self.row_start, dtype=np.int32)
        lp.a_matrix_.index_ = np.array(self.row_index, dtype=np.int32)
        lp.a_matrix_.value_ = np.array(self.row_value, dtype=np.float64)
        if self.integer:
            kinds = [highspy.HighsVarType.kContinuous] * self.num_cols
            for i in self.integer:
                kinds[i] = highspy.HighsVarType.kInteger
            lp.integrality_ = kinds
        h = new_highs()
        h.setOptionValue("threads", 1)
        h.setOptionValue("mip_rel_gap", 1e-6)
        h.setOptionValue("random_seed", 0)
        h.passModel(lp)
        return h


def new_highs() -> highspy.Highs:
    """A silent HiGHS instance: `output_flag` is off before the solver can print anything.

    `highspy.Highs()` enables its Python callbacks in its constructor, and that first call prints the licence
    banner on stdout before any option can be set; the bare solver underneath has every method we use.
    """
    # typed as the wrapper, which adds only Python conveniences on top of these same C++ methods
    h = cast(highspy.Highs, _BareHighs())
    h.setOptionValue("output_flag", False)
    return h


def run(h: highspy.Highs, name: str, accept_incumbent: bool = False) -> Solution:
    """Solve (or re-solve, warm) a model already passed to HiGHS.

    `accept_incumbent`: when a time limit stops a MILP, return its best feasible plan with the gap left.
    """
    h.run()
    status = h.getModelStatus()
    if accept_incumbent and status == highspy.HighsModelStatus.kTimeLimit:
        info = h.getInfo()
        if info.primal_solution_status == 2:  # feasible
            sol = h.getSolution()
            return Solution(
                float(info.objective_function_value), tuple(sol.col_value), (), float(info.mip_gap)
            )
    if status == highspy.HighsModelStatus.kOptimal:
        info = h.getInfo()
        sol = h.getSolution()
        duals = tuple(sol.row_dual) if sol.dual_valid else ()
        return Solution(
            objective=float(info.objective_function_value), x=tuple(sol.col_value), row_duals=duals
        )
    if status == highspy.HighsModelStatus.kInfeasible:
        raise SolveError("infeasible", f"{name}: no schedule satisfies every constraint (infeasible)")
    if status in (highspy.HighsModelStatus.kUnbounded, highspy.HighsModelStatus.kUnboundedOrInfeasible):
        raise SolveError(
            "unbounded", f"{name}: payoff is unbounded (a price or limit lets it grow without end)"
        )
    raise SolveError("solver", f"{name}: HiGHS stopped with status {h.modelStatusToString(status)}")
