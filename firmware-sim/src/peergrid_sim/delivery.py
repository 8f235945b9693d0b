"""What each MG delivered of its P2P trades, per interval, from the MGMCs' own records (the lab report's
`delivery`): so a lab run shows where trades fall short and how late in its slot each MG dispatched.

Promises: `delivery(edges, slot_start)` gives one row per MG and interval it recorded (a trading record, with
`trades`): its role, the kWh it agreed (sold + bought), what its statements said was delivered (settle_by_both:
each trade's statement from its PCC meter; None where it stated nothing, e.g. a chain without statements), how
many statements fell short of their trade and by how much, and when it dispatched (`times.dispatched`: the edge
dispatches its agreed plan right after submitting the injection; records from before that field carry only the
DSO's final verdict, after which the edge then dispatched: `times.dso_done`) in seconds from its slot's start. Pure: records in, rows out; a
record it cannot read (a half-written line is already dropped by `report.json_lines`) is skipped, never raised.
Assumes the records' layout of `trader.py` (`trades[].id`, `quantity_kwh`; settlement lines
`{"interval", "settlement": {"trade", "delivered"}}`). Never reads the chain or the meters itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def _statements(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """trade id -> the Wh this MG stated delivered (its last statement of that trade)."""
    stated: dict[str, int] = {}
    for r in records:
        s = r.get("settlement")
        if isinstance(s, Mapping) and isinstance(s.get("trade"), str) and isinstance(s.get("delivered"), int):
            stated[s["trade"]] = s["delivered"]
    return stated


def delivery(
    edges: Mapping[str, Sequence[Mapping[str, Any]]], slot_start: Callable[[int], float] | None = None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for mg, records in sorted(edges.items()):
        stated = _statements(records)
        for r in records:
            trades = r.get("trades")
            if not isinstance(trades, list) or not isinstance(r.get("interval"), int):
                continue
            t = r["interval"]
            agreed = {tr["id"]: round(float(tr["quantity_kwh"]) * 1000) for tr in trades if "id" in tr}
            mine = {tid: stated[tid] for tid in agreed if tid in stated}
            shorts = [agreed[tid] - wh for tid, wh in mine.items() if wh < agreed[tid]]
            times = r.get("times") or {}
            dispatched = times.get("dispatched", times.get("dso_done"))
            rows.append(
                {
                    "interval": t,
                    "mg": mg,
                    "role": r.get("role"),
                    "agreed_kwh": sum(agreed.values()) / 1000,
                    "stated_kwh": sum(mine.values()) / 1000 if mine else None,
                    "statements": len(mine),
                    "short_statements": len(shorts),
                    "short_kwh": sum(shorts) / 1000,
                    "dispatched_s": None
                    if slot_start is None or not isinstance(dispatched, int | float)
                    else round(dispatched - slot_start(t), 2),
                }
            )
    return sorted(rows, key=lambda row: (row["interval"], row["mg"]))
