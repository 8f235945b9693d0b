"""The testbed report's per-MG bound on what P2P may cost an MG: its conventional day plus the risk allowance
its owner accepted (K2's guard fields in the edge's interval records), and the `rationality` section beside it.

Promises: `owner_bound(edges, cost_p2p, cost_conv)` -> (check, section). `edges`: each MG's interval records
(the MGMCs' record files); `cost_p2p` / `cost_conv`: each MG's day under P2P and conventionally, as the report
adds them (the intervals run plus the last record's cost to go). The check (the report's `p2p_not_dearer`)
holds when every MG's P2P day is within its conventional day plus its `risk_allowance` (the last traded
record's: the same all day; 0 where the records carry none, as before the guard, and with rationality off).
The section gives per MG its allowance, the bound, its P2P day, whether it stayed within, the guard's mode
(strict|trades|off, or None before the guard), the summed `guard.dso_cost` (the part of the actual cost that
was not the guard's choice: a DSO adjustment, a re-bargain, a changed closing) and the last `budget_day` and
`budget_left`. The bound is the guard's only where its mode is strict and the MG held no forward trades, and
a DSO change after the guard chose (`dso_cost` > 0) is the DSO's and may break it: it is reported beside the
check, not taken out of it. A guard field that is not a number is named in `errors` (counted as 0 for the
check), never raised: the report is written whatever one record holds. Pure; no I/O.
"""

from __future__ import annotations

import math
from typing import Any

SLACK = 1e-6  # currency: the float sums' rounding


def _number(value: Any, mg: str, what: str, errors: list[str]) -> float:
    """`value` as a finite float; anything else is named in `errors` and counted as 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    errors.append(f"{mg}: {what} is not a number: {value!r}"[:200])
    return 0.0


def owner_bound(
    edges: dict[str, list[dict[str, Any]]], cost_p2p: dict[str, float], cost_conv: dict[str, float]
) -> tuple[bool, dict[str, Any]]:
    """The check and the `rationality` section (module contract)."""
    errors: list[str] = []
    mgs: dict[str, Any] = {}
    for mg, recs in edges.items():
        traded = [r for r in recs if "trades" in r]
        allowance, dso_cost = 0.0, 0.0
        mode: str | None = None
        for r in traded:
            allowance = _number(r.get("risk_allowance", 0.0), mg, "risk_allowance", errors)
            guard = r.get("guard")
            if isinstance(guard, dict):
                mode = str(guard.get("mode")) if guard.get("mode") is not None else mode
                if "dso_cost" in guard:
                    dso_cost += _number(guard["dso_cost"], mg, "guard.dso_cost", errors)
        last = {
            k: next((r[k] for r in reversed(recs) if k in r), None) for k in ("budget_day", "budget_left")
        }
        entry: dict[str, Any] = {
            "risk_allowance": allowance,
            "guard_mode": mode,
            "dso_cost": dso_cost,
            **last,
        }
        if mg in cost_p2p and mg in cost_conv:
            bound = cost_conv[mg] + allowance
            entry |= {"bound": bound, "cost_p2p": cost_p2p[mg], "within": cost_p2p[mg] <= bound + SLACK}
        mgs[mg] = entry
    check = all(
        cost_p2p[mg] <= cost_conv[mg] + mgs.get(mg, {}).get("risk_allowance", 0.0) + SLACK for mg in cost_p2p
    )
    return check, {"mgs": mgs, "errors": errors}
