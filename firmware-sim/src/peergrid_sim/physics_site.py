"""Site physics: genset, critical and sheddable load, and the PCC meter that sums a microgrid.

Promises, assumptions and the power sign are those of `physics.py` (positive = delivered to the MG bus);
the PCC meter reports import into the MG as positive, the SunSpec meter convention.
Pure: time arrives as `dt`; never reads a clock or a socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .physics import (
    ST_MPPT,
    ST_OFF,
    ST_SHUTTING_DOWN,
    ST_STARTING,
    V_NOMINAL,
    Environment,
    ac_readings,
    check_flag,
    check_range,
    substeps,
)
from .watchdog import CommWatchdog

GEN_STOPPED, GEN_STARTING, GEN_RUNNING, GEN_STOPPING = 0, 1, 2, 3


@dataclass
class Genset:
    rating_w: float
    min_load_pct: float = 30.0
    ramp_w_per_s: float = 0.0
    start_delay_s: float = 30.0
    stop_delay_s: float = 60.0  # unloaded cool-down after the ramp to 0 W
    fuel_l_per_h_idle_per_kw: float = 0.08  # Willans line: F = a*rating + b*P
    fuel_l_per_kwh: float = 0.25
    fuel_price_per_l: float = 1.5
    run: int = 0
    w_set: float = 0.0
    phase: int = GEN_STOPPED
    phase_elapsed_s: float = 0.0
    ac_w: float = 0.0
    energy_wh: float = 0.0
    fuel_l: float = 0.0
    fuel_cost: float = 0.0
    run_hours: float = 0.0
    v_ph: float = V_NOMINAL
    watchdog: CommWatchdog = field(default_factory=CommWatchdog)  # 64203: stop (or FbW) on lost communication

    def __post_init__(self) -> None:
        self.ramp_w_per_s = self.ramp_w_per_s or self.rating_w / 10.0

    def peaks(self) -> dict[str, float]:
        return {"w": self.rating_w * 1.1, "a": self.rating_w / V_NOMINAL}

    def target_w(self) -> float:
        return max(self.min_load_pct / 100.0 * self.rating_w, min(self.rating_w, self.w_set))

    def advance(self, dt: float, env: Environment) -> None:
        self.v_ph = V_NOMINAL * env.voltage_pu
        if self.watchdog.expired(dt):  # nobody in charge: the fallback output, 0 = a normal (cooled) stop
            self.w_set = self.watchdog.fallback_w
            self.run = 1 if self.w_set > 0 else 0
        for step in substeps(dt):
            self._step(step)

    def _step(self, dt: float) -> None:
        # commands take effect at the start of the step; delays expire within it
        if self.phase == GEN_STOPPED and self.run:
            self.phase, self.phase_elapsed_s = GEN_STARTING, 0.0
        elif self.phase == GEN_STARTING and not self.run:
            self.phase, self.phase_elapsed_s = GEN_STOPPED, 0.0
        elif self.phase == GEN_RUNNING and not self.run:
            self.phase, self.phase_elapsed_s = GEN_STOPPING, 0.0
        elif self.phase == GEN_STOPPING and self.run:
            self.phase, self.phase_elapsed_s = GEN_RUNNING, 0.0
        self.phase_elapsed_s += dt
        ramp_dt = dt
        if self.phase == GEN_STARTING and self.phase_elapsed_s >= self.start_delay_s:
            ramp_dt = self.phase_elapsed_s - self.start_delay_s
            self.phase, self.phase_elapsed_s = GEN_RUNNING, ramp_dt
        target = self.target_w() if self.phase == GEN_RUNNING else 0.0
        before = self.ac_w
        delta = max(-self.ramp_w_per_s * ramp_dt, min(self.ramp_w_per_s * ramp_dt, target - self.ac_w))
        self.ac_w = max(0.0, self.ac_w + delta)
        if self.phase == GEN_STOPPING and self.ac_w > 0.0:
            self.phase_elapsed_s = 0.0  # the cool-down runs unloaded: it starts once the ramp-down is done
        elif self.phase == GEN_STOPPING and before > 0.0:
            self.phase_elapsed_s = max(0.0, ramp_dt - before / self.ramp_w_per_s)
        if self.phase == GEN_STOPPING and self.phase_elapsed_s >= self.stop_delay_s:
            self.phase, self.phase_elapsed_s = GEN_STOPPED, 0.0
        burning = self.phase != GEN_STOPPED
        if burning:
            rate = (
                self.fuel_l_per_h_idle_per_kw * self.rating_w / 1000.0
                + self.fuel_l_per_kwh * self.ac_w / 1000.0
            )
            self.fuel_l += rate * dt / 3600.0
            self.fuel_cost += rate * dt / 3600.0 * self.fuel_price_per_l
            self.run_hours += dt / 3600.0
        self.energy_wh += self.ac_w * dt / 3600.0

    @property
    def net_w(self) -> float:
        return self.ac_w

    def readings(self) -> dict[str, float | int | None]:
        rate = 0.0
        if self.phase != GEN_STOPPED:
            rate = (
                self.fuel_l_per_h_idle_per_kw * self.rating_w / 1000.0
                + self.fuel_l_per_kwh * self.ac_w / 1000.0
            )
        return {
            **ac_readings(self.ac_w, 0.0, self.v_ph),
            "energy_wh": self.energy_wh,
            "state": {GEN_STOPPED: ST_OFF, GEN_STARTING: ST_STARTING, GEN_RUNNING: ST_MPPT}.get(
                self.phase, ST_SHUTTING_DOWN
            ),
            "phase": self.phase,
            "run": self.run,
            "w_set": self.w_set,
            "min_w": self.min_load_pct / 100.0 * self.rating_w,
            "rating_w": self.rating_w,
            "ramp_w_per_s": self.ramp_w_per_s,
            "start_delay_s": self.start_delay_s,
            "stop_delay_s": self.stop_delay_s,
            "fuel_l_per_h": rate,
            "fuel_l": self.fuel_l,
            "fuel_cost": self.fuel_cost,
            "fuel_price_per_l": self.fuel_price_per_l,
            "run_hours": self.run_hours,
            "rating_var": 0.44 * self.rating_w,
            "rating_var_neg": -0.44 * self.rating_w,
            "rating_a": self.rating_w / (3.0 * V_NOMINAL),
            "temp_c": 40.0 if self.phase == GEN_RUNNING else 20.0,
            **self.watchdog.readings(),
        }

    def check(self, setting: str, value: float) -> str | None:
        if setting == "run":
            return check_flag(setting, value)
        if setting == "w_set":
            return check_range(setting, value, 0.0, self.rating_w)
        return self.watchdog.check(setting, value, self.rating_w)

    def apply(self, setting: str, value: float) -> None:
        self.watchdog.feed()  # any accepted control write: the master is alive
        if setting.startswith("fb_"):
            self.watchdog.apply(setting, value)
            return
        setattr(self, setting, int(value) if setting == "run" else float(value))

    def reset_settings(self) -> None:
        self.run, self.w_set = 0, 0.0
        self.watchdog.reset()


@dataclass
class Load:
    critical_w: float
    sheddable_w: float
    shed: int = 0
    shed_pct: float = 100.0
    critical_now_w: float = 0.0
    sheddable_now_w: float = 0.0
    energy_wh: float = 0.0
    v_ph: float = V_NOMINAL

    def peaks(self) -> dict[str, float]:
        return {
            "w": (self.critical_w + self.sheddable_w) * 2.0,
            "a": (self.critical_w + self.sheddable_w) / V_NOMINAL,
        }

    def advance(self, dt: float, env: Environment) -> None:
        self.v_ph = V_NOMINAL * env.voltage_pu
        factor = max(0.0, env.load_factor)
        self.critical_now_w = self.critical_w * factor
        self.sheddable_now_w = self.sheddable_w * factor * (1.0 - self.shed * self.shed_pct / 100.0)
        self.energy_wh += (self.critical_now_w + self.sheddable_now_w) * dt / 3600.0

    @property
    def net_w(self) -> float:
        return -(self.critical_now_w + self.sheddable_now_w)

    def readings(self) -> dict[str, float | int | None]:
        total = self.critical_now_w + self.sheddable_now_w
        return {
            **ac_readings(total, 0.2 * total, self.v_ph),
            "import_wh": self.energy_wh,
            "export_wh": 0.0,
            "critical_w": self.critical_now_w,
            "sheddable_w": self.sheddable_now_w,
            "shed": self.shed,
            "shed_pct": self.shed_pct,
        }

    def check(self, setting: str, value: float) -> str | None:
        if setting == "shed":
            return check_flag(setting, value)
        if setting == "shed_pct":
            return check_range(setting, value)
        return f"unknown setting {setting}"

    def apply(self, setting: str, value: float) -> None:
        setattr(self, setting, int(value) if setting == "shed" else float(value))

    def reset_settings(self) -> None:
        self.shed, self.shed_pct = 0, 100.0


@dataclass
class PccMeter:
    """The MG's point of common coupling: import positive (SunSpec meter convention)."""

    rating_w: float
    import_w: float = 0.0
    import_wh: float = 0.0
    export_wh: float = 0.0
    v_ph: float = V_NOMINAL

    def peaks(self) -> dict[str, float]:
        return {"w": self.rating_w * 1.5, "a": self.rating_w * 1.5 / V_NOMINAL}

    def update(self, dt: float, net_injections_w: list[float], voltage_pu: float = 1.0) -> None:
        self.v_ph = V_NOMINAL * voltage_pu
        self.import_w = -sum(net_injections_w)
        if self.import_w >= 0:
            self.import_wh += self.import_w * dt / 3600.0
        else:
            self.export_wh += -self.import_w * dt / 3600.0

    def advance(self, dt: float, env: Environment) -> None:
        return None  # driven by `update` from the microgrid, which knows its members

    @property
    def net_w(self) -> float:
        return 0.0

    def readings(self) -> dict[str, float | int | None]:
        return {
            **ac_readings(self.import_w, 0.0, self.v_ph),
            "import_wh": self.import_wh,
            "export_wh": self.export_wh,
        }

    def check(self, setting: str, value: float) -> str | None:
        return f"unknown setting {setting}"

    def apply(self, setting: str, value: float) -> None:
        raise KeyError(setting)

    def reset_settings(self) -> None:
        return None
