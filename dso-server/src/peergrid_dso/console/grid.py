"""The live feeder as the console shows it: switch states from the switchgear, AC power flow, alarms.

Promises: `GridView.snapshot()` is a JSON-safe picture of the feeder now - buses with voltage and a status
against the feeder's limits (ok, low, high, dead), branches with state and loading, MG injections, losses and
alarms - and a `version` that changes whenever anything shown changes. Alarms are the standing ones first
(`standing_alarms`: conditions another part keeps, shown while they stand, such as the closed loop's relay
watch), then the operations' log (`alarm`, the last 20), then what the power flow finds now; a branch whose
relay reports another position than the DSO holds, or cannot be read, says so (`relay_reports`, the watch's).
`check(open_branches)` answers what a switch state would do (islanded load, meshed, voltages, loadings)
without touching a switch. Uses the DSO engineer's feeder model and power flow
(`peergrid_dso.services.powerflow`); never operates switches itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from peergrid_dso.console.layout import one_line_layout
from peergrid_dso.console.switchgear import Switchgear
from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.powerflow import (
    IslandedLoadError,
    ac_power_flow,
    closed_mask,
    is_radial,
    net_injection_mw,
)

WARN_LOADING = 0.8


class GridView:
    def __init__(self, feeder: Feeder, switchgear: Switchgear, injections_kw: dict[str, float]) -> None:
        self.feeder = feeder
        self.switchgear = switchgear
        self.layout = one_line_layout(feeder)
        self.injections_kw = dict(injections_kw)
        self.events: list[str] = []  # operator-visible alarms from operations (failed steps, rollbacks)
        self.interval: dict[str, Any] | None = None  # the closed loop's latest interval verdict (live mode)
        self.standing_alarms: Callable[[], tuple[str, ...]] = tuple  # read at each snapshot; none by default
        self.relay_reports: Callable[[], dict[int, str]] = dict  # branch -> what its relay reports, where off
        self._lock = threading.Lock()
        self._cache: tuple[Any, dict[str, Any]] | None = None
        self._serial = 0

    # -- state
    def open_branches(self) -> tuple[int, ...]:
        states = self.switchgear.states()
        return tuple(sorted(b.number for b in self.feeder.branches if not states.get(b.number, b.closed)))

    def set_injections(self, injections_kw: dict[str, float]) -> None:
        with self._lock:
            self.injections_kw = dict(injections_kw)

    def set_interval(self, summary: dict[str, Any]) -> None:
        with self._lock:
            self.interval = dict(summary)
            self._serial += 1

    def alarm(self, text: str, replacing: str | None = None) -> None:
        """Log `text`; in place of the newest alarm where that is `replacing` (a run's alarm grown by one)."""
        with self._lock:
            if replacing is not None and self.events and self.events[-1] == replacing:
                self.events[-1] = text
            else:
                self.events.append(text)
            del self.events[:-20]
            self._serial += 1

    def check(self, open_branches: Iterable[int]) -> dict[str, Any]:
        """Power flow for a hypothetical switch state: ok=False with a reason when it islands load."""
        open_set = tuple(sorted(set(open_branches)))
        closed = closed_mask(self.feeder, open_set)
        p, q = net_injection_mw(self.feeder, {m: (kw / 1000, 0.0) for m, kw in self.injections_kw.items()})
        try:
            pf = ac_power_flow(self.feeder, closed, p, q)
        except IslandedLoadError as exc:
            return {"ok": False, "reason": f"islands load at buses {exc.buses}", "open_branches": open_set}
        f = self.feeder
        return {
            "ok": pf.converged,
            "reason": None if pf.converged else "power flow does not converge (voltage collapse)",
            "open_branches": open_set,
            "radial": is_radial(f, closed),
            "losses_kw": round(pf.losses_mw * 1000, 3),
            "vmin_pu": round(pf.vmin_pu, 5),
            "vmax_pu": round(pf.vmax_pu, 5),
            "max_loading": round(float(pf.loading.max()), 4),
            "vm_pu": [round(float(v), 5) for v in pf.vm_pu],
            "loading": [round(float(x), 4) for x in pf.loading],
            "p_kw": [round(float(x) * 1000, 2) for x in pf.branch_p_mw],
            "energised": [bool(e) for e in pf.energised],
        }

    def snapshot(self) -> dict[str, Any]:
        open_set = self.open_branches()
        standing, reports = tuple(self.standing_alarms()), dict(self.relay_reports())
        with self._lock:
            key = (open_set, tuple(sorted(self.injections_kw.items())), self._serial, standing,
                   tuple(sorted(reports.items())))  # fmt: skip
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
            events = list(self.events)
            interval = self.interval
        f = self.feeder
        state = self.check(open_set)
        buses, alarms = [], [*standing, *events]
        for i, bus_id in enumerate(f.bus_ids):
            x, y = self.layout[i]
            vm = state["vm_pu"][i] if "vm_pu" in state else None
            if vm is None or not state["energised"][i]:
                status = "dead"
            elif vm < f.vmin_pu:
                status = "low"
                alarms.append(f"bus {bus_id}: voltage {vm:.4f} pu below {f.vmin_pu:.2f}")
            elif vm > f.vmax_pu:
                status = "high"
                alarms.append(f"bus {bus_id}: voltage {vm:.4f} pu above {f.vmax_pu:.2f}")
            else:
                status = "ok"
            buses.append({"id": bus_id, "x": x, "y": y, "vm_pu": vm, "status": status, "root": i == f.root})
        branches = []
        for k, b in enumerate(f.branches):
            loading = state["loading"][k] if "loading" in state else None
            if loading is not None and loading > 1.0:
                alarms.append(f"branch {b.number}: loading {loading:.0%} over its rating")
            branches.append(
                {
                    "number": b.number,
                    "from": f.bus_ids[b.from_bus],
                    "to": f.bus_ids[b.to_bus],
                    "closed": b.number not in open_set,
                    "tie": not b.closed,
                    "loading": loading,
                    "p_kw": state["p_kw"][k] if "p_kw" in state else None,
                    "relay_reports": reports.get(b.number),  # None: the relay agrees (or was not read)
                }
            )
        if not state["ok"]:
            alarms.append(f"network: {state['reason']}")
        elif not state["radial"]:
            alarms.append("network: meshed (more branches closed than a radial feeder has)")
        mgs = [
            {"mg": mg, "bus": f.bus_ids[bus], "p_kw": round(self.injections_kw.get(mg, 0.0), 2)}
            for mg, bus in sorted(f.mg_buses.items())
        ]
        snap = {
            "feeder": f.name,
            "vmin_limit": f.vmin_pu,
            "vmax_limit": f.vmax_pu,
            "open_branches": list(open_set),
            "losses_kw": state.get("losses_kw"),
            "vmin_pu": state.get("vmin_pu"),
            "max_loading": state.get("max_loading"),
            "buses": buses,
            "branches": branches,
            "mgs": mgs,
            "alarms": alarms,
            "interval": interval,
        }
        with self._lock:
            snap["version"] = hash(key) & 0xFFFFFFFF
            self._cache = (key, snap)
        return snap


def lab_injections(feeder: Feeder, t: float = 0.0) -> dict[str, float]:
    """A plausible noon picture: PV-heavy MGs export, the load-heavy one imports (kW, generation positive)."""
    base = {"mg1": 180.0, "mg2": -60.0, "mg3": 90.0, "mg4": -150.0, "mg5": 120.0, "mg6": 40.0}
    wobble = 1.0 + 0.05 * np.sin(t)
    return {mg: round(base.get(mg, 50.0) * float(wobble), 2) for mg in sorted(feeder.mg_buses)}
