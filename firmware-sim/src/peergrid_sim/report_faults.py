"""The lab report's `device_faults`: every device a fault touched during the run, not only at its end.

Promises: `device_faults(saved, edges, timing)` gives one entry per device that had a fault injected during the
run, was left out of an MGMC's plan (its records' `uncounted`), or had a fault or its own watchdog's safe state
when the run ended: {"device": "mg2/bess1", "mg": "mg2", "faults": the faults active at the end ({} if none),
"injected": [{"kind", "params", "from_interval", "to_interval"}], "left_out": [{"from_interval",
"to_interval", "why"}]}, ordered by device. `to_interval` is the interval the fault was cleared in (None: still
on at the end) or the last one the MGMC left the device out of; an interval is the slot a wall time falls in
(`timing`; None without it). `saved` is what `report.collect_live` wrote: {"active": [...], "log": [...]},
or a list (a lab from before the log: active faults only), {"error": ...} or None (not collected), which
leave the MGMCs' view. Pure: reads no file.
"""

from __future__ import annotations

import math
from typing import Any


def interval_at(timing: Any, wall: float | None) -> int | None:
    """The interval whose slot [t0 + k * interval_s, t0 + (k + 1) * interval_s) holds wall time `wall`."""
    if timing is None or not isinstance(wall, int | float):
        return None
    return int(timing.first_interval + math.floor((wall - timing.t0) / timing.interval_s))


def device_faults(saved: Any, edges: dict[str, list[dict[str, Any]]], timing: Any) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def entry(device: str) -> dict[str, Any]:
        mg = device.split("/", 1)[0] if "/" in device else None
        return out.setdefault(
            device, {"device": device, "mg": mg, "faults": {}, "injected": [], "left_out": []}
        )

    active = saved.get("active", []) if isinstance(saved, dict) else saved if isinstance(saved, list) else []
    for a in active:
        if isinstance(a, dict) and isinstance(a.get("device"), str):
            entry(a["device"])["faults"] = a.get("faults") or {}
    log = saved.get("log", []) if isinstance(saved, dict) else []
    for e in sorted((e for e in log if isinstance(e, dict) and isinstance(e.get("device"), str)),
                    key=lambda e: e.get("from") or 0.0):  # fmt: skip
        entry(e["device"])["injected"].append({
            "kind": e.get("fault"),
            "params": e.get("params") or {},
            "from_interval": interval_at(timing, e.get("from")),
            "to_interval": interval_at(timing, e.get("to")),
        })  # fmt: skip
    for mg, records in sorted(edges.items()):
        runs: dict[str, list[dict[str, Any]]] = {}
        for r in sorted((r for r in records if "trades" in r and isinstance(r.get("interval"), int)),
                        key=lambda r: r["interval"]):  # fmt: skip
            for name, why in (r.get("uncounted") or {}).items():
                spans = runs.setdefault(name, [])
                last = spans[-1] if spans else None
                if last and last["why"] == why and last["to_interval"] + 1 == r["interval"]:
                    last["to_interval"] = r["interval"]
                else:
                    spans.append({"from_interval": r["interval"], "to_interval": r["interval"], "why": why})
        for name, spans in runs.items():
            entry(f"{mg}/{name}")["left_out"] = spans
    return [out[d] for d in sorted(out)]
