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
from dataclasses import dataclass, field
from typing import Any

from peergrid_dso.auth.security import SecurityLog
from peergrid_dso.auth.sessions import LoginThrottle, SessionStore
from peergrid_dso.auth.users import UserStore
from peergrid_dso.console.chains import ActionRecorder, ChainExplorer, lab_dso_chain
from peergrid_dso.console.grid import GridView, lab_injections
from peergrid_dso.console.operations import Operations
from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.console.switchgear import MemorySwitchgear, Switchgear

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

    def start_market(self) -> threading.Thread:
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


def build_console(
    settings: ConsoleSettings, feeder_name: str = "feeder1", switchgear: Switchgear | None = None
) -> ConsoleState:
    from peergrid_dso.feeder.cases import case33bw

    feeder = case33bw(settings.mg_buses)
    gear = switchgear or MemorySwitchgear({b.number: b.closed for b in feeder.branches})
    grid = GridView(feeder, gear, lab_injections(feeder))
    chain, dso_key = lab_dso_chain(feeder_name)
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
