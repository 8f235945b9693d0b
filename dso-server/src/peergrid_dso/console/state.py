"""Everything the console needs at run time, built once in the app's lifespan and reached via `Depends`.

Promises: `build_console(settings)` loads the user file (a bad one raises `UserError` naming it, so the
server refuses to start rather than run without its users), builds the lab feeder view, the DSO chain the
operator actions are recorded on, and starts the market simulation on a daemon thread (the market view says
"computing" until it is done, and shows the error if the controller is missing). `close()` stops nothing
that outlives the process. Assumes the feeder is case33bw with `settings.console.mg_buses`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from peergrid_dso.auth.security import SecurityLog
from peergrid_dso.auth.sessions import LoginThrottle, SessionStore
from peergrid_dso.auth.users import UserStore
from peergrid_dso.console.chains import ActionRecorder, ChainExplorer, lab_dso_chain
from peergrid_dso.console.grid import GridView, lab_injections
from peergrid_dso.console.operations import Operations
from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.console.switchgear import MemorySwitchgear, Switchgear
from peergrid_dso.feeder.model import Feeder

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
    market: dict[str, Any] = field(default_factory=lambda: {"status": "computing"})
    _step: int = -1

    def tick(self, now: float | None = None) -> None:
        """Lab only: MG injections drift every few seconds so the live view moves (until the testbed's
        MGMCs report real equivalent injections)."""
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


@lru_cache(maxsize=4)
def _case33bw(mg_buses: tuple[tuple[str, int], ...]) -> Feeder:
    """Building case33bw from pandapower takes a second or two; a `Feeder` is immutable, so share it."""
    from peergrid_dso.feeder.cases import case33bw

    return case33bw(dict(mg_buses))


def build_console(
    settings: ConsoleSettings, feeder_name: str = "feeder1", switchgear: Switchgear | None = None
) -> ConsoleState:
    feeder = _case33bw(tuple(sorted(settings.mg_buses.items())))
    gear = switchgear or MemorySwitchgear({b.number: b.closed for b in feeder.branches})
    grid = GridView(feeder, gear, lab_injections(feeder))
    chain, dso_key = lab_dso_chain(feeder_name, clock=lambda: int(time.time() * 1000))
    recorder = ActionRecorder(chain, dso_key)
    explorers = {"dso": ChainExplorer("dso", chain, recorder.lock)}
    return ConsoleState(
        settings=settings,
        users=UserStore(settings.users_file),
        sessions=SessionStore(settings.session_idle_s, settings.session_max_s),
        throttle=LoginThrottle(settings.login_max_failures),
        security=SecurityLog(),
        grid=grid,
        ops=Operations(grid, recorder),
        explorers=explorers,
    )
