"""Operator actions through the DSO engineer's services: reconfiguration plans (propose, approve-and-execute),
manual switching with a confirmation step, and the MGMC enrolment queue (approve, revoke).

Promises: a proposal runs the injected planner (the loss-minimising MILP) for the present injections and is
shown with before/after losses and voltages and its make-before-break order (`plan_switching`); nothing is
recorded or operated until an operator approves. Approval re-plans from the present topology under the id
`"<plan> by <approver>"`, submits it to the `SwitchingService` (which records the `switching_plan` on the DSO
chain) and executes it with read-back and rollback (`SwitchingExecutor`); the result is recorded and the chain
sealed, so every action is a final, provable block. A manual operation is first previewed and runs only with
the one-time token of that preview, from the same user, within `CONFIRM_TTL_S`; one that would island load is
refused (interlock). Plan and manual ids (`plan-<n>`, `manual-<n>`) are wall-clock milliseconds, each above the
last, so a restarted server on a persistent DSO chain does not reuse one; a record the chain refuses all the
same (a duplicate after the clock went back) is an `OperationError` naming the chain's reason, not a crash.
An operator can adopt the positions the relays report as the DSO's open set (`relay_adoption`: all read,
none moving, radial, the open set the operator was shown).
Every action ends with an `operator_action` record on the DSO chain naming the operator
and the transactions the action caused, sealed with them into one final block, and a line in the audit trail
(`operator_audit`: `audit`, `audit_added`, `add_audit` here); a switching (manual or an approved plan) that was
not done says so there, with the executor's reason (`outcome`); enrolment records name the operator too.
The plans list keeps every pending (or executing) plan and the last `PLANS_KEPT_DECIDED` decided ones, the
older dropped (the DSO chain keeps every approved plan's records); readers on other threads may iterate it.
Callers check roles; this module trusts the user name it is given.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from peergrid_dso.auth.store import ConsoleDb
from peergrid_dso.console import relay_adoption
from peergrid_dso.console.chains import LABEL_MAX, by_label
from peergrid_dso.console.grid import GridView
from peergrid_dso.console.operator_audit import AUDIT_KEPT, OperatorAudit, outcome
from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.dso_chain import ChainRejected
from peergrid_dso.services.enrolment import EnrolmentNotKept, EnrolmentRefused
from peergrid_dso.services.powerflow import net_injection_mw
from peergrid_dso.services.reconfiguration import ReconfigurationInfeasible, SolverFailure, reconfigure
from peergrid_dso.services.switching import (
    RelayOperation,
    SwitchingPlan,
    SwitchingPlanError,
    plan_switching,
)
from peergrid_dso.services.switching_adopt import AdoptRefused

log = logging.getLogger("peergrid_dso.console")
CONFIRM_TTL_S = 120.0
# Decided plans kept for the Operations view, the latest by proposal; pending and executing ones always stay.
# An operator reads the last few to see what was tried and how it went; every approved plan's switching_plan
# and operator_action stay on the DSO chain, and the view's audit trail shows the last 50 actions. Unbounded, a
# long-running server kept every proposal ever made, all in the view's one table and in the operations version
# the SSE stream computes on every tick for every open feed.
PLANS_KEPT_DECIDED = 20
UNDECIDED = frozenset({"pending", "executing"})
Planner = Callable[[Feeder, np.ndarray, np.ndarray], tuple[int, ...]]


class OperationError(ValueError):
    """An operator action that cannot be done now; the message says why (HTTP 409)."""


def milp_planner(feeder: Feeder, p_mw: np.ndarray, q_mvar: np.ndarray) -> tuple[int, ...]:
    """The DSO engineer's loss-minimising reconfiguration: the branches to leave open."""
    try:
        return reconfigure(feeder, p_inj_mw=p_mw, q_inj_mvar=q_mvar, time_limit_s=30.0).open_branches
    except (ReconfigurationInfeasible, SolverFailure) as exc:
        raise OperationError(f"no plan: {exc}") from None


@dataclass
class Plan:
    id: str
    created_by: str
    before: dict[str, Any]
    after: dict[str, Any]
    actions: list[dict[str, Any]]
    status: str = "pending"  # -> executed | failed (also: refused by the chain) | superseded | nothing to do
    approved_by: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    chain: list[dict[str, Any]] = field(default_factory=list)
    alarm: str | None = None

    def view(self) -> dict[str, Any]:
        summary = ("losses_kw", "vmin_pu", "max_loading", "open_branches", "vm_pu")
        return {
            "id": self.id,
            "created_by": self.created_by,
            "status": self.status,
            "approved_by": self.approved_by,
            "actions": self.actions,
            "before": {k: self.before.get(k) for k in summary},
            "after": {k: self.after.get(k) for k in summary},
            "steps": self.steps,
            "chain": self.chain,
            "alarm": self.alarm,
        }


class Operations:
    def __init__(
        self,
        grid: GridView,
        dso: Any,
        planner: Planner = milp_planner,
        interval: int = 0,
        db: ConsoleDb | None = None,
        wall: Callable[[], float] = time.time,
        plans_kept: int = PLANS_KEPT_DECIDED,
    ) -> None:
        if isinstance(plans_kept, bool) or not isinstance(plans_kept, int) or plans_kept < 0:
            raise ValueError(
                f"plans_kept must be a whole number >= 0 (decided plans kept), not {plans_kept!r}"
            )
        self.grid = grid
        self.dso = dso  # peergrid_dso.services.container.DsoServices
        self.planner = planner
        self.interval = interval
        # by id, in proposal order; replaced, never changed in place, so a reader on another thread (the view,
        # the SSE stream's version) iterates a dict no one changes under it
        self.plans: dict[str, Plan] = {}
        self.plans_kept = plans_kept
        self.db = db  # where the audit trail outlives a restart (the DSO chain holds the same records)
        self.trail = OperatorAudit(dso, db)  # each action's operator_action, and the audit trail
        self.lock = threading.Lock()  # one operator action at a time; also guards sealing the DSO chain
        self._confirmations: dict[str, tuple[str, int, bool, float]] = {}
        self.wall = wall  # plan ids from it: the DSO chain keeps every id across restarts
        self._seq = 0

    def _next_id(self, prefix: str) -> str:
        """`<prefix>-<n>`: n the wall clock in ms, or one above the last id when that is not below it (two in one
        ms, a clock that stepped back while running). Counting from 1 in each life reused, after a restart,
        the ids of the first life's plans on the persistent DSO chain, which refuses a plan id used before."""
        self._seq = max(self._seq + 1, round(self.wall() * 1000))
        return f"{prefix}-{self._seq}"

    def _refused(self, user: str, action: str, before: set[bytes], exc: ChainRejected) -> OperationError:
        """A record the DSO chain refused: what did land is still named by an `operator_action` (best effort),
        and the operator is told the chain's reason and whether the relays may have moved."""
        with contextlib.suppress(Exception):
            self.trail.seal(user, f"{action} (refused by the DSO chain)", before)
        if str(exc).startswith("switching_plan "):  # the plan itself: nothing was commanded
            return OperationError(f"the DSO chain refused the plan, nothing was operated: {exc}")
        self.grid.alarm(f"{action}: the DSO chain refused a record during execution: {exc}")
        return OperationError(
            f"the DSO chain refused a record during execution ({exc}); the relays may have moved: "
            "read and adopt their positions"
        )

    def _injections_mw(self) -> tuple[np.ndarray, np.ndarray]:
        kw = self.grid.injections_kw
        return net_injection_mw(self.grid.feeder, {m: (v / 1000, 0.0) for m, v in kw.items()})

    def _plan(self, label: str, target: tuple[int, ...]) -> SwitchingPlan:
        p, q = self._injections_mw()
        try:
            return plan_switching(
                self.grid.feeder,
                self.dso.open_set,
                target,
                plan_id=label,
                interval=self.interval,
                p_inj_mw=p,
                q_inj_mvar=q,
            )
        except SwitchingPlanError as exc:
            raise OperationError(f"no safe switching order: {exc}") from None

    @property
    def audit(self) -> list[dict[str, Any]]:
        """The audit trail in memory, oldest first: the last `AUDIT_KEPT` lines (`operator_audit`)."""
        return self.trail.lines

    @property
    def audit_added(self) -> int:
        """Lines added to the trail in this life (a view's version moves with it, also on a full trail)."""
        return self.trail.added

    def add_audit(self, line: dict[str, Any], *, by_height: bool = False) -> None:
        """A line for the audit trail (`operator_audit.OperatorAudit.add`): the node's records by height."""
        self.trail.add(line, by_height=by_height)

    @contextlib.contextmanager
    def acting(self, user: str, action: str) -> Iterator[None]:
        """An action taken outside the console (the REST API) is recorded as the console's own are: one at a
        time, and sealed with an `operator_action` naming `user` and the transactions it caused - also when it
        fails after it wrote something (a failed switching still leaves its plan and steps on chain)."""
        with self.lock:
            before = self.trail.pending()
            try:
                yield
            finally:
                if self.trail.pending() - before:
                    self.trail.seal(user, action, before)

    # -- reconfiguration plans
    def propose_plan(self, user: str) -> Plan:
        before = self.grid.check(self.grid.open_branches())
        target = tuple(sorted(self.planner(self.grid.feeder, *self._injections_mw())))
        after = self.grid.check(target)
        if not after["ok"] or not after["radial"]:
            raise OperationError(f"the planner's configuration {list(target)} is not radial or islands load")
        with self.lock:
            plan_id = self._next_id("plan")
            ops = self._plan(plan_id, target).operations if target != tuple(before["open_branches"]) else ()
            for other in self.plans.values():
                if other.status == "pending":
                    other.status = "superseded"
            plan = Plan(plan_id, user, before, after, [{"branch": o.branch, "close": o.close} for o in ops])
            if not ops:
                plan.status = "nothing to do"
            self._keep_plans({**self.plans, plan.id: plan})
        return plan

    def _keep_plans(self, plans: dict[str, Plan]) -> None:
        """`plans` less the oldest decided ones beyond `plans_kept`; an undecided plan is never dropped."""
        decided = [p.id for p in plans.values() if p.status not in UNDECIDED]
        dropped = set(decided[: max(0, len(decided) - self.plans_kept)])
        self.plans = {k: p for k, p in plans.items() if k not in dropped}

    def approve_plan(self, plan_id: str, user: str) -> Plan:
        with self.lock:
            try:
                return self._approve_plan(plan_id, user)
            finally:  # the plan was decided, or superseded by a move of the switches
                self._keep_plans(self.plans)

    def _approve_plan(self, plan_id: str, user: str) -> Plan:
        before = self.trail.pending()
        plan = self.plans.get(plan_id)
        if plan is None:
            raise OperationError(f"no plan {plan_id!r}")
        if plan.status != "pending":
            raise OperationError(f"plan {plan_id} is {plan.status}, not pending")
        if tuple(sorted(plan.before["open_branches"])) != tuple(sorted(self.dso.open_set)):
            plan.status = "superseded"
            raise OperationError(f"the switches moved since {plan_id} was computed; propose a new plan")
        switching = self._plan(by_label(plan.id, user), tuple(plan.after["open_branches"]))
        plan.approved_by, plan.status = user, "executing"
        try:
            self.dso.switching.submit(switching)  # records the switching_plan (auto mode runs it at once)
            result = self.dso.switching.results.get(switching.plan_id)
            if result is None:
                result = self.dso.switching.approve(switching.plan_id)
        except ChainRejected as exc:
            refused = self._refused(user, f"approve and execute {plan.id}", before, exc)
            plan.status, plan.alarm = "failed", str(refused)
            raise refused from None
        except Exception as exc:  # not left `executing` for good (then never pruned): failed, and why
            plan.status = "failed"
            plan.alarm = (
                f"{plan.id} failed while it ran: {type(exc).__name__}: {exc}; its relays may have moved: "
                "the relay watch reads them after the interval"
            )
            self.grid.alarm(plan.alarm)
            raise
        self.dso.open_set = result.final_open
        plan.steps = [_step(s) for s in result.steps]
        plan.status, plan.alarm = ("executed", None) if result.ok else ("failed", result.alarm)
        if result.alarm:
            self.grid.alarm(f"{switching.plan_id}: {result.alarm}")
        plan.chain.append(
            self.trail.seal(user, outcome(f"approve and execute {plan.id}", result.ok, result.alarm), before)
        )
        return plan

    # -- manual switching with confirmation
    def preview_switch(self, user: str, branch: int, close: bool) -> dict[str, Any]:
        if branch not in {b.number for b in self.grid.feeder.branches}:
            raise OperationError(f"no branch {branch}")
        open_now = set(self.grid.open_branches())
        if (branch not in open_now) == close:
            raise OperationError(f"branch {branch} is already {'closed' if close else 'open'}")
        verdict = self.grid.check(open_now - {branch} if close else open_now | {branch})
        token = None
        if verdict["ok"]:
            token = secrets.token_urlsafe(16)
            now = time.monotonic()
            live = {k: v for k, v in self._confirmations.items() if v[3] > now}
            self._confirmations = live | {token: (user, branch, close, now + CONFIRM_TTL_S)}
        keep = ("ok", "reason", "radial", "losses_kw", "vmin_pu", "max_loading")
        return {"branch": branch, "close": close, "confirm": token} | {k: verdict.get(k) for k in keep}

    def operate_switch(self, user: str, branch: int, close: bool, confirm: str) -> dict[str, Any]:
        entry = self._confirmations.pop(confirm, None)
        if entry is None or entry[3] < time.monotonic():
            raise OperationError(
                "no such confirmation (expired or already used): preview the operation again"
            )
        if entry[:3] != (user, branch, close):
            raise OperationError("the confirmation is for another operation or user")
        with self.lock:
            before = self.trail.pending()
            label = by_label(self._next_id("manual"), user)
            open_now = tuple(sorted(self.dso.open_set))
            open_after = tuple(sorted(set(open_now) - {branch} if close else set(open_now) | {branch}))
            if not self.grid.check(open_after)["ok"]:  # the network may have moved since the preview
                raise OperationError("interlock: the operation would now island load")
            plan = SwitchingPlan(label, self.interval, open_now, open_after, (RelayOperation(branch, close),))
            executor = self.dso.switching.executor
            action = f"{'close' if close else 'open'} branch {branch}"
            try:
                executor.recorder.plan(plan)
                result = executor.execute(plan)  # command, read-back; records the switching_result
            except ChainRejected as exc:
                raise self._refused(user, action, before, exc) from None
            self.dso.open_set = result.final_open
            if result.alarm:
                self.grid.alarm(f"{label}: {result.alarm}")
            chain = self.trail.seal(user, outcome(action, result.ok, result.alarm), before)
        return {
            "ok": result.ok,
            "steps": [_step(s) for s in result.steps],
            "chain": [chain],
            "plan": label,
            "alarm": result.alarm,
        }

    # -- the relays' reported positions: read, and adopt them (after a refusal, a ROLLBACK FAILED, a restart)
    def read_relays(self) -> dict[str, Any]:
        """What every relay reports now beside the DSO's open set (`relay_adoption.relay_view`)."""
        return relay_adoption.relay_view(self)

    def adopt_relays(self, user: str, expected_open: tuple[int, ...]) -> dict[str, Any]:
        """Adopt what the relays report as the DSO's open set (`relay_adoption.adopt_relays`); refused: why."""
        try:
            return relay_adoption.adopt_relays(self, user, expected_open)
        except AdoptRefused as exc:
            raise OperationError(str(exc)) from None

    # -- enrolment (the DSO engineer's EnrolmentService; requests arrive signed over /api/dso/enrolment)
    def enrolment_view(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.dso.enrolment.enrolments.values()]

    def issue_enrolment_token(self, user: str, label: str | None) -> dict[str, Any]:
        """A one-time enrolment token (for the MG `label` only, when given), shown once to the operator who asked:
        the DSO keeps its hash (`services.enrolment_tokens`, as `peergrid-dso enrolment token create` does)."""
        from peergrid_dso.services.enrolment_tokens import TokenStoreError

        try:
            token = self.dso.enrolment.issue_token(label)
        except (ValueError, TokenStoreError) as exc:
            raise OperationError(f"no token issued: {exc}") from None
        log.info("enrolment token issued by %s for %s", user, label or "any MG")
        return {"token": token, "label": label}

    def enrolment_action(self, mgmc_hex: str, verb: str, user: str) -> dict[str, Any]:
        try:
            mgmc = bytes.fromhex(mgmc_hex)
        except ValueError:
            raise OperationError("the MGMC key must be hex") from None
        with self.lock:
            before = self.trail.pending()
            try:
                e = (self.dso.enrolment.approve if verb == "approve" else self.dso.enrolment.revoke)(
                    mgmc, user
                )
            except (
                EnrolmentNotKept
            ) as exc:  # done on the chain: recorded as done, then why the file missed it
                with contextlib.suppress(Exception):
                    self.trail.seal(
                        user, f"{verb} enrolment of {mgmc_hex[:16]} (not kept in the enrolment file)", before
                    )
                raise OperationError(str(exc)) from None
            except EnrolmentRefused as exc:
                raise OperationError(str(exc)) from None
            except Exception as exc:  # a chain refused or timed out half-way: what landed is still named
                with contextlib.suppress(Exception):
                    self.trail.seal(user, f"{verb} enrolment of {mgmc_hex[:16]} (incomplete)", before)
                raise OperationError(f"{verb} incomplete, repeat it: {exc}") from None
            label = e.label[: LABEL_MAX - 20]
            view: dict[str, Any] = e.to_json()
            return view | {"chain": self.trail.seal(user, f"{verb} enrolment of {label}", before)}


def _step(s: Any) -> dict[str, Any]:
    return {"branch": s.branch, "close": s.close, "ok": s.ok, "why": s.detail or None, "rollback": s.rollback}


__all__ = [  # AUDIT_KEPT and outcome moved to operator_audit; importers of operations still find them
    "AUDIT_KEPT",
    "CONFIRM_TTL_S",
    "PLANS_KEPT_DECIDED",
    "OperationError",
    "Operations",
    "Plan",
    "milp_planner",
    "outcome",
]
