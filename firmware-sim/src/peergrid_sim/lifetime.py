"""Where an emulated device's lifetime energy counters stand at power-on: where a device in service would show.

Promises: `power_on_counters(kind, serial, model, preset)` gives, for each lifetime energy counter of a `kind`
device's physics `model` that the scenario does not preset (`preset`: its params), the figure that device starts
from, and for a battery the cycle count that goes with it. A figure depends only on the serial and the model's
ratings — the same device starts from the same figure in every run, on every machine (SHA-256, never Python's
salted `hash`) — and is a whole number of kWh, so a counter rounded to the Wh moves by what it would have
counted from 0, within a Wh at any read (the physics adds each step to a larger float, at most a millionth of
a Wh a step off the sum from 0, so a count that ends that near half a Wh may round the other way), a year or
two of service at most and never over `MOST_WH`, leaving an acc32 counter at scale 0
(4294967295 Wh) over 3.2 GWh before it rolls over.
Why: SunSpec reads an accumulator at 0 as "not accumulated", so a fresh lab's PCC meters were read as having no
counter (the edge's data-quality warning at start-up, no counter in the sealed readings) until they had counted a
Wh each way; a real meter's lifetime counter is not 0. A counter the physics does not count (a load's export) is
left at 0, as a real one would be. Pure: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Any

MOST_WH = 1_000_000_000  # 1 GWh: any device's lifetime figure at most this
# Full-load hours of service each counter starts from, (fewest, most): a PV inverter a year or two in the sun,
# a genset run now and then, a PCC meter's each direction over its MG's rating
HOURS = {
    ("pv", "energy_wh"): (800.0, 2400.0),
    ("genset", "energy_wh"): (200.0, 2000.0),
    ("load", "energy_wh"): (800.0, 2400.0),
    ("meter", "import_wh"): (200.0, 1000.0),
    ("meter", "export_wh"): (100.0, 500.0),
}
CYCLES = (100.0, 600.0)  # a battery's full discharges so far
RATING = {
    "pv": ("rating_w",),
    "genset": ("rating_w",),
    "load": ("critical_w", "sheddable_w"),
    "meter": ("rating_w",),
}


def draw(serial: str, counter: str) -> float:
    """A number in [0, 1) that is the same for this serial and counter everywhere."""
    digest = hashlib.sha256(f"{serial}/{counter}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def whole_kwh(wh: float) -> float:
    return float(1000 * int(min(wh, MOST_WH) // 1000))


def _between(low_high: tuple[float, float], share: float) -> float:
    low, high = low_high
    return low + (high - low) * share


def power_on_counters(kind: str, serial: str, model: Any, preset: Collection[str]) -> dict[str, float]:
    """The counters (physics field -> Wh; a battery's `cycles` too) `model` starts from, where not preset."""
    counters: dict[str, float] = {}
    if kind == "battery":
        cycles = _between(CYCLES, draw(serial, "discharged_wh"))
        discharged = whole_kwh(model.capacity_wh * cycles)
        counters["discharged_wh"] = discharged
        # what went in to let that much out: both ways' losses
        counters["charged_wh"] = whole_kwh(
            discharged / (model.charge_efficiency * model.discharge_efficiency)
        )
        counters = {name: wh for name, wh in counters.items() if name not in preset}
        if (
            "cycles" not in preset
        ):  # as the physics keeps it (`Battery._step`), from the counter it starts from
            counters["cycles"] = counters.get("discharged_wh", model.discharged_wh) / model.capacity_wh
        return counters
    rating_w = sum(float(getattr(model, name)) for name in RATING.get(kind, ()))
    for (of_kind, name), hours in HOURS.items():
        if of_kind == kind and name not in preset:
            counters[name] = whole_kwh(rating_w * _between(hours, draw(serial, name)))
    return counters
