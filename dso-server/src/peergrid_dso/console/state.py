"""Everything the console needs at run time, built once in the app's lifespan and reached via `Depends`.

Promises: `build_console(settings, dso)` loads the user file (a bad one raises `UserError` naming it, so the
server refuses to start rather than run without its users) and builds the feeder view and operations on the
DSO engineer's services (`peergrid_dso.services.container.DsoServices`: feeder, switch state, DSO chain,
switching executor, enrolment); `start_market` runs the lab market simulation on a daemon thread (the market
view says "computing" until it is done, and shows the error if the controller is missing).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from peergrid_dso.auth.security import SecurityLog
from peergrid_dso.auth.sessions import LoginThrottle, SessionStore
from peergrid_dso.auth.users import UserStore
from peergrid_dso.console.chains import ChainExplorer
from peergrid_dso.console.grid import GridView, lab_injections
from peergrid_dso.console.operations import Operations
from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.console.switchgear import DsoSwitchgear

log = logging.getLogger("peergrid_dso.console")


@dataclass
class ConsoleState:
    settings: ConsoleSettings
    users: UserStore
    sessions: SessionStore
    throttle: LoginThrottle
    security: SecurityLog
    grid: GridView
    ops: Operations
    explorers: dict[str, ChainExplorer]
    dso: Any
    market: dict[str, Any] = field(default_factory=lambda: {"status": "computing"})
    _step: int = -1

    def tick(self, now: float | None = None) -> None:
        """MG injections for the feeder view: the latest interval the MGMCs reported to the DSO, or in the
        lab without MGMC reports a drifting noon picture so the live view moves."""
        if self.dso.injections:
            latest = self.dso.injections[max(self.dso.injections)]
            self.grid.set_injections({mg: p_mw * 1000.0 for mg, (p_mw, _q) in latest.items()})
            return
        if not self.settings.lab_drift:
            return
        step = int((time.monotonic() if now is None else now) // 5.0)
        if step != self._step:
            self._step = step
            self.grid.set_injections(lab_injections(self.grid.feeder, step * 0.7))

    def start_market(self) -> threading.Thread | None:
        if not self.settings.lab_market:
            self.market = {
                "status": "failed",
                "error": "no market source configured (console.lab_market is off)",
            }
            return None

        def run() -> None:
            try:
                from peergrid_dso.console.market import run_lab_market

                report, chain = run_lab_market(
                    sorted(self.grid.feeder.mg_buses), self.settings.market_intervals
                )
                self.explorers["mgmc"] = ChainExplorer("mgmc", chain)
                self.market = report | {"status": "ready"}
            except Exception as exc:  # shown to the operator; the server keeps running
                log.exception("market simulation failed")
                self.market = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}

        thread = threading.Thread(target=run, name="console-market", daemon=True)
        thread.start()
        return thread


def build_console(settings: ConsoleSettings, dso: Any) -> ConsoleState:
    """`dso`: the DSO engineer's `DsoServices` (feeder, switch state, DSO chain, switching, enrolment)."""
    grid = GridView(dso.feeder, DsoSwitchgear(dso), lab_injections(dso.feeder))
    ops = Operations(grid, dso)
    return ConsoleState(
        settings=settings,
        users=UserStore(settings.users_file),
        sessions=SessionStore(settings.session_idle_s, settings.session_max_s),
        throttle=LoginThrottle(settings.login_max_failures),
        security=SecurityLog(),
        grid=grid,
        ops=ops,
        explorers={"dso": ChainExplorer("dso", dso.chain, ops.lock)},
        dso=dso,
    )
