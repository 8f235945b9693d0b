"""What the MGMC tells the world about a device: nature-level figures, never raw registers.

Pure: a Snapshot in, a small dict out. Power is positive when the device injects into the MG bus.
"""

from __future__ import annotations

from typing import Any

from peergrid_edge.drivers import Snapshot

# SunSpec inverter and meter models that carry total AC power as "W" and lifetime energy as "WH".
_POWER_MODELS = ("103", "102", "101", "111", "112", "113", "701", "203", "202", "201", "204")


def device_summary(snapshot: Snapshot, *, now: float, stale_after_s: float) -> dict[str, Any]:
    power_w = energy_wh = None
    for model in _POWER_MODELS:
        points = snapshot.points.get(model)
        if points is None:
            continue
        power_w = points.get("W")
        energy_wh = points.get("WH") or points.get("TotWhExp")
        break
    return {
        "name": snapshot.device,
        "nature": snapshot.nature,
        "ok": snapshot.ok,
        "stale": (now - snapshot.at) > stale_after_s or not snapshot.ok,
        "error": snapshot.error,
        "power_w": power_w,
        "energy_wh": energy_wh,
        "models": sorted(int(m) for m in snapshot.points),
    }
