"""A device's own communication-loss watchdog (peergrid vendor model 64203), for PV inverters and gensets.

Promises: `feed()` restarts it — the physics calls it on every accepted control write, so a master that keeps
writing (the MGMC feeds it every dispatch tick by rewriting FbTms) keeps it quiet; `expired(dt)` ages it by dt
simulated seconds and returns True exactly once when `timeout_s` passed without a write, and the owner then
latches its fallback (PV: export capped at `fallback_w`; genset: output `fallback_w`, 0 = stop) until the next
write. `timeout_s` 0 = off (the power-on default: a device nobody configured keeps its old behaviour).
Modelled on inverters' "fallback on lost communication" settings. Pure: no clock, no socket.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CommWatchdog:
    timeout_s: float = 0.0
    fallback_w: float = 0.0
    age_s: float = 0.0
    active: int = 0

    def feed(self) -> None:
        self.age_s, self.active = 0.0, 0

    def expired(self, dt: float) -> bool:
        self.age_s += dt
        if self.timeout_s > 0 and not self.active and self.age_s >= self.timeout_s:
            self.active = 1
            return True
        return False

    def readings(self) -> dict[str, float | int | None]:
        return {"fb_s": self.timeout_s, "fb_w": self.fallback_w, "fb_active": self.active}

    def check(self, setting: str, value: float, max_w: float) -> str | None:
        high = {"fb_s": 65534.0, "fb_w": max_w}.get(setting)
        if high is None:
            return f"unknown setting {setting}"
        return None if 0.0 <= value <= high else f"{setting} must be within 0..{high:g}, got {value:g}"

    def apply(self, setting: str, value: float) -> None:
        if setting == "fb_s":
            self.timeout_s = float(value)
        elif setting == "fb_w":
            self.fallback_w = float(value)

    def reset(self) -> None:
        self.timeout_s = self.fallback_w = self.age_s = 0.0
        self.active = 0
