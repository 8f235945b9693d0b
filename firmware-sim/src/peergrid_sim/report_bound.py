"""The testbed report's per-MG bound on what P2P may cost an MG: its conventional day plus the risk allowance
its owner accepted (K2's guard fields in the edge's interval records), and the `rationality` section beside it.

Promises: `owner_bound(edges, cost_p2p, cost_conv, window)` -> (check, section). `edges`: each MG's interval
records (the MGMCs' record files); `cost_p2p` / `cost_conv`: each MG's day under P2P and conventionally, as the
report adds them (the intervals run plus the last record's cost to go). The check (the report's
`p2p_not_dearer`) holds when every MG's P2P day is within its conventional day plus its `risk_allowance` (the
last traded record's: the same all day; 0 where the records carry none, as before the guard, and with
rationality off).
The section gives per MG its allowance, the bound, its P2P day, whether it stayed within, the guard's mode
(strict|trades|off, or None before the guard), the summed `guard.dso_cost` (the part of the actual cost that
was not the guard's choice: a DSO adjustment, a re-bargain, a changed closing) and the last `budget_day` and
`budget_left`. `dso_cost` is None where no record of the run's intervals carries one (the guard off, an edge
from before it, a dispatch the guard did not book: forward, unguarded) and `dso_cost_unknown` then says why and
for which intervals (it does too where only some carry one, and `dso_cost` is then the sum of those); an
unknown part is never shown as 0. Beside them: `above_conventional` (its P2P day less its conventional day), `dso_limited` (each interval a
DSO limit bound it, with the forward trades it held there and that interval's difference to its conventional
day: `report_limits`), `dso_limited_above` (their sum) and `cause`, one sentence naming why the MG stands where
it does; `dearer` gives that sentence for each MG past its bound, so a failed check names its cause.
The bound is the guard's only where its mode is strict and the MG held no forward trades, and
a DSO change after the guard chose (`dso_cost` > 0) is the DSO's and may break it: it is reported beside the
check, not taken out of it. A guard field that is not a number is named in `errors` (counted as 0 for the
check), never raised: the report is written whatever one record holds. `window`: the run's intervals (the costs
are summed over them; None: every record). Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from peergrid_sim.report_limits import cause, finite, limited_intervals

SLACK = 1e-6  # currency: the float sums' rounding


def _number(value: Any, mg: str, what: str, errors: list[str]) -> float:
    """`value` as a finite float (`report_limits.finite`); anything else is named in `errors` and counted as 0."""
    number = finite(value)
    if number is not None:
        return number
    errors.append(f"{mg}: {what} is not a number: {value!r}"[:200])
    return 0.0


def _unknown(mode_by_interval: dict[Any, str]) -> str:
    """'guard off in intervals 36, 37' (grouped by why) for the intervals whose record carries no dso_cost."""
    by_why: dict[str, list[str]] = {}
    for interval, why in mode_by_interval.items():
        by_why.setdefault(why, []).append(str(interval))
    return "; ".join(
        f"{why} in interval{'s' if len(ts) > 1 else ''} {', '.join(ts)}" for why, ts in by_why.items()
    )


def _why_unbooked(guard: Any) -> str:
    """Why a record carries no dso_cost: the guard's mode or the dispatch it did not book."""
    if not isinstance(guard, dict):
        return "no guard fields (an edge from before the guard)"
    if guard.get("mode") == "off":
        return "guard off"
    return f"dispatch {guard.get('dispatch')!r} not booked by the guard"


def owner_bound(
    edges: dict[str, list[dict[str, Any]]],
    cost_p2p: dict[str, float],
    cost_conv: dict[str, float],
    window: Collection[int] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """The check and the `rationality` section (module contract)."""
    errors: list[str] = []
    mgs: dict[str, Any] = {}
    for mg, recs in edges.items():
        traded = [r for r in recs if "trades" in r]
        allowance, dso_cost = 0.0, 0.0
        mode: str | None = None
        unbooked: dict[Any, str] = {}  # interval -> why its record carries no dso_cost
        for r in traded:
            allowance = _number(r.get("risk_allowance", 0.0), mg, "risk_allowance", errors)
            guard = r.get("guard")
            if isinstance(guard, dict):
                mode = str(guard.get("mode")) if guard.get("mode") is not None else mode
            if window is not None and r.get("interval") not in window:
                continue
            if isinstance(guard, dict) and "dso_cost" in guard:
                dso_cost += _number(guard["dso_cost"], mg, "guard.dso_cost", errors)
            else:
                unbooked[r.get("interval")] = _why_unbooked(guard)
        last = {
            k: next((r[k] for r in reversed(recs) if k in r), None) for k in ("budget_day", "budget_left")
        }
        run = [r for r in traded if window is None or r.get("interval") in window]
        known = len(unbooked) < len(run)
        if not run:
            why: str | None = "no interval record in the run's intervals"
        elif unbooked:
            why = _unknown(unbooked) + ("; the sum is of the others" if known else "")
        else:
            why = None
        entry: dict[str, Any] = {
            "risk_allowance": allowance,
            "guard_mode": mode,
            "dso_cost": dso_cost if known else None,
            "dso_cost_unknown": why,
            **last,
        }
        limited = limited_intervals(mg, recs, errors, window)
        if mg in cost_p2p and mg in cost_conv:
            bound = cost_conv[mg] + allowance
            entry |= {"bound": bound, "cost_p2p": cost_p2p[mg], "within": cost_p2p[mg] <= bound + SLACK,
                      "above_conventional": cost_p2p[mg] - cost_conv[mg]}  # fmt: skip
        entry |= {
            "dso_limited": limited,
            "dso_limited_above": sum(e["above_conventional"] or 0.0 for e in limited),
            "cause": cause(entry, limited),
        }
        mgs[mg] = entry
    check = all(
        cost_p2p[mg] <= cost_conv[mg] + mgs.get(mg, {}).get("risk_allowance", 0.0) + SLACK for mg in cost_p2p
    )
    dearer = {mg: e["cause"] for mg, e in mgs.items() if e.get("within") is False}
    return check, {"mgs": mgs, "dearer": dearer, "errors": errors}
