"""The emulated world: microgrids of devices and the feeder's relays, advanced together on one clock.

Promises: `Simulation.tick()` advances every device's physics from the last tick to `clock.now()`, feeds
each MG's PCC meter the sum of its members' injections, and re-renders every register image; environment
values can be overridden per MG (for tests and fault injection). Assumes a validated `Scenario`. Never
opens sockets: the servers in `server.py` and the control API call into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .clock import SimClock
from .devices import SunSpecDevice
from .physics import Environment
from .relay import RelayDevice
from .scenario import Microgrid, Profile, Scenario, at_hour, cloud_cover

RATING_KEYS = ("rating_w", "max_discharge_w", "critical_w", "sheddable_w")
MAX_TICK_S = 86400.0  # a host that stalled (or a big clock jump) is caught up by at most a day per tick


class ScenarioError(Exception):
    """Device parameters that the physics models refuse."""


@dataclass
class MicrogridSim:
    name: str
    bus: int
    profile: Profile
    devices: dict[str, SunSpecDevice]
    env_override: dict[str, float] = field(default_factory=dict)

    def environment(self, t: float) -> Environment:
        hour = (t % 86400.0) / 3600.0
        clear_sky = at_hour(self.profile.irradiance, hour)
        if self.profile.clouds:
            clear_sky *= 1.0 - self.profile.clouds * cloud_cover(self.profile.seed, t)
        env = {
            "irradiance_w_m2": clear_sky,
            "ambient_c": at_hour(self.profile.temperature, hour),
            "load_factor": at_hour(self.profile.load, hour),
        }
        env.update(self.env_override)
        return Environment(**env)

    def advance(self, dt: float, t: float) -> None:
        env = self.environment(t)
        members = [d for d in self.devices.values() if d.kind != "meter"]
        for device in members:
            device.model.advance(dt, env)
        for device in self.devices.values():
            if device.kind == "meter":
                device.model.update(dt, [m.model.net_w for m in members], env.voltage_pu)
        for device in self.devices.values():
            device.mark_stale()

    def net_import_w(self) -> float:
        return -float(sum(d.model.net_w for d in self.devices.values() if d.kind != "meter"))


def _build_mg(spec: Microgrid, profile: Profile) -> MicrogridSim:
    devices: dict[str, SunSpecDevice] = {}
    total_rating = sum(float(d.params.get(k, 0.0)) for d in spec.devices for k in RATING_KEYS)
    for d in spec.devices:
        params: dict[str, Any] = dict(d.params)
        if d.kind == "meter":
            params.setdefault("rating_w", max(total_rating, 10_000.0))
        try:
            devices[d.name] = SunSpecDevice.create(d.name, spec.name, d.kind, d.unit_id, params)
        except TypeError as exc:
            raise ScenarioError(f"{spec.name}.{d.name}: bad params for a {d.kind}: {exc}") from None
    return MicrogridSim(spec.name, spec.bus, profile, devices)


class Simulation:
    def __init__(self, scenario: Scenario, clock: SimClock):
        self.scenario = scenario
        self.clock = clock
        self.t = clock.now()
        self.microgrids = {
            mg.name: _build_mg(mg, scenario.profiles[mg.profile]) for mg in scenario.microgrids
        }
        self.relays = {r.name: RelayDevice.create(r) for r in scenario.relays}
        self.tick()

    def tick(self) -> None:
        now = self.clock.now()
        dt = min(MAX_TICK_S, max(0.0, now - self.t))
        self.t = max(self.t, now)
        for mg in self.microgrids.values():
            mg.advance(dt, self.t)
        for relay in self.relays.values():
            relay.advance(self.t)

    def device(self, path: str) -> SunSpecDevice | RelayDevice:
        """`mg/device` for an MG's device, or a relay's name."""
        if path in self.relays:
            return self.relays[path]
        mg_name, _, device_name = path.partition("/")
        mg = self.microgrids.get(mg_name)
        if mg is None or device_name not in mg.devices:
            raise KeyError(f"no device {path!r}")
        return mg.devices[device_name]

    def state(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "speed": self.clock.speed,
            "microgrids": {
                name: {
                    "bus": mg.bus,
                    "net_import_w": mg.net_import_w(),
                    "environment": mg.environment(self.t).__dict__,
                    "devices": {
                        d.name: {"kind": d.kind, "readings": d.readings()} for d in mg.devices.values()
                    },
                }
                for name, mg in self.microgrids.items()
            },
            "relays": {name: relay.status() for name, relay in self.relays.items()},
        }
