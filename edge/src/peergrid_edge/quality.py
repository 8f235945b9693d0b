"""Data quality, pure: readings a device could not physically produce are named, not silently trusted.

Promises: `implausible(nature, reading)` lists what is wrong with one nature-level reading — a state of charge
outside 0–100 %, a power beyond 1.5× the device's own rating (or a PV inverter or genset drawing power),
a limit percentage outside 0–100, any quantity that is not a finite number (NaN, ±Infinity: a comparison with NaN
is always false, so such a value would otherwise pass every check), a meter's energy counter that the reading
carries without a value (`COUNTERS`: its scale factor refused, or SunSpec's 0 "not accumulated"; the DSO's
metering then finds no counter for that side in the sealed reading, review25 F6) — and returns [] for a reading
it has nothing against. A rating below zero is named too; one that is not finite, or not above zero, counts as no rating. It never changes the
reading: the ledger commits what was read (tamper evidence), the health report and metrics carry the doubt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

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
