"""Data quality, pure: readings a device could not physically produce are named, not silently trusted.

Promises: `implausible(nature, reading)` lists what is wrong with one nature-level reading — a state of charge
outside 0–100 %, a power beyond 1.5× the device's own rating (or a PV inverter or genset drawing power),
a limit percentage outside 0–100, any quantity that is not a finite number (NaN, ±Infinity: a comparison with NaN
is always false, so such a value would otherwise pass every check), a meter's energy counter that the reading
carries without a value (`COUNTERS`: its scale factor refused, or SunSpec's 0 "not accumulated"; the DSO's
metering then finds no counter for that side in the sealed reading, review25 F6) — and returns [] for a reading
it has nothing against. A rating below zero is named too; one that is not finite, or not above zero, counts as no rating. It never changes the
reading: the ledger commits what was read (tamper evidence), the health report and metrics carry the doubt.
`untrusted_share(states, now, nature)` says which devices of a nature cannot be counted on now (quarantined, or
their last good reading stale) and what share of that nature's rating the others hold: the trader plans and
offers a PV's output, a battery's charge and discharge and a genset's output only while the device answers (U4
F9; `interval_offer.counted_for`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peergrid_edge.polling import DeviceState

OVER_RATING = 1.5
# The counters the DSO's metering reads from a meter's sealed reading, by the side each one meters.
COUNTERS = {"meter": {"energy_wh": "export", "import_wh": "import"}}


def implausible(nature: str, reading: Mapping[str, float | None]) -> list[str]:
    problems = [
        f"{name} {value} is not a finite number"
        for name, value in reading.items()
        if value is not None and not math.isfinite(value)
    ]
    finite = {k: v for k, v in reading.items() if v is not None and math.isfinite(v)}
    soc = finite.get("soc_pct")
    if soc is not None and not 0.0 <= soc <= 100.0:
        problems.append(f"soc_pct {soc:g} outside 0..100")
    for name in ("limit_pct", "charge_pct", "discharge_pct"):
        value = finite.get(name)
        if value is not None and not 0.0 <= value <= 100.0:
            problems.append(f"{name} {value:g} outside 0..100")
    power, rating = finite.get("power_w"), finite.get("rating_w")
    if rating is not None and rating < 0.0:
        problems.append(f"rating_w {rating:g} below zero")
    if rating is not None and rating <= 0.0:
        rating = None
    if power is not None and rating and abs(power) > OVER_RATING * rating:
        problems.append(f"power_w {power:g} beyond {OVER_RATING:g}x the rating {rating:g}")
    if power is not None and nature in ("pv", "genset") and power < -0.05 * (rating or 1000.0):
        problems.append(f"a {nature} drawing {-power:g} W")
    for name, side in COUNTERS.get(nature, {}).items():
        if name in reading and reading[name] is None:
            problems.append(
                f"{name} not read (its {side} counter's scale factor refused, or the counter at 0: not "
                f"accumulated): the DSO finds no {side} counter in this reading"
            )
    return problems


def untrusted_share(
    states: Mapping[str, DeviceState], now_mono: float, nature: str
) -> tuple[dict[str, str], float]:
    """The devices of `nature` that cannot be counted on at `now_mono` (name -> "quarantined" or "stale": no
    good reading within its `stale_after`, or none yet), and the share (0..1) of the nature's rating the
    others hold, each weighed by its rating (its last good reading's `rating_w`, else its control's `max_w`,
    else all alike, as `planning` splits a plan over them). 1.0 where none is out or the MG has none."""
    devices = {name: state for name, state in states.items() if state.settings.nature == nature}
    out = {
        name: "quarantined" if state.health.quarantined(now_mono) else "stale"
        for name, state in devices.items()
        if state.health.quarantined(now_mono) or state.is_stale(now_mono)
    }
    if not out:
        return out, 1.0

    def rating(state: DeviceState) -> float | None:
        reading = state.last_good.reading if state.last_good is not None else {}
        control = state.settings.control
        for watts in (reading.get("rating_w"), None if control is None else control.max_w):
            if watts is not None and math.isfinite(watts) and watts > 0.0:
                return float(watts)
        return None

    known = {name: rating(state) for name, state in devices.items()}
    weights = {name: watts for name, watts in known.items() if watts is not None}
    if len(weights) < len(known):  # one rating unknown: weighed all alike
        weights = dict.fromkeys(known, 1.0)
    return out, sum(w for name, w in weights.items() if name not in out) / sum(weights.values())
