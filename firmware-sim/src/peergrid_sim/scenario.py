"""The scenario file: which microgrids, devices, profiles, relays and serial lines firmware-sim emulates.

Promises: `load_scenario(path)` returns a validated, frozen `Scenario` or raises `ConfigError` with one
line naming the offending key (unknown keys, bad kinds, duplicate names, unknown profile references and
clashing unit ids are all caught here, before any socket is opened), and so are impossible device params
(`device_params_problem`: a key the kind's physics does not take, a rating or capacity not above 0, a
percentage outside 0..100, a negative delay: one line naming the device and the param, R25 F11). Profiles
are daily, piecewise-linear in the hour of day (UTC). Never opens ports or starts anything.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from peergrid_ledger.settings import ConfigError, StrictSettings, describe_validation_error, load_settings

from . import physics, physics_site

Protocol = Literal["modbus-tcp", "modbus-rtu", "mqtt"]
Kind = Literal["pv", "battery", "genset", "load", "meter"]


class Profile(StrictSettings):
    """Hour-of-day curves: [[hour, value], ...], linear between points, repeating every day."""

    irradiance: list[tuple[float, float]] = [(0, 0), (6, 0), (12, 900), (18, 0), (24, 0)]
    temperature: list[tuple[float, float]] = [(0, 15), (14, 27), (24, 15)]
    load: list[tuple[float, float]] = [(0, 0.5), (7, 0.8), (12, 0.7), (19, 1.0), (24, 0.5)]
    clouds: float = Field(0.0, ge=0.0, le=1.0)  # how deep passing clouds cut irradiance (0 = clear sky)
    seed: int = 0  # clouds are a deterministic function of (seed, time): reruns see the same weather

    @model_validator(mode="after")
    def _hours_ascending(self) -> Profile:
        for name in ("irradiance", "temperature", "load"):
            hours = [h for h, _ in getattr(self, name)]
            if not hours or hours != sorted(hours) or hours[0] < 0 or hours[-1] > 24:
                raise ValueError(f"{name}: hours must ascend within 0..24")
        return self


def cloud_cover(seed: int, t: float) -> float:
    """Pure and deterministic: a smooth 0..1 cloud cover from a few seeded sines (periods 7-90 min)."""
    rng = random.Random(seed)
    total = 0.0
    for _ in range(4):
        period = rng.uniform(420.0, 5400.0)
        total += math.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
    return max(0.0, min(1.0, 0.5 + total / 4.0))


def at_hour(curve: list[tuple[float, float]], hour: float) -> float:
    hours = [h for h, _ in curve]
    i = bisect.bisect_right(hours, hour)
    if i == 0:
        return curve[0][1]
    if i == len(curve):
        return curve[-1][1]
    (h0, v0), (h1, v1) = curve[i - 1], curve[i]
    return v0 if h1 == h0 else v0 + (v1 - v0) * (hour - h0) / (h1 - h0)


# Each kind's params are its physics model's fields (`SunSpecDevice.create` passes them on), with the range those
# that say what the device is may take. A field not listed is state a scenario may preset (a counter, a setting
# such as `mode`): any finite number.
PHYSICS_MODELS: dict[str, type] = {
    "pv": physics.PvInverter,
    "battery": physics.Battery,
    "genset": physics_site.Genset,
    "load": physics_site.Load,
    "meter": physics_site.PccMeter,
}


@dataclasses.dataclass(frozen=True)
class _Range:
    """What a param may be: `low` (or above it, when `open_low`) up to `high`; `whole` for a 0/1 flag."""

    low: float
    high: float
    said: str  # as the error puts it: "must be <said>"
    open_low: bool = False
    whole: bool = False

    def admits(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        return above and value <= self.high and (not self.whole or value == int(value))


_ABOVE_0 = _Range(0.0, math.inf, "above 0", open_low=True)
_AT_LEAST_0 = _Range(0.0, math.inf, "at least 0")
_PERCENT = _Range(0.0, 100.0, "a percentage, 0..100")
_SHARE = _Range(0.0, 1.0, "above 0 and at most 1", open_low=True)
_FLAG = _Range(0.0, 1.0, "0 or 1", whole=True)
_RANGES: dict[str, dict[str, _Range]] = {
    "pv": {
        "rating_w": _ABOVE_0,
        "dc_rating_w": _ABOVE_0,
        "efficiency": _SHARE,
        "w_max": _AT_LEAST_0,  # 0: the rating
        "limit_pct": _PERCENT,
        "limit_revert_s": _AT_LEAST_0,
        "connected": _FLAG,
        "limit_enabled": _FLAG,
        "v_ph": _ABOVE_0,
    },
    "battery": {
        "capacity_wh": _ABOVE_0,
        "max_charge_w": _ABOVE_0,
        "max_discharge_w": _ABOVE_0,
        "soc_pct": _PERCENT,
        "soc_min_pct": _PERCENT,
        "soc_max_pct": _PERCENT,
        "reserve_pct": _PERCENT,
        "in_pct": _PERCENT,
        "out_pct": _PERCENT,
        "charge_efficiency": _SHARE,
        "discharge_efficiency": _SHARE,
        "nominal_v": _ABOVE_0,
        "w_cha_max": _AT_LEAST_0,  # 0: max_charge_w
        "revert_s": _AT_LEAST_0,
        "v_ph": _ABOVE_0,
    },
    "genset": {
        "rating_w": _ABOVE_0,
        "min_load_pct": _PERCENT,
        "ramp_w_per_s": _AT_LEAST_0,  # 0: a tenth of the rating per second
        "start_delay_s": _AT_LEAST_0,
        "stop_delay_s": _AT_LEAST_0,
        "fuel_l_per_h_idle_per_kw": _AT_LEAST_0,
        "fuel_l_per_kwh": _AT_LEAST_0,
        "fuel_price_per_l": _AT_LEAST_0,
        "w_set": _AT_LEAST_0,
        "run": _FLAG,
        "v_ph": _ABOVE_0,
    },
    "load": {
        "critical_w": _AT_LEAST_0,
        "sheddable_w": _AT_LEAST_0,
        "shed_pct": _PERCENT,
        "shed": _FLAG,
        "v_ph": _ABOVE_0,
    },
    "meter": {"rating_w": _ABOVE_0, "v_ph": _ABOVE_0},
}
_NOT_PARAMS = {"watchdog"}  # a model's part, not a number
_OWN_PARAMS = {"meter": {"key_seed"}}  # read by the device, not its physics (`_check_meter_key`)


def device_params(kind: str) -> list[str]:
    """The params a device of `kind` takes: its physics model's fields (and its own, such as a meter's key_seed)."""
    fields = [
        f.name for f in dataclasses.fields(PHYSICS_MODELS[kind]) if f.init and f.name not in _NOT_PARAMS
    ]
    return sorted({*fields, *_OWN_PARAMS.get(kind, ())})


def device_params_problem(kind: str, params: Mapping[str, float]) -> str | None:
    """What is impossible about a `kind` device's `params` (one line naming the param), or None. A missing
    required param is left to the physics model, which names it."""
    known = device_params(kind)
    for key in sorted(params):
        if key not in known:
            return f"params.{key}: no such param (it takes {', '.join(known)})"
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"params.{key} must be a finite number, got {value!r}"
        rule = _RANGES[kind].get(key)
        if rule is not None and not rule.admits(value):
            return f"params.{key} must be {rule.said}, got {value:g}"
    if kind == "battery":
        low, high = params.get("soc_min_pct", 10.0), params.get("soc_max_pct", 95.0)
        if low > high:
            return f"params.soc_min_pct ({low:g}) is above params.soc_max_pct ({high:g})"
    return None


class Device(StrictSettings):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Kind
    protocol: Protocol = "modbus-tcp"
    port: int = Field(0, ge=0, le=65535)  # modbus-tcp: 0 picks a free port
    unit_id: int = Field(1, ge=1, le=247)
    line: str | None = None  # modbus-rtu: the serial line's name
    period_s: float = Field(1.0, gt=0)  # mqtt: telemetry period in real seconds
    params: dict[str, float] = {}
    tls: bool = False  # modbus-tcp only: Modbus/TCP Security with the scenario's `modbus_tls`


class Microgrid(StrictSettings):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    bus: int = Field(ge=1)
    profile: str = "default"
    devices: list[Device]


class Relay(StrictSettings):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    branch: int = Field(ge=1)  # published 1-based branch number (pandapower line = branch - 1)
    from_bus: int | None = None
    to_bus: int | None = None
    tie: bool = False
    closed: bool = True
    interlock: bool = False  # the external interlock input at start
    locked_out: bool = False
    operate_delay_s: float = Field(0.1, ge=0)  # simulated seconds
    protocol: Literal["modbus-tcp", "modbus-rtu"] = "modbus-tcp"
    port: int = Field(0, ge=0, le=65535)
    unit_id: int = Field(1, ge=1, le=247)
    line: str | None = None
    tls: bool = False


class SerialLine(StrictSettings):
    name: str
    device: str = "pty"  # "pty" makes a pseudo-terminal pair; else a path such as /dev/ttyUSB0
    baudrate: int = 19200


class Broker(StrictSettings):
    host: str = "127.0.0.1"
    port: int = 1883
    # TLS with a client certificate (the pilot's brokers require one; its CN is the MQTT username)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _tls_complete(self) -> Broker:
        given = [f is not None for f in (self.ca_file, self.cert_file, self.key_file)]
        if any(given) and not all(given):
            raise ValueError("broker TLS needs ca_file, cert_file and key_file together")
        return self


class ModbusTls(StrictSettings):
    """Modbus/TCP Security for devices marked `tls: true` (port 802 by convention; 0 picks a free one).

    Clients must present a certificate from `ca_file`. Rights come from the certificate's Modbus Role
    (`roles`: role -> read | write) or, for a certificate without a role, from its CN (`clients`).
    """

    ca_file: Path
    cert_file: Path
    key_file: Path
    roles: dict[str, Literal["read", "write"]] = {"operator": "write", "viewer": "read"}
    clients: dict[str, Literal["read", "write"]] = {}


class Scenario(StrictSettings):
    name: str
    feeder: str = "ieee33"
    start: dt.datetime = dt.datetime(2026, 6, 21, tzinfo=dt.UTC)
    speed: float = Field(1.0, ge=0, le=100_000)
    # wall time (epoch s) at which the clock reads `start` (the lab's t0 lives on the wall clock); None: the clock
    # reads `start` when firmware-sim starts (`clock.start_at`)
    start_wall: float | None = Field(None, gt=0)
    host: str = "127.0.0.1"
    broker: Broker | None = None
    modbus_tls: ModbusTls | None = None
    profiles: dict[str, Profile] = {"default": Profile()}
    serial_lines: list[SerialLine] = []
    microgrids: list[Microgrid] = []
    relays: list[Relay] = []
    # the market's own section (tariff, interval length, the owners' contract rules): the controller's scenario
    # reader validates it (`peergrid_controller.scenario`) and the lab's MGMC genesis takes the rules from it;
    # the devices never read it. Refused here, the one file could not set an owner's rules in the lab.
    market: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        lines = {line.name for line in self.serial_lines}
        units: set[tuple[str, int]] = set()
        mg_names: set[str] = set()
        for mg in self.microgrids:
            if mg.name in mg_names:
                raise ValueError(f"microgrid {mg.name} is named twice")
            mg_names.add(mg.name)
            if mg.profile not in self.profiles:
                raise ValueError(f"microgrid {mg.name}: unknown profile {mg.profile!r}")
            names = [d.name for d in mg.devices]
            if len(set(names)) != len(names):
                raise ValueError(f"microgrid {mg.name}: device names must be unique")
            if sum(d.kind == "meter" for d in mg.devices) > 1:
                raise ValueError(f"microgrid {mg.name}: at most one PCC meter")
            for device in mg.devices:
                _check_meter_key(f"{mg.name}.{device.name}", device)
                problem = device_params_problem(device.kind, device.params)
                if problem is not None:
                    raise ValueError(f"{mg.name}.{device.name}: bad params for a {device.kind}: {problem}")
        wired: list[tuple[str, Device | Relay]] = [
            (f"{mg.name}.{d.name}", d) for mg in self.microgrids for d in mg.devices
        ]
        wired += [(r.name, r) for r in self.relays]
        tls_ports: dict[int, bool] = {}
        for label, d in wired:
            if d.tls and (d.protocol != "modbus-tcp" or self.modbus_tls is None):
                raise ValueError(f"{label}: tls needs protocol modbus-tcp and a scenario 'modbus_tls'")
            if d.protocol == "modbus-tcp" and d.port and tls_ports.setdefault(d.port, d.tls) != d.tls:
                raise ValueError(
                    f"{label}: port {d.port} cannot serve both Modbus TCP and Modbus/TCP Security"
                )
            if d.protocol == "mqtt":
                if self.broker is None:
                    raise ValueError(f"{label}: an mqtt device needs a 'broker'")
                continue
            if d.protocol == "modbus-rtu":
                if d.line not in lines:
                    raise ValueError(f"{label}: unknown serial line {d.line!r}")
                where = f"line {d.line}"
            else:
                if d.port == 0:
                    continue
                where = f"port {d.port}"
            if (where, d.unit_id) in units:
                raise ValueError(f"{label}: unit id {d.unit_id} already used on {where}")
            units.add((where, d.unit_id))
        if len({r.name for r in self.relays}) != len(self.relays):
            raise ValueError("relay names must be unique")
        return self

    def start_epoch(self) -> float:
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=dt.UTC)
        return start.timestamp()


def _check_meter_key(label: str, device: Device) -> None:
    """`key_seed` (a PCC meter that signs its readings, `meter_signer`): a meter's only, a whole number >= 0
    (the lab derives the meter's key from it, and the DSO's copy of the public key: `meter_signing`)."""
    seed = device.params.get("key_seed")
    if seed is None:
        return
    if device.kind != "meter":
        raise ValueError(f"{label}: key_seed is a PCC meter's (it signs its readings), not a {device.kind}'s")
    if seed < 0 or seed != int(seed) or seed >= 2**53:
        raise ValueError(f"{label}: key_seed must be a whole number in 0..2**53, got {seed}")


def load_scenario(path: str | Path) -> Scenario:
    return load_settings(path, Scenario)


def with_tls_relays(scenario: Scenario, ca_file: Path, cert_file: Path, key_file: Path) -> Scenario:
    """Every Modbus TCP relay behind Modbus/TCP Security with these files (roles kept from the scenario)."""
    tls = (
        scenario.modbus_tls or ModbusTls(ca_file=ca_file, cert_file=cert_file, key_file=key_file)
    ).model_copy(update={"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file})
    relays = [r.model_copy(update={"tls": r.protocol == "modbus-tcp"}) for r in scenario.relays]
    try:  # validated again: a fixed port shared with a plain device is refused
        return Scenario.model_validate({**dict(scenario), "modbus_tls": tls, "relays": relays})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


__all__ = ["ConfigError", "Scenario", "at_hour", "load_scenario", "with_tls_relays"]
