"""The testbed's watch over its broker: a Mosquitto that exits while the lab runs is started again, the same
broker (`MosquittoBroker.restart`: the same port, and its config, TLS and ACL files rendered as before).

Promises: `RestartBackoff` (pure) says how long to wait before the next start after a death, and when to stop
trying: a broker that ran `QUICK_S` or longer is started again `FIRST_WAIT_S` after it exited; each death within
`QUICK_S` of its start (a start that never listened is one) doubles the wait, up to `MAX_WAIT_S`, and the
`QUICK_DEATHS`th such death in a row is the end, so a broken config or a port another process took never loops
forever. `BrokerWatch.check(stopping)`, called from the testbed's loop (one thread: its signal handlers only note
the stop), says each death once (a WARNING line with the exit status, the wait and the broker's log) and each
return once, and raises `TestbedError` naming the deaths when it gives up (the testbed then stops, status 1). It
waits between starts without blocking the loop, so a Ctrl-C during the wait stops at once, and it never starts a
broker once `stopping()` holds: the testbed's stop, which ends the broker last, never races a restart. A broker
started again by another hand (<workdir>/control/restart-broker, the fault tests') is a new start, watched from
then on. The lab's daemons reconnect by themselves and tell the outage in their own logs (`BrokerOutage`).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from peergrid_sim.broker import BrokerError, MosquittoBroker

FIRST_WAIT_S = 1.0  # after a broker that ran a while: the daemons' own first reconnect waits are 0.1-1 s
MAX_WAIT_S = 8.0  # the longest wait between two starts (the DSO's health listener retries within 10 s)
QUICK_S = 30.0  # a death this soon after its start counts towards giving up (a config it cannot run)
QUICK_DEATHS = 5  # quick deaths in a row: about 23 s of trying (waits 1, 2, 4, 8, 8 s) before the lab stops


class BrokerGaveUp(RuntimeError):
    """The broker died `QUICK_DEATHS` times in a row, each soon after its start: it is not started again."""


@dataclass
class RestartBackoff:
    first_wait_s: float = FIRST_WAIT_S
    max_wait_s: float = MAX_WAIT_S
    quick_s: float = QUICK_S
    quick_deaths_limit: int = QUICK_DEATHS
    quick_deaths: int = 0  # in a row, the last one included

    def after_death(self, lived_s: float) -> float | None:
        """The wait (s) before starting again a broker that exited `lived_s` after its start; None: give up."""
        self.quick_deaths = self.quick_deaths + 1 if lived_s < self.quick_s else 0
        if self.quick_deaths >= self.quick_deaths_limit:
            return None
        return float(min(self.first_wait_s * 2**self.quick_deaths, self.max_wait_s))


def exit_status(code: int | None) -> str:
    """A process's exit status as a line names it: 'exited with 1', 'exited with -9 (SIGKILL)'."""
    if code is None:
        return "never listened"
    if code < 0:
        try:
            return f"exited with {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exited with {code}"


class BrokerWatch:
    def __init__(
        self,
        broker: MosquittoBroker,
        on_restart: Callable[[], None],
        backoff: RestartBackoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = broker
        self.on_restart = on_restart  # e.g. the testbed's pids.json rewritten with the new PID
        self.backoff = backoff if backoff is not None else RestartBackoff()
        self.clock = clock
        self.watched = broker.process  # the start `started_at` is the time of
        self.started_at = clock()
        self.restart_at: float | None = None  # a start due then; None: none due
        self.down_since: float | None = None  # the first death of the outage

    def check(self, stopping: Callable[[], bool]) -> list[str]:
        """The lines to tell now (see the module's docstring); raises `BrokerGaveUp` when it gives up."""
        if stopping():
            return []
        now = self.clock()
        process = self.broker.process
        if process is not self.watched and process is not None and process.poll() is None:
            # started again by another hand (control/restart-broker): a new start, any start due here dropped
            self.watched, self.started_at = process, now
            if self.restart_at is not None:
                self.restart_at = None
                return [self._back(now)]
        if self.restart_at is None:
            if process is None or process.poll() is None:
                return []
            wait = self._died(process.returncode, now - self.started_at, now)
            return [
                f"WARNING the broker (mosquitto, PID {process.pid}) {exit_status(process.returncode)}; starting it "
                f"again on port {self.broker.port} in {wait:g} s (see {self.broker.log_path})"
            ]
        if now < self.restart_at or stopping():
            return []
        self.restart_at = None
        try:
            self.broker.restart()
        except BrokerError:
            failed = self.broker.process
            code = failed.poll() if failed is not None else None
            self.broker.stop()  # one that never listened is ended, not left behind
            wait = self._died(code, 0.0, self.clock())
            return [
                f"WARNING the broker did not come back on port {self.broker.port} ({exit_status(code)}); trying "
                f"again in {wait:g} s (see {self.broker.log_path})"
            ]
        self.watched, self.started_at = self.broker.process, self.clock()
        self.on_restart()
        return [self._back(self.started_at)]

    def _died(self, code: int | None, lived_s: float, now: float) -> float:
        """Note a death; the wait before the next start, or `BrokerGaveUp`."""
        if self.down_since is None:
            self.down_since = now
        wait = self.backoff.after_death(lived_s)
        if wait is None:
            raise BrokerGaveUp(
                f"ERROR the broker (mosquitto) died {self.backoff.quick_deaths} times in a row, each within "
                f"{self.backoff.quick_s:g} s of its start (the last {exit_status(code)}); not started again, so "
                f"the lab stops: see {self.broker.log_path}"
            )
        self.restart_at = now + wait
        return wait

    def _back(self, now: float) -> str:
        process = self.broker.process
        pid = process.pid if process is not None else "?"
        since = now - self.down_since if self.down_since is not None else 0.0
        self.down_since = None
        return f"the broker is back on port {self.broker.port} (mosquitto, PID {pid}), {since:.1f} s after it exited"
