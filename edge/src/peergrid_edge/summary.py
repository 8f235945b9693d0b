"""What the MGMC tells the world about a device: nature-level figures, never raw registers.

Pure: a device's state in, the health payload's device entry out (keys: name, nature, ok, stale, error,
power_w, energy_wh, models). Values come from the last good reading, so a device that just failed still shows
what it last said, marked stale once that is older than its stale window.
"""

from __future__ import annotations

from typing import Any

from peergrid_edge.polling import DeviceState


def device_summary(state: DeviceState, *, stale: bool) -> dict[str, Any]:
    last, good = state.last, state.last_good
    reading = good.reading if good is not None else {}
    return {
        "name": state.settings.name,
        "nature": state.settings.nature,
        "ok": bool(last is not None and last.ok),
        "stale": stale,
        "error": (last.error if last is not None else None) or _doubts(state),
        "power_w": reading.get("power_w"),
        "energy_wh": reading.get("energy_wh"),
        "models": sorted(int(m) for m in (good.points if good is not None else {}) if m.isdigit()),
    }


def _doubts(state: DeviceState) -> str | None:
    return "implausible: " + "; ".join(state.doubts) if state.doubts else None
