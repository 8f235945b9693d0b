"""Device physics: PV, battery, genset, load and the PCC meter, stepped by an injected time delta.

Promises: each model turns (its settings, an `Environment`, a time step) into its next state and a flat
`readings()` dict named in the domain's words (`ac_w`, `soc_pct`, `fuel_cost`); settings are changed only
through `check`/`apply`, which say why a value is refused. Power sign: positive = AC power the device
delivers to the MG bus (a load's `ac_w` is therefore its consumption with `net_w` negative).
Assumes dt >= 0 in simulated seconds; large steps are split internally. Never reads a clock, a socket
or a global: the runtime owns time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .watchdog import CommWatchdog

MAX_STEP_S = 30.0
V_NOMINAL = 230.0
HZ_NOMINAL = 50.0


@dataclass(frozen=True)
class Environment:
    irradiance_w_m2: float = 0.0
    ambient_c: float = 20.0
    load_factor: float = 1.0
    voltage_pu: float = 1.0  # at the MG's feeder bus (the testbed may set it from the DSO's power flow)


def substeps(dt: float) -> list[float]:
    if dt <= 0:
        return []
    n = max(1, math.ceil(dt / MAX_STEP_S))
    return [dt / n] * n


def ac_readings(p_w: float, q_var: float, v: float = V_NOMINAL, hz: float = HZ_NOMINAL) -> dict[str, float]:
    """Three-phase balanced AC quantities for a real/reactive power pair."""
    va = math.hypot(p_w, q_var)
    amps = va / (3.0 * v)
    return {
        "ac_w": p_w,
        "ac_var": q_var,
        "ac_va": va,
        "pf": (p_w / va) if va > 1e-6 else 1.0,
        "ac_a": amps * 3.0,
        "ac_a_ph": amps,
        "v_ph": v,
        "v_ll": v * math.sqrt(3.0),
        "hz": hz,
    }


def check_range(name: str, value: float, low: float = 0.0, high: float = 100.0) -> str | None:
    return None if low <= value <= high else f"{name} must be within {low:g}..{high:g}, got {value:g}"


def check_flag(name: str, value: float) -> str | None:
    return None if value in (0, 1) else f"{name} must be 0 or 1, got {value:g}"


# SunSpec model 103 operating states (St).
ST_OFF, ST_SLEEPING, ST_STARTING, ST_MPPT, ST_THROTTLED, ST_SHUTTING_DOWN, ST_FAULT, ST_STANDBY = range(1, 9)


@dataclass
class PvInverter:
    rating_w: float
    dc_rating_w: float | None = None
    efficiency: float = 0.97
    temp_coeff_per_c: float = -0.004
    noct_c: float = 45.0
    connected: int = 1
    limit_enabled: int = 0
    limit_pct: float = 100.0
    limit_revert_s: float = (
        0.0  # 123 WMaxLimPct_RvrtTms: the limit lapses this long after it was set (0 = never)
    )
    limit_age_s: float = 0.0
    w_max: float = 0.0
    energy_wh: float = 0.0
    available_w: float = 0.0
    ac_w: float = 0.0
    cell_c: float = 20.0
    ambient_c: float = 20.0
    v_ph: float = V_NOMINAL
    watchdog: CommWatchdog = field(default_factory=CommWatchdog)  # 64203: export cap on lost communication

    def __post_init__(self) -> None:
        self.dc_rating_w = self.dc_rating_w or self.rating_w * 1.1
        self.w_max = self.w_max or self.rating_w

    def peaks(self) -> dict[str, float]:
        return {"w": self.rating_w * 1.1, "a": self.rating_w / V_NOMINAL, "dc_w": self.dc_rating_w or 0.0}

    def limit_w(self) -> float:
        return self.w_max * (self.limit_pct / 100.0 if self.limit_enabled else 1.0)

    def advance(self, dt: float, env: Environment) -> None:
        self.v_ph = V_NOMINAL * env.voltage_pu
        self.limit_age_s += dt
        if self.limit_enabled and 0 < self.limit_revert_s <= self.limit_age_s:
            self.limit_enabled = 0  # the standard's revert: a master that stopped talking loses its limit
        if self.watchdog.expired(dt):  # the vendor fallback: a master that stopped talking leaves it capped
            pct = 100.0 * self.watchdog.fallback_w / self.w_max if self.w_max > 0 else 0.0
            self.limit_enabled, self.limit_pct, self.limit_age_s = 1, min(100.0, pct), 0.0
        irr = max(0.0, env.irradiance_w_m2)
        self.ambient_c = env.ambient_c
        self.cell_c = env.ambient_c + (self.noct_c - 20.0) / 800.0 * irr
        dc = (self.dc_rating_w or 0.0) * irr / 1000.0 * (1.0 + self.temp_coeff_per_c * (self.cell_c - 25.0))
        self.available_w = max(0.0, min(dc * self.efficiency, self.rating_w))
        self.ac_w = min(self.available_w, self.limit_w()) if self.connected else 0.0
        self.energy_wh += self.ac_w * dt / 3600.0

    @property
    def net_w(self) -> float:
        return self.ac_w

    def state(self) -> int:
        if not self.connected:
            return ST_OFF
        if self.available_w < 1.0:
            return ST_SLEEPING
        return ST_THROTTLED if self.ac_w < self.available_w - 1.0 else ST_MPPT

    def readings(self) -> dict[str, float | int | None]:
        dc_w = self.ac_w / self.efficiency if self.ac_w > 0 else 0.0
        dc_v = 600.0 if self.ac_w > 0 else 0.0
        return {
            **ac_readings(self.ac_w, 0.0, self.v_ph),
            "energy_wh": self.energy_wh,
            "dc_w": dc_w,
            "dc_v": dc_v,
            "dc_a": dc_w / dc_v if dc_v else 0.0,
            "temp_c": self.ambient_c + 10.0 * self.ac_w / self.rating_w,
            "state": self.state(),
            "available_w": self.available_w,
            "rating_w": self.rating_w,
            "rating_var": 0.44 * self.rating_w,
            "rating_var_neg": -0.44 * self.rating_w,
            "rating_a": self.rating_w / (3.0 * V_NOMINAL),
            "connected": self.connected,
            "limit_enabled": self.limit_enabled,
            "limit_pct": self.limit_pct,
            "limit_revert_s": self.limit_revert_s,
            "w_max": self.w_max,
            **self.watchdog.readings(),
        }

    def check(self, setting: str, value: float) -> str | None:
        if setting in ("connected", "limit_enabled"):
            return check_flag(setting, value)
        if setting == "limit_pct":
            return check_range(setting, value)
        if setting == "limit_revert_s":
            return check_range(setting, value, 0.0, 65534.0)
        if setting == "w_max":
            return check_range(setting, value, 0.0, self.rating_w)
        return self.watchdog.check(setting, value, self.rating_w)

    def apply(self, setting: str, value: float) -> None:
        self.watchdog.feed()  # any accepted control write: the master is alive
        if setting.startswith("fb_"):
            self.watchdog.apply(setting, value)
            return
        setattr(self, setting, int(value) if setting in ("connected", "limit_enabled") else float(value))
        if setting in ("limit_pct", "limit_enabled"):
            self.limit_age_s = 0.0

    def reset_settings(self) -> None:
        self.connected, self.limit_enabled, self.limit_pct, self.w_max = 1, 0, 100.0, self.rating_w
        self.limit_revert_s = 0.0
        self.watchdog.reset()


# SunSpec model 124 ChaSt / 802 ChaSt values.
CHA_OFF, CHA_EMPTY, CHA_DISCHARGING, CHA_CHARGING, CHA_FULL, CHA_HOLDING = 1, 2, 3, 4, 5, 6


@dataclass
class Battery:
    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    soc_pct: float = 50.0
    soc_min_pct: float = 10.0
    soc_max_pct: float = 95.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    nominal_v: float = 400.0
    # 124-style control: mode bit0 = charge, bit1 = discharge; rates in % of w_cha_max.
    mode: int = 0
    in_pct: float = 0.0
    out_pct: float = 0.0
    w_cha_max: float = 0.0
    reserve_pct: float = 0.0
    set_op: int = 1  # 802 SetOp: 1 CONNECT, 2 DISCONNECT (the bank's contactor)
    revert_s: float = 0.0  # 124 InOutWRte_RvrtTms: back to hold (0 W) this long after the last rate write
    rate_age_s: float = 0.0
    v_ph: float = V_NOMINAL
    ac_w: float = 0.0
    charged_wh: float = 0.0
    discharged_wh: float = 0.0
    cycles: float = 0.0

    def __post_init__(self) -> None:
        self.w_cha_max = self.w_cha_max or self.max_charge_w

    def peaks(self) -> dict[str, float]:
        peak = max(self.max_charge_w, self.max_discharge_w)
        return {
            "w": peak * 1.1,
            "a": peak / V_NOMINAL,
            "wh": self.capacity_wh,
            "dc_a": peak / self.nominal_v * 1.5,
        }

    def setpoint_w(self) -> float:
        """Requested AC power, + discharge / - charge, from the 124 control points."""
        if self.mode & 2:
            return self.out_pct / 100.0 * self.w_cha_max
        if self.mode & 1:
            return -self.in_pct / 100.0 * self.w_cha_max
        return 0.0

    def advance(self, dt: float, env: Environment) -> None:
        self.v_ph = V_NOMINAL * env.voltage_pu
        self.rate_age_s += dt
        if self.mode and 0 < self.revert_s <= self.rate_age_s:
            self.mode = 0
        for step in substeps(dt) or [0.0]:
            self._step(step)

    def _step(self, dt: float) -> None:
        p = max(-self.max_charge_w, min(self.max_discharge_w, self.setpoint_w())) if self.set_op == 1 else 0.0
        floor = max(self.soc_min_pct, self.reserve_pct)
        stored = self.soc_pct / 100.0 * self.capacity_wh
        if p > 0:
            room_wh = max(0.0, stored - floor / 100.0 * self.capacity_wh)
            p = min(p, room_wh * self.discharge_efficiency * 3600.0 / dt) if dt > 0 else p
            p = p if stored > floor / 100.0 * self.capacity_wh + 1e-9 else 0.0
            stored -= p * dt / 3600.0 / self.discharge_efficiency
            self.discharged_wh += p * dt / 3600.0
        elif p < 0:
            room_wh = max(0.0, self.soc_max_pct / 100.0 * self.capacity_wh - stored)
            p = -min(-p, room_wh / self.charge_efficiency * 3600.0 / dt) if dt > 0 else p
            p = p if stored < self.soc_max_pct / 100.0 * self.capacity_wh - 1e-9 else 0.0
            stored += -p * dt / 3600.0 * self.charge_efficiency
            self.charged_wh += -p * dt / 3600.0
        self.ac_w = p
        self.soc_pct = max(0.0, min(100.0, 100.0 * stored / self.capacity_wh))
        self.cycles = self.discharged_wh / self.capacity_wh

    @property
    def net_w(self) -> float:
        return self.ac_w

    def charge_state(self) -> int:
        if self.ac_w > 1.0:
            return CHA_DISCHARGING
        if self.ac_w < -1.0:
            return CHA_CHARGING
        if self.soc_pct >= self.soc_max_pct - 0.01:
            return CHA_FULL
        if self.soc_pct <= self.soc_min_pct + 0.01:
            return CHA_EMPTY
        return CHA_HOLDING

    def readings(self) -> dict[str, float | int | None]:
        dc_v = self.nominal_v * (0.9 + 0.2 * self.soc_pct / 100.0)
        return {
            **ac_readings(self.ac_w, 0.0, self.v_ph),
            "energy_wh": self.discharged_wh,
            "charged_wh": self.charged_wh,
            "soc_pct": self.soc_pct,
            "soc_min_pct": self.soc_min_pct,
            "soc_max_pct": self.soc_max_pct,
            "available_wh": max(0.0, (self.soc_pct - self.soc_min_pct) / 100.0 * self.capacity_wh),
            "capacity_wh": self.capacity_wh,
            "dc_v": dc_v,
            "dc_a": self.ac_w / dc_v,
            "dc_w": self.ac_w,
            "max_charge_w": self.max_charge_w,
            "max_discharge_w": self.max_discharge_w,
            "cha_st": self.charge_state(),
            "state": ST_MPPT if abs(self.ac_w) > 1.0 else ST_STANDBY,
            "mode": self.mode,
            "in_pct": self.in_pct,
            "out_pct": self.out_pct,
            "w_cha_max": self.w_cha_max,
            "reserve_pct": self.reserve_pct,
            "revert_s": self.revert_s,
            "setpoint_w": self.setpoint_w(),
            "cycles": int(self.cycles),
            "temp_c": 25.0,
            "rating_w": max(self.max_charge_w, self.max_discharge_w),
            "rating_var": 0.44 * max(self.max_charge_w, self.max_discharge_w),
            "rating_var_neg": -0.44 * max(self.max_charge_w, self.max_discharge_w),
            "rating_a": max(self.max_charge_w, self.max_discharge_w) / (3.0 * V_NOMINAL),
            "capacity_ah": self.capacity_wh / self.nominal_v,
            "available_ah": max(0.0, (self.soc_pct - self.soc_min_pct) / 100.0 * self.capacity_wh)
            / self.nominal_v,
            "battery_state": 3 if self.set_op == 1 else 1,  # 802 State CONNECTED / DISCONNECTED
            "set_op": self.set_op,
        }

    def check(self, setting: str, value: float) -> str | None:
        if setting == "mode":
            return None if value in (0, 1, 2, 3) else f"mode bits must be within 0..3, got {value:g}"
        if setting in ("in_pct", "out_pct"):
            return check_range(setting, value, -100.0, 100.0)
        if setting == "reserve_pct":
            return check_range(setting, value)
        if setting == "revert_s":
            return check_range(setting, value, 0.0, 65534.0)
        if setting == "set_op":
            return None if value in (1, 2) else f"set_op must be 1 (connect) or 2 (disconnect), got {value:g}"
        if setting == "w_cha_max":
            return check_range(setting, value, 0.0, self.max_charge_w)
        return f"unknown setting {setting}"

    def apply(self, setting: str, value: float) -> None:
        setattr(self, setting, int(value) if setting in ("mode", "set_op") else float(value))
        if setting in ("mode", "in_pct", "out_pct", "revert_s"):
            self.rate_age_s = 0.0  # a rate write, or the master rewriting the timer, feeds the watchdog

    def reset_settings(self) -> None:
        self.mode, self.in_pct, self.out_pct, self.reserve_pct, self.revert_s = 0, 0.0, 0.0, 0.0, 0.0
        self.set_op = 1
        self.w_cha_max = self.max_charge_w
