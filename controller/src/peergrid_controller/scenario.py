"""Load a testbed scenario YAML (firmware-sim's format) into the scheduler's `Scenario`.

Promises: reads the keys the market needs — `profiles` (irradiance W/m², load per unit, as [[hour, value], ...]
piecewise-linear over the day), `microgrids[].name/profile/devices[].kind/params` for pv, battery, genset and load
— and validates them strictly (types, signs, references), raising `ScenarioError` with one line naming the key.
Keys it does not use (relays, serial lines, broker, meters, protocols...) are ignored, so the same file drives
firmware-sim and the market; but `market:` is the controller's own section, so a key in it (or in its `rules` and
`mg_rules`) that the controller does not know is an error naming its path: a misspelt `cap_prise` ran without its
owner's cap and paid 14 % more (R25 F5); so is a device param that neither the controller nor firmware-sim's
physics takes, and a key of the file, a profile, a microgrid or a device, or a device kind, that firmware-sim does
not take either (`markets:` ran without its owners' rules, `irradience:` without sun, `kind: batery` without the
battery: U5). A number in `market:` or in a device's params is a number: YAML `yes` or a quoted "0.1" is refused
naming the key, as firmware-sim refuses it (`floor_price: yes` was a floor of 1.0). `interval_minutes` divides
the day (7 made 206 intervals of a 1442-minute day). The file is read strictly (`read_yaml_file`: a key given twice, text that is not UTF-8). An
optional top-level `market:` section sets the DSO tariff, interval length and each MG's contract rules; without
it, defaults below apply. It may also set the owners' risk allowance (currency per MG per day, the intraday strict
guard's, SimulationConfig.risk_allowance): `risk_allowance` every MG's, `mg_risk_allowance: {MG: X}` an MG's own.
It is not a contract rule (the chain never sees it, the MGMC's own guard keeps it), so it sits beside `rules`, not
in them; `load_scenario_file` returns it beside the Scenario. The genset fuel curve is HOMER's linear one (0.08145
l/h per rated kW + 0.246 l/kWh) at the device's fuel price.
Never touches devices or clocks.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from peergrid_controller.model import (
    Battery,
    ContractRules,
    CostSegment,
    Genset,
    Load,
    Microgrid,
    ModelError,
    PvArray,
    Scenario,
    Tariff,
    validate_microgrid,
)
from peergrid_ledger.settings import YamlTextError, read_yaml_file

FUEL_NO_LOAD_L_PER_H_PER_KW = 0.08145
FUEL_L_PER_KWH = 0.246


class ScenarioError(ValueError):
    """A scenario file the market cannot use; the message names the file and the key."""


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)


class _Own(BaseModel):
    """A section only the controller reads: an unknown key is a typo, never firmware-sim's."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class _Numbers(_Tolerant):
    """A device's params: numbers only (YAML `yes` or a quoted "900" is refused, as firmware-sim refuses it)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


Curve = list[tuple[float, float]]


class _Profile(_Tolerant):
    irradiance: Curve = Field(default_factory=lambda: [(0.0, 0.0), (24.0, 0.0)])
    load: Curve = Field(default_factory=lambda: [(0.0, 1.0), (24.0, 1.0)])

    @model_validator(mode="after")
    def _hours(self) -> _Profile:
        for label, curve in (("irradiance", self.irradiance), ("load", self.load)):
            hours = [h for h, _ in curve]
            if not curve or hours != sorted(hours) or hours[0] > 0 or hours[-1] < 24:
                raise ValueError(f"{label} must list [hour, value] pairs in order covering 0..24 h")
            if any(v < 0 or not math.isfinite(v) for _, v in curve):
                raise ValueError(f"{label} values must be finite and >= 0")
        return self


class _PvParams(_Numbers):
    rating_w: float = Field(gt=0)


class _BatteryParams(_Numbers):
    capacity_wh: float = Field(gt=0)
    max_charge_w: float = Field(gt=0)
    max_discharge_w: float = Field(gt=0)
    soc_pct: float = Field(default=50.0, ge=0, le=100)
    efficiency: float = Field(default=0.95, gt=0, le=1)
    soc_min_pct: float = Field(default=10.0, ge=0, le=100)
    soc_max_pct: float = Field(default=95.0, ge=0, le=100)


class _GensetParams(_Numbers):
    rating_w: float = Field(gt=0)
    min_load_pct: float = Field(default=30.0, ge=0, le=100)
    ramp_w_per_s: float | None = Field(default=None, gt=0)
    fuel_price_per_l: float = Field(default=1.5, ge=0)
    start_cost: float = Field(default=0.0, ge=0)
    min_up_s: float = Field(default=3600.0, ge=0)
    min_down_s: float = Field(default=3600.0, ge=0)


class _LoadParams(_Numbers):
    critical_w: float = Field(default=0.0, ge=0)
    sheddable_w: float = Field(default=0.0, ge=0)
    voll_per_kwh: float = Field(default=1.0, ge=0)


# The params firmware-sim's physics takes for each kind the controller reads, beyond the controller's own
# (peergrid_sim.scenario.device_params: firmware-sim refuses any other; tests/sim/test_r25_device_params.py keeps
# the two equal). The controller ignores them; a key that is neither is a typo: `sheddable:` for `sheddable_w`
# dropped the load's flexibility from the schedule without a word (R25 F5).
_LAB_PARAM_NAMES = {
    "pv": "ac_w ambient_c available_w cell_c connected dc_rating_w efficiency energy_wh limit_age_s limit_enabled"
    " limit_pct limit_revert_s noct_c rating_w temp_coeff_per_c v_ph w_max",
    "battery": "ac_w capacity_wh charge_efficiency charged_wh cycles discharge_efficiency discharged_wh in_pct"
    " max_charge_w max_discharge_w mode nominal_v out_pct rate_age_s reserve_pct revert_s set_op soc_max_pct"
    " soc_min_pct soc_pct v_ph w_cha_max",
    "genset": "ac_w energy_wh fuel_cost fuel_l fuel_l_per_h_idle_per_kw fuel_l_per_kwh fuel_price_per_l min_load_pct"
    " phase phase_elapsed_s ramp_w_per_s rating_w run run_hours start_delay_s stop_delay_s v_ph w_set",
    "load": "critical_now_w critical_w energy_wh shed shed_pct sheddable_now_w sheddable_w v_ph",
}
LAB_PARAMS = {kind: frozenset(names.split()) for kind, names in _LAB_PARAM_NAMES.items()}

# The keys firmware-sim's scenario takes at each level the controller reads tolerantly, and its device kinds
# (peergrid_sim.scenario: Scenario, Profile, Microgrid, Device, Kind; tests/sim/test_r25_device_params.py keeps
# them equal). A key that is neither the controller's nor one of these is a typo: `markets:` dropped every
# owner's rule and the tariff, `irradience:` the sun, `kind: batery` the battery, each without a word (U5).
_LAB_KEY_NAMES = {
    "scenario": "broker feeder host market microgrids modbus_tls name profiles relays serial_lines speed start"
    " start_wall",
    "profile": "clouds irradiance load seed temperature",
    "microgrid": "bus devices name profile",
    "device": "kind line name params period_s port protocol tls unit_id",
}
LAB_KEYS = {level: frozenset(names.split()) for level, names in _LAB_KEY_NAMES.items()}
LAB_KINDS = frozenset({"pv", "battery", "genset", "load", "meter"})


class _Device(_Tolerant):
    name: str
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)


class _Mg(_Tolerant):
    name: str = Field(min_length=1)
    profile: str
    devices: list[_Device] = Field(default_factory=list)


class _Rules(_Own):
    # strict: `floor_price: yes` was a floor of 1.0 and a quoted "0.1" a number (U5); an owner's rule is a number
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    floor_price: float = Field(default=0.0, ge=0)
    cap_price: float = Field(default=math.inf, ge=0)
    max_quantity_kwh: float = Field(default=math.inf, ge=0)
    clean_only: bool = False
    clean_premium: float = Field(default=0.0, ge=0)


class _Market(_Own):
    interval_minutes: int = Field(default=15, gt=0, le=60, strict=True)
    retail: Curve = Field(
        default_factory=lambda: [(0.0, 0.14), (7.0, 0.22), (17.0, 0.30), (21.0, 0.14), (24.0, 0.14)]
    )
    feed_in: float = Field(default=0.05, ge=0, strict=True)
    rules: _Rules = Field(default_factory=_Rules)  # every MG's unless it has its own
    mg_rules: dict[str, _Rules] = Field(default_factory=dict)
    # an amount of money, strictly: YAML `yes` (a bool) or a quoted "3" is refused naming the field, not read as 1.0 / 3.0
    risk_allowance: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, strict=True
    )  # every MG's unless its own
    mg_risk_allowance: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _whole_day(self) -> _Market:
        if (24 * 60) % self.interval_minutes:
            raise ValueError(
                f"interval_minutes must divide the day's 1440 minutes, got {self.interval_minutes}"
            )
        return self


class _File(_Tolerant):
    name: str = "scenario"
    profiles: dict[str, _Profile]
    microgrids: list[_Mg] = Field(min_length=1)
    market: _Market = Field(default_factory=_Market)


def interpolate(curve: Curve, hour: float) -> float:
    """Piecewise-linear value of [[hour, value], ...] at `hour`."""
    for (h0, v0), (h1, v1) in itertools.pairwise(curve):
        if h0 <= hour <= h1:
            return v0 if h1 == h0 else v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
    return curve[-1][1]


def step(curve: Curve, hour: float) -> float:
    """Tariff step value: the last breakpoint at or before `hour`."""
    value = curve[0][1]
    for h, v in curve:
        if h <= hour:
            value = v
    return value


@dataclass(frozen=True)
class ScenarioFile:
    """A scenario file's day and the owners' risk allowance beside it (0 and {} where the file sets none)."""

    scenario: Scenario
    risk_allowance: float
    mg_risk_allowance: dict[str, float]


def load_scenario(path: str | Path) -> Scenario:
    return load_scenario_file(path).scenario


def load_scenario_file(path: str | Path) -> ScenarioFile:
    path = Path(path)
    try:
        raw = read_yaml_file(path)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc.strerror}") from None
    except YamlTextError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    try:
        return build_scenario_file(raw)
    except ValidationError as exc:
        raise ScenarioError(f"{path}: {_describe(exc)}") from None
    except (ModelError, ScenarioError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def _describe(exc: ValidationError) -> str:
    """The first error, `'key.path': reason`; an unknown key in the controller's own sections names the keys
    that section takes (and the nearest, for a typo)."""
    first = exc.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    where = ".".join(loc) or "(top level)"
    if first["type"] != "extra_forbidden":
        return f"'{where}': {first['msg']}"
    known = sorted(_section_of(loc).model_fields)
    return f"unknown key '{where}' (it takes {', '.join(known)}){_did_you_mean(loc[-1], known)}"


def _section_of(loc: tuple[str, ...]) -> type[BaseModel]:
    """The model of the section that holds the key at `loc` (market, market.rules or market.mg_rules.<MG>)."""
    if loc[:2] == ("market", "rules") or loc[:2] == ("market", "mg_rules"):
        return _Rules
    return _Market


def build_scenario(raw: dict[str, Any]) -> Scenario:
    return build_scenario_file(raw).scenario


def build_scenario_file(raw: dict[str, Any]) -> ScenarioFile:
    _check_lab_keys(raw)
    spec = _File.model_validate(raw)
    market = spec.market
    dt = market.interval_minutes / 60.0
    n = round(24 / dt)
    hours = [(k + 0.5) * dt for k in range(n)]
    tariff = Tariff(tuple(step(market.retail, h) for h in hours), tuple(market.feed_in for _ in hours))
    names = [mg.name for mg in spec.microgrids]
    if len(set(names)) != len(names):
        raise ScenarioError("microgrid names must be unique")
    for key, named in (("mg_rules", market.mg_rules), ("mg_risk_allowance", market.mg_risk_allowance)):
        unknown = sorted(set(named) - set(names))
        if unknown:
            raise ScenarioError(f"market.{key} names unknown microgrid '{unknown[0]}'")
    microgrids = []
    for index, mg in enumerate(spec.microgrids):
        if mg.profile not in spec.profiles:
            raise ScenarioError(f"microgrids.{index}.profile: no profile named '{mg.profile}'")
        profile = spec.profiles[mg.profile]
        sun = [interpolate(profile.irradiance, h) / 1000.0 for h in hours]
        shape = [interpolate(profile.load, h) for h in hours]
        pv, batteries, gensets, loads = [], [], [], []
        for d_index, device in enumerate(mg.devices):
            where = f"microgrids.{index}.devices.{d_index}.params"
            _check_param_keys(where, device)
            try:
                if device.kind == "pv":
                    p = _PvParams.model_validate(device.params)
                    pv.append(PvArray(device.name, tuple(round(p.rating_w / 1000 * s, 4) for s in sun)))
                elif device.kind == "battery":
                    b = _BatteryParams.model_validate(device.params)
                    eff = math.sqrt(b.efficiency) if b.efficiency < 1 else 1.0
                    soc = min(max(b.soc_pct, b.soc_min_pct), b.soc_max_pct) / 100
                    batteries.append(
                        Battery(
                            device.name,
                            b.capacity_wh / 1000,
                            b.max_charge_w / 1000,
                            b.max_discharge_w / 1000,
                            eff,
                            eff,
                            b.soc_min_pct / 100,
                            b.soc_max_pct / 100,
                            soc,
                        )
                    )
                elif device.kind == "genset":
                    gensets.append(_genset(device.name, _GensetParams.model_validate(device.params), dt))
                elif device.kind == "load":
                    ld = _LoadParams.model_validate(device.params)
                    loads.append(
                        Load(
                            device.name,
                            tuple(round(ld.critical_w / 1000 * s, 4) for s in shape),
                            tuple(round(ld.sheddable_w / 1000 * s, 4) for s in shape),
                            ld.voll_per_kwh,
                        )
                    )
            except ValidationError as exc:
                first = exc.errors()[0]
                key = ".".join(str(p) for p in first["loc"])
                raise ScenarioError(f"'{where}.{key}': {first['msg']}") from None
        r = market.mg_rules.get(mg.name, market.rules)
        rules = ContractRules(r.floor_price, r.cap_price, r.max_quantity_kwh, r.clean_only, r.clean_premium)
        microgrid = Microgrid(
            mg.name, tariff, tuple(pv), tuple(batteries), tuple(gensets), tuple(loads), rules
        )
        validate_microgrid(microgrid)
        microgrids.append(microgrid)
    scenario = Scenario(spec.name, dt, tuple(microgrids))
    return ScenarioFile(scenario, market.risk_allowance, dict(market.mg_risk_allowance))


_PARAM_MODELS: dict[str, type[BaseModel]] = {
    "pv": _PvParams,
    "battery": _BatteryParams,
    "genset": _GensetParams,
    "load": _LoadParams,
}


def _did_you_mean(word: object, known: Collection[str]) -> str:
    """The hint for a typo: the nearest of `known` ("" when none is near)."""
    near = difflib.get_close_matches(str(word), sorted(known), n=1)
    return f"; did you mean '{near[0]}'?" if near else ""


def _unknown(where: str, key: object, what: str, known: Collection[str]) -> ScenarioError:
    return ScenarioError(
        f"unknown key '{where}{key}' ({what} takes {', '.join(sorted(known))}){_did_you_mean(key, known)}"
    )


def _check_keys(where: str, section: object, what: str, known: Collection[str]) -> None:
    """Each key of `section` is one of `known` (a section that is not a mapping is left to the models)."""
    for key in section if isinstance(section, dict) else ():
        if key not in known:
            raise _unknown(where, key, what, known)


def _check_lab_keys(raw: dict[str, Any]) -> None:
    """A key of the file, a profile, a microgrid or a device, or a device kind, that neither the controller nor
    firmware-sim takes: a typo (the sections' shapes are left to the models, which name what is wrong)."""
    _check_keys("", raw, "a scenario", LAB_KEYS["scenario"])
    profiles = raw.get("profiles")
    for name, profile in profiles.items() if isinstance(profiles, dict) else ():
        _check_keys(f"profiles.{name}.", profile, "a profile", LAB_KEYS["profile"])
    microgrids = raw.get("microgrids")
    for index, mg in enumerate(microgrids if isinstance(microgrids, list) else ()):
        _check_keys(f"microgrids.{index}.", mg, "a microgrid", LAB_KEYS["microgrid"])
        devices = mg.get("devices") if isinstance(mg, dict) else None
        for d_index, device in enumerate(devices if isinstance(devices, list) else ()):
            where = f"microgrids.{index}.devices.{d_index}."
            _check_keys(where, device, "a device", LAB_KEYS["device"])
            kind = device.get("kind") if isinstance(device, dict) else None
            if kind is not None and kind not in LAB_KINDS:
                raise ScenarioError(
                    f"'{where}kind': no device kind '{kind}' (one of {', '.join(sorted(LAB_KINDS))})"
                    + _did_you_mean(kind, LAB_KINDS)
                )


def _check_param_keys(where: str, device: _Device) -> None:
    """A param of a kind the controller reads that neither it nor firmware-sim's physics takes: a typo."""
    model = _PARAM_MODELS.get(device.kind)
    if model is None:
        return
    known = sorted(set(model.model_fields) | LAB_PARAMS[device.kind])
    for key in sorted(set(device.params) - set(known)):
        raise _unknown(f"{where}.", key, f"a {device.kind}", known)


def _genset(name: str, p: _GensetParams, dt: float) -> Genset:
    rated = p.rating_w / 1000
    min_kw = rated * p.min_load_pct / 100
    per_kwh = FUEL_L_PER_KWH * p.fuel_price_per_l
    no_load_per_h = FUEL_NO_LOAD_L_PER_H_PER_KW * rated * p.fuel_price_per_l
    ramp = p.ramp_w_per_s * dt * 3600 / 1000 if p.ramp_w_per_s else math.inf
    return Genset(
        name,
        max_kw=rated,
        min_kw=min_kw,
        segments=(CostSegment(rated - min_kw, per_kwh),),
        min_kw_cost_per_h=no_load_per_h + per_kwh * min_kw,
        startup_cost=p.start_cost,
        ramp_kw_per_interval=ramp,
        min_up_intervals=max(1, math.ceil(p.min_up_s / (dt * 3600))),
        min_down_intervals=max(1, math.ceil(p.min_down_s / (dt * 3600))),
    )
