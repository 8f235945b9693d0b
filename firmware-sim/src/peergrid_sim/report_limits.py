"""The intervals where a DSO limit bound an MG, for the report's per-MG bound (`report_bound`): what the limit
was, whether the MG met it, the forward trades it held there and what those intervals cost it against its
conventional counterfactual; and the sentence that names why an MG's P2P day ended where it did (`cause`).

Why: a forward buyer whose draw the DSO's contract cut keeps its day-ahead purchase and sells what it cannot take
back at feed-in (D3: mg4 in the 0.93 lab, +13.29 above its conventional day, all of it in the two intervals the
DSO limited), while the conventional counterfactual meets the same limit and simply imports less. The check
failed rightly and the report said nothing of why.

Promises: `limited_intervals(mg, recs, errors, window)` reads an MGMC's interval records (those with `trades`, in
`window` if given) and returns one entry per interval whose record holds a DSO limit addressed to the MG
(`limits`, the adjustment contracts it received) or an answer to one (`adjustments`): `met` is False where any
answer says it could not reach its limit (None: the record holds no answer). A limit the MG met counts too: it
bound the plan the same way (the MG re-planned to reach it). Forward trades are the record's trades where the
record names its day-ahead session (`forward`); each is `bought` or `sold` by the record's `anonym`. A figure
that is not a number is named in `errors` and left out, never raised (`finite(value)`: a finite number as a
float, else None; `report_bound` reads its guard fields by it too). Pure; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any


def finite(value: Any) -> float | None:
    """`value` as a float where it is a finite number (not a bool), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _limit(contract: dict[str, Any]) -> dict[str, Any]:
    """The contract's own words: its bound (W, None: unbounded that side), its iteration and the DSO's reason."""
    return {k: contract.get(k) for k in ("iteration", "min_injection_w", "max_injection_w", "reason")}


def _forward_trades(record: dict[str, Any]) -> list[dict[str, Any]]:
    if not record.get("forward"):
        return []
    anonym = record.get("anonym")
    return [
        {
            "id": trade.get("id"),
            "side": "sold"
            if trade.get("seller") == anonym
            else "bought"
            if trade.get("buyer") == anonym
            else None,
            "quantity_kwh": trade.get("quantity_kwh"),
            "price": trade.get("price"),
        }
        for trade in record.get("trades") or []
        if isinstance(trade, dict)
    ]


def limited_intervals(
    mg: str, recs: list[dict[str, Any]], errors: list[str], window: Collection[int] | None = None
) -> list[dict[str, Any]]:
    """One entry per interval where a DSO limit bound `mg` (module contract)."""
    out = []
    for r in recs:
        if "trades" not in r or (window is not None and r.get("interval") not in window):
            continue
        limits = [c for c in r.get("limits") or [] if isinstance(c, dict) and c.get("mg", mg) == mg]
        answers = [a for a in r.get("adjustments") or [] if isinstance(a, dict)]
        if not limits and not answers:
            continue
        costs = {k: finite(r.get(k)) for k in ("cost_p2p", "cost_conventional")}
        for k, v in costs.items():
            if v is None:
                errors.append(f"{mg}: interval {r.get('interval')}: {k} is not a number: {r.get(k)!r}"[:200])
        p2p, conv = costs["cost_p2p"], costs["cost_conventional"]
        trades = _forward_trades(r)
        out.append(
            {
                "interval": r.get("interval"),
                "limits": [_limit(c) for c in limits],
                "met": all(a.get("met") is True for a in answers) if answers else None,
                "injection_kw": r.get("injection_kw"),  # as it planned before the limit
                "final_injection_kw": r.get("final_injection_kw"),  # what it offered in the end
                "forward": r.get("forward") or None,
                "forward_trades": trades,
                "forward_kwh": {
                    side: round(sum(finite(t["quantity_kwh"]) or 0.0 for t in trades if t["side"] == side), 6)
                    for side in ("bought", "sold")
                },
                "cost_p2p": p2p,
                "cost_conventional": conv,
                "above_conventional": None if p2p is None or conv is None else p2p - conv,
            }
        )
    return out


def _intervals(entries: list[dict[str, Any]]) -> str:
    return ", ".join(str(e["interval"]) for e in entries)


def _held(entries: list[dict[str, Any]]) -> str:
    """'where it held forward trades (bought 232.568 kWh, session …)' or 'where it held no forward trade'."""
    kwh = {side: sum(e["forward_kwh"][side] for e in entries) for side in ("bought", "sold")}
    sessions = sorted({str(e["forward"]) for e in entries if e["forward_trades"]})
    if not sessions:
        return "where it held no forward trade"
    held = ", ".join(f"{side} {q:.3f} kWh" for side, q in kwh.items() if q)
    return f"where it held forward trades ({held}; day-ahead session {', '.join(sessions)})"


def _met(entries: list[dict[str, Any]]) -> str:
    unmet = [e for e in entries if e["met"] is False]
    if not unmet:
        return "met by re-planning"
    if len(unmet) == len(entries):
        return "not met: it could not reach its limit"
    return f"not met in {_intervals(unmet)}"


def cause(entry: dict[str, Any], limited: list[dict[str, Any]]) -> str:
    """Why the MG's P2P day stands where it does against its bound: by how much it is above (or within), how much
    of its difference to its conventional day the DSO-limited intervals account for, the forward trades it held
    there, and the rest of its day (its other intervals and the cost to go its batteries leave). `entry`: the
    MG's `rationality` entry, with `bound` and `cost_p2p` (an MG without costs gets '')."""
    if "bound" not in entry:
        return ""
    over = entry["cost_p2p"] - entry["bound"]
    # (within the float sums' slack an MG at its bound reads "by 0.00", not "-0.00")
    said = f"{over:.2f} above its bound" if not entry["within"] else f"within its bound by {abs(over):.2f}"
    said += f" (its conventional day + allowance {entry['risk_allowance']:.2f})"
    if not limited:
        return f"{said}; no DSO limit bound it in the run's intervals."
    part = sum(e["above_conventional"] or 0.0 for e in limited)
    rest = entry["above_conventional"] - part
    return (
        f"{said}. A DSO limit bound it in interval{'s' if len(limited) > 1 else ''} {_intervals(limited)} "
        f"({_met(limited)}), {_held(limited)}: those intervals account for {part:+.2f} against its "
        f"conventional day, the rest of its day (other intervals, the batteries' cost to go) {rest:+.2f}."
    )
