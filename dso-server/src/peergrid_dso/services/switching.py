"""Switching plans and their execution: make-before-break relay sequences with read-back and rollback.

Promises:
- `plan_switching` turns (current open set -> target open set) into ordered pairs "close a tie, then open a
  branch in the loop it made". Closing first means no load bus is ever de-energised; each pair ends radial,
  so the network is never left meshed. Every intermediate state (the brief mesh and the radial state after
  it) is checked by AC power flow against the voltage floor and ratings before it is accepted; if no order
  meets them, `SwitchingPlanError` says which step could not be made safe.
- `SwitchingExecutor.execute` refuses a plan outright (no relay operated; recorded and alarmed) if any relay
  in it is locked out or interlocked, or if any relay it reads - the plan's own and, when the driver names its
  relays (`RelayInventory`), every one - reports a position other than the plan's starting topology says
  (`from_open`, the DSO's whole open set: closed while listed open, open while listed closed, operating) or
  cannot be read: a tie closed by hand, or a relay whose status inputs lie, would otherwise leave the feeder
  meshed or a section dead while the DSO chain records a radial topology. Those reads are made at once where
  the driver can (`read_statuses`: silent relays cost one timeout together). Otherwise it performs each
  operation as a command followed by status read-back until the expected position or a timeout. A timeout, refusal or wrong status aborts and rolls back the unfinished
  pair (and the failed relay itself when it does not read back where it was), returning to the last safe
  (radial, checked) topology, and raises an alarm.
- Any exception out of the driver, not only `RelayError` (a driver bug, a socket error it let through), is
  a failed step: logged with its traceback, then read back, rolled back, recorded and alarmed the same way.
- Every plan, each executed step as it finishes (relay, action, read-back status, wall time) and the plan's
  result are handed to the injected `recorder` (the DSO chain), in that order.
Pure apart from the injected `RelayDriver`, `recorder`, `sleep`, `clock` and `wall`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.powerflow import (
    ac_power_flow,
    closed_mask,
    is_radial,
    net_injection_mw,
)

log = logging.getLogger("peergrid_dso.switching")


class SwitchingPlanError(ValueError):
    """No safe make-before-break order reaches the target."""


class RelayError(RuntimeError):
    """The relay refused a command or could not be reached."""


@dataclass(frozen=True)
class RelayOperation:
    branch: int
    close: bool


@dataclass(frozen=True)
class SwitchingPlan:
    plan_id: str
    interval: int
    from_open: tuple[int, ...]
    to_open: tuple[int, ...]
    operations: tuple[RelayOperation, ...]  # in order; pairs (close, open)


@dataclass(frozen=True)
class RelayStatus:
    closed: bool | None  # None while operating or unknown
    locked_out: bool
    interlock: bool
    failed: bool = False


class RelayDriver(Protocol):
    def status(self, branch: int) -> RelayStatus: ...

    def command(self, branch: int, close: bool) -> None: ...


@runtime_checkable
class RelayInventory(Protocol):
    """A driver that can name every branch it has a relay for: the executor then reads them all before a plan,
    not only the plan's own (a tie closed by hand elsewhere makes the plan's end state meshed)."""

    def branches(self) -> Collection[int]: ...


class Recorder(Protocol):
    def plan(self, plan: SwitchingPlan) -> None: ...

    def step(self, plan: SwitchingPlan, index: int, step: StepRecord) -> None: ...

    def result(self, plan: SwitchingPlan, steps: list[StepRecord]) -> None: ...


@dataclass(frozen=True)
class StepRecord:
    branch: int
    close: bool
    ok: bool
    detail: str = ""
    rollback: bool = False
    status: str = "unknown"  # read-back after the step: closed, open, operating, unknown
    at: float = 0.0  # wall time (s since the epoch) when the step finished


@dataclass(frozen=True)
class ExecutionResult:
    plan_id: str
    ok: bool
    final_open: tuple[int, ...]
    steps: tuple[StepRecord, ...]
    alarm: str | None = None


def check_state(
    feeder: Feeder, open_set: Collection[int], p: np.ndarray, q: np.ndarray, vmin: float
) -> str | None:
    pf = ac_power_flow(feeder, closed_mask(feeder, open_set), p, q)
    if not pf.converged:
        return "power flow does not converge"
    if pf.vmin_pu < vmin - 1e-6:
        return f"voltage {pf.vmin_pu:.4f} pu below {vmin:.3f}"
    if pf.loading.max() > 1.0 + 1e-6:
        worst = int(np.argmax(pf.loading)) + 1
        return f"branch {worst} loaded {pf.loading.max():.0%}"
    return None


def plan_switching(
    feeder: Feeder,
    current_open: Collection[int],
    target_open: Collection[int],
    *,
    plan_id: str,
    interval: int = 0,
    p_inj_mw: np.ndarray | None = None,
    q_inj_mvar: np.ndarray | None = None,
    vmin_pu: float | None = None,
) -> SwitchingPlan:
    vmin = feeder.vmin_pu if vmin_pu is None else vmin_pu
    if p_inj_mw is None or q_inj_mvar is None:
        p_inj_mw, q_inj_mvar = net_injection_mw(feeder)
    state = set(current_open)
    target = set(target_open)
    for name, s in (("current", state), ("target", target)):
        if not is_radial(feeder, closed_mask(feeder, s)):
            raise SwitchingPlanError(f"the {name} topology {sorted(s)} is not radial")
    to_close, to_open = state - target, target - state
    operations: list[RelayOperation] = []
    while to_close:
        chosen = None
        reasons = []
        for c in sorted(to_close):
            meshed = state - {c}
            for o in sorted(to_open):
                after = meshed | {o}
                if not is_radial(feeder, closed_mask(feeder, after)):
                    continue  # o is not in the loop c made
                problem = check_state(feeder, meshed, p_inj_mw, q_inj_mvar, vmin) or check_state(
                    feeder, after, p_inj_mw, q_inj_mvar, vmin
                )
                if problem is None:
                    chosen = (c, o)
                    break
                reasons.append(f"close {c}/open {o}: {problem}")
            if chosen:
                break
        if chosen is None:
            raise SwitchingPlanError(
                "no safe make-before-break step: " + ("; ".join(reasons) or "no pairing")
            )
        c, o = chosen
        operations += [RelayOperation(c, True), RelayOperation(o, False)]
        state = (state - {c}) | {o}
        to_close.discard(c)
        to_open.discard(o)
    return SwitchingPlan(
        plan_id, interval, tuple(sorted(current_open)), tuple(sorted(target)), tuple(operations)
    )


@dataclass
class SwitchingExecutor:
    driver: RelayDriver
    recorder: Recorder
    timeout_s: float = 5.0
    poll_s: float = 0.05
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time  # timestamps on step records
    # Re-checks the state a step would leave (open set) with the injections of the moment, just before the
    # step runs: None if safe, else the reason. Plans are checked when made; this catches changes since.
    step_check: Callable[[tuple[int, ...]], str | None] | None = None
    alarms: list[str] = field(default_factory=list)

    def execute(self, plan: SwitchingPlan) -> ExecutionResult:
        steps: list[StepRecord] = []
        blocked = self._blocked(plan)
        if blocked:
            return self._finish(plan, plan.from_open, steps, f"plan refused, no relay operated: {blocked}")
        state = set(plan.from_open)
        safe = set(state)
        done_in_pair: list[RelayOperation] = []
        for op in plan.operations:
            after = tuple(sorted((state - {op.branch}) if op.close else (state | {op.branch})))
            problem = self.step_check(after) if self.step_check is not None else None
            operated = problem is None
            if problem is not None:
                problem, seen = f"pre-step check refused: {problem}", self._read_back(op.branch)
            else:
                problem, seen = self._operate(op)
            self._record(
                plan, steps, StepRecord(op.branch, op.close, problem is None, problem or "", False, seen)
            )
            if problem is not None:
                # Undo the unfinished pair, back to the last safe state; first the failed relay itself when it
                # was commanded and does not read back where it was (it may still be moving).
                stray = [op] if operated and seen != ("open" if op.close else "closed") else []
                for back in [*stray, *reversed(done_in_pair)]:
                    undo = RelayOperation(back.branch, not back.close)
                    undo_problem, seen = self._operate(undo)
                    self._record(
                        plan, steps,
                        StepRecord(undo.branch, undo.close, undo_problem is None, undo_problem or "", True, seen),
                    )  # fmt: skip
                    if undo_problem is not None:
                        return self._finish(
                            plan, tuple(sorted(state)), steps,
                            f"branch {op.branch}: {problem}; ROLLBACK FAILED at branch {undo.branch}: {undo_problem}",
                        )  # fmt: skip
                return self._finish(
                    plan, tuple(sorted(safe)), steps, f"branch {op.branch}: {problem}; rolled back"
                )
            state = (state - {op.branch}) if op.close else (state | {op.branch})
            done_in_pair.append(op)
            if not op.close:  # a pair completes with its opening: radial and checked at planning
                safe, done_in_pair = set(state), []
        return self._finish(plan, tuple(sorted(state)), steps, None)

    def _blocked(self, plan: SwitchingPlan) -> str:
        """Why the plan must not start, read from the relays before any command; "" when it may. Every relay
        read must report where `plan.from_open` puts it: the plan's pairs are radial and checked only from
        that topology. A relay whose last operation failed but whose contacts report the expected position
        is not refused: its contacts still say where it is, the read-back after its command catches a
        repeat, and the flag clears only with a command."""
        operated = {op.branch for op in plan.operations}
        listed = set(self.driver.branches()) if isinstance(self.driver, RelayInventory) else set()
        problems = []
        for branch, st in sorted(read_statuses(self.driver, operated | listed).items()):
            if isinstance(st, Exception):  # any driver failure refuses the plan, never escapes
                problems.append(f"branch {branch} unreachable ({_driver_error(st)})")
                continue
            if branch in operated and st.locked_out:
                problems.append(f"branch {branch} locked out")
            if branch in operated and st.interlock:
                problems.append(f"branch {branch} interlocked")
            expected, seen = ("open" if branch in plan.from_open else "closed"), _position(st)
            if seen != expected:
                problems.append(f"branch {branch} reports {seen}, the plan starts from it {expected}")
        return ", ".join(problems)

    def _record(self, plan: SwitchingPlan, steps: list[StepRecord], step: StepRecord) -> None:
        step = replace(step, at=self.wall())
        steps.append(step)
        self.recorder.step(plan, len(steps) - 1, step)

    def _read_back(self, branch: int) -> str:
        try:
            return _position(self.driver.status(branch))
        except Exception as exc:  # a read-back that fails reads "unknown"
            _driver_error(exc)
            return "unknown"

    def _operate(self, op: RelayOperation) -> tuple[str | None, str]:
        """(problem or None, read-back position)."""
        try:
            self.driver.command(op.branch, op.close)
        except Exception as exc:  # the relay may have moved: read back, let the caller undo
            return f"command refused: {_driver_error(exc)}", self._read_back(op.branch)
        deadline = self.clock() + self.timeout_s
        while True:
            try:
                st = self.driver.status(op.branch)
            except Exception as exc:  # position unknown: a failed step, rolled back
                return f"read-back failed: {_driver_error(exc)}", "unknown"
            seen = _position(st)
            if st.failed:
                return "relay reports the operation failed", seen
            if st.closed is not None and st.closed == op.close:
                return None, seen
            if self.clock() >= deadline:
                return f"timeout: expected {'closed' if op.close else 'open'}, read {seen}", seen
            self.sleep(self.poll_s)

    def _finish(
        self, plan: SwitchingPlan, final_open: tuple[int, ...], steps: list[StepRecord], alarm: str | None
    ) -> ExecutionResult:
        if alarm:
            self.alarms.append(f"{plan.plan_id}: {alarm}")
        self.recorder.result(plan, steps)
        return ExecutionResult(plan.plan_id, alarm is None, final_open, tuple(steps), alarm)


def read_statuses(driver: RelayDriver, branches: Collection[int]) -> dict[int, RelayStatus | Exception]:
    """Each relay's status, or the exception its read raised (never raised here): all at once through a
    driver that reads every relay it names together (`read_every`: one worker per connection, so silent
    relays cost one timeout together), else one after the other."""
    wanted = set(branches)
    read_every = getattr(driver, "read_every", None)
    found: dict[int, RelayStatus | Exception] = {}
    if read_every is not None and isinstance(driver, RelayInventory) and wanted & set(driver.branches()):
        try:
            found = {b: v for b, v in read_every().items() if b in wanted}
        except Exception as exc:  # a driver bug: logged (with its trace), then read one by one
            _driver_error(exc)
    for branch in sorted(wanted - set(found)):
        try:
            found[branch] = driver.status(branch)
        except Exception as exc:  # the caller names the relay with it
            found[branch] = exc
    return found


def _driver_error(exc: Exception) -> str:
    """The reason for a step's record; anything but `RelayError` is a driver bug, logged with its trace."""
    if isinstance(exc, RelayError):
        return str(exc)
    log.error("relay driver raised %s (treated as a failed step)", type(exc).__name__, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def _position(st: RelayStatus) -> str:
    return "operating" if st.closed is None else ("closed" if st.closed else "open")


@dataclass
class SwitchingService:
    """Plans wait for operator approval unless `auto`; every plan is recorded when submitted."""

    executor: SwitchingExecutor
    auto: bool = False
    pending: dict[str, SwitchingPlan] = field(default_factory=dict)
    results: dict[str, ExecutionResult] = field(default_factory=dict)

    def submit(self, plan: SwitchingPlan) -> ExecutionResult | None:
        if plan.plan_id in self.pending or plan.plan_id in self.results:
            raise ValueError(f"plan {plan.plan_id!r} already submitted")
        self.executor.recorder.plan(plan)
        if self.auto:
            return self._run(plan)
        self.pending[plan.plan_id] = plan
        return None

    def approve(self, plan_id: str) -> ExecutionResult:
        plan = self.pending.pop(plan_id, None)
        if plan is None:
            raise KeyError(f"no plan {plan_id!r} awaiting approval")
        return self._run(plan)

    def _run(self, plan: SwitchingPlan) -> ExecutionResult:
        result = self.executor.execute(plan)
        self.results[plan.plan_id] = result
        return result
