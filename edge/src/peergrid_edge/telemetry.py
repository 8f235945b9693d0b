"""DERs that speak MQTT instead of Modbus: telemetry in, commands out, behind the same driver interface.

Topics (firmware-sim's MQTT sensors and real ones configured alike): telemetry on `<topic>` as JSON
`{"t": epoch s, "seq": n, "readings": {...}}`, commands to `<topic>/set` as a JSON object of settings.
Promises: `read_all` returns the latest telemetry as a Snapshot, `ok=False` ("no telemetry") when none arrived
within the device's stale window — it never waits on the network; malformed telemetry is counted, logged and
dropped. A message holding a number that is not finite (NaN, Infinity, -Infinity, or one too large for a float,
such as 1e999: Python's json takes them all) is malformed as a whole: no reading of it is taken. A PCC meter's
energy counters are read by their telemetry names (`export_wh`, `import_wh`: `BY_NATURE`), so its leaves carry
the counters the DSO meters it by.
`write` publishes the same control points a Modbus device would get, by their setting names; confirmation is
the dispatcher's read-back from later telemetry, as for Modbus.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from peergrid_edge import natures
from peergrid_edge.config import DeviceSettings
from peergrid_edge.drivers import DeviceError, Snapshot
from peergrid_edge.link import MqttLink

log = logging.getLogger(__name__)

# Telemetry reading names -> nature quantities.
QUANTITIES = {
    "ac_w": "power_w",
    "energy_wh": "energy_wh",
    "soc_pct": "soc_pct",
    "rating_w": "rating_w",
    "capacity_wh": "capacity_wh",
    "limit_pct": "limit_pct",
    "limit_enabled": "limit_enabled",
    "connected": "connected",
    "in_pct": "charge_pct",
    "out_pct": "discharge_pct",
    "mode": "mode",
    "fb_s": "watchdog_s",
    "revert_s": "watchdog_s",
    "fb_w": "fallback_w",
    "fb_active": "fallback_active",
}
# Telemetry names whose quantity is the nature's own, as SunSpec's maps say point by point (natures.yaml): a PCC
# meter's `energy_wh` is its export counter (TotWhExp) and `import_wh` its import counter (TotWhImp). Read by the
# names above alone, firmware-sim's MQTT meter (`export_wh`, `import_wh`) left both out of its reading, so its
# leaves held no counter and the DSO metered it on neither side (R42; L2's `rolls: false` guarded nothing).
BY_NATURE = {"meter": {"export_wh": "energy_wh", "import_wh": "import_wh"}}
# SunSpec control points -> command setting names.
SETTINGS = {
    "WMaxLimPct": "limit_pct",
    "WMaxLim_Ena": "limit_enabled",
    "Conn": "connected",
    "StorCtl_Mod": "mode",
    "InWRte": "in_pct",
    "OutWRte": "out_pct",
    "FbTms": "fb_s",
    "FbW": "fb_w",
    "InOutWRte_RvrtTms": "revert_s",
}


class NotFinite(ValueError):
    """A JSON document holding a number that is not finite."""


def _refuse_constant(name: str) -> float:
    raise NotFinite(f"holds {name}, not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotFinite(f"holds {text[:40]}, not a finite number")
    return value


def loads_finite(payload: bytes | str) -> Any:
    """Pure: `json.loads`, but a document holding NaN, Infinity, -Infinity or a float literal beyond a float's range
    (1e999) raises `NotFinite` ("holds NaN, not a finite number"), a ValueError like any other malformed JSON. For every JSON
    ingress of the edge (an integer stays an int: its users convert it). A document nested deeper than json reads
    (a payload of 100,000 "[") is a ValueError too, not the RecursionError json raises, which no caller catches."""
    try:
        return json.loads(payload, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def parse_telemetry(payload: bytes, nature: str | None = None) -> dict[str, float]:
    """Pure: the nature quantities in one telemetry message (of a device of `nature`: its own names too,
    `BY_NATURE`); ValueError if it is not telemetry or if any number in it is not finite (NaN, Infinity, a literal
    beyond a float's range)."""
    try:
        message = loads_finite(payload)
    except NotFinite as exc:
        raise NotFinite(f"telemetry {exc}") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"telemetry is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("readings"), dict):
        raise ValueError("telemetry must be a JSON object with a 'readings' object")
    out: dict[str, float] = {}
    names = {**QUANTITIES, **BY_NATURE.get(nature or "", {})}
    for name, value in message["readings"].items():
        quantity = names.get(name)
        if quantity is not None and isinstance(value, int | float) and not isinstance(value, bool):
            try:
                out[quantity] = float(value)
            except OverflowError:  # an integer literal beyond a float's range
                raise ValueError(f"telemetry reading {name} is too large for a float") from None
    return out


class MqttTelemetryDriver:
    def __init__(self, settings: DeviceSettings, link: MqttLink, topic: str) -> None:
        self.settings = settings
        self.link = link
        self.topic = topic
        self.latest: dict[str, float] | None = None
        self.latest_at = 0.0  # monotonic
        self.malformed = 0
        link.subscribe(topic, self._on_telemetry)

    def _on_telemetry(self, topic: str, payload: bytes) -> None:
        if topic != self.topic:
            return
        try:
            self.latest = parse_telemetry(payload, self.settings.nature)
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            self.malformed += 1
            log.warning(
                "%s: dropped malformed telemetry on %s (%d so far): %s",
                self.settings.name, topic, self.malformed, str(exc)[:200],
            )  # fmt: skip
            return
        self.latest_at = time.monotonic()

    async def read_all(self) -> Snapshot:
        now = time.time()
        name, nature = self.settings.name, self.settings.nature
        if self.latest is None or time.monotonic() - self.latest_at > self.settings.stale_after:
            return Snapshot(name, nature, False, now, error="no telemetry")
        reading: dict[str, float | None] = {q: None for q in natures.reading(nature, {})}
        reading.update(self.latest)
        return Snapshot(name, nature, True, now, {"mqtt": dict(self.latest)}, reading=reading)

    async def write(self, setpoint: str, value: float) -> None:
        if self.latest is None:
            raise DeviceError("no telemetry yet: rating unknown")
        try:
            writes = natures.point_writes(self.settings.nature, setpoint, value, dict(self.latest))
        except natures.NatureError as exc:
            raise DeviceError(str(exc)) from None
        command: dict[str, Any] = {SETTINGS.get(w.point, w.point): w.value for w in writes}
        if not self.link.publish(f"{self.topic}/set", json.dumps(command), qos=1):
            raise DeviceError("broker unreachable")

    def close(self) -> None:
        self.link.handlers.pop(self.topic, None)
