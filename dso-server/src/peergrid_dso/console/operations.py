"""Operator actions: reconfiguration plans (propose, approve-and-execute), manual switching with a
confirmation step, and the MGMC enrolment queue (approve, revoke). Each action is recorded on the DSO chain.

Promises: a plan is computed by the DSO engineer's `reconfigure` for the present injections and shown with
before/after losses and voltages; approving records a `switching_plan` labelled with the approver, then runs
its steps make-before-break (close one tie, open one branch) with every intermediate state checked so no load
bus is ever de-energised; a step whose read-back fails rolls back the steps already done, raises an alarm, and
the `switching_result` records what happened. A manual operation is first previewed (what it would do to the
network) and runs only with the one-time confirmation token of that preview, from the same user, within
`CONFIRM_TTL_S`; an operation that would island load is refused (interlock). Callers check roles.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from peergrid_dso.console.chains import ActionRecorder, by_label, lab_key
from peergrid_dso.console.grid import GridView
from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.powerflow import net_injection_mw
from peergrid_dso.services.reconfiguration import ReconfigurationInfeasible, SolverFailure, reconfigure

CONFIRM_TTL_S = 120.0


class OperationError(ValueError):
    """An operator action that cannot be done now; the message says why (HTTP 409)."""


@dataclass
class Plan:
    id: str
    created_by: str
    before: dict[str, Any]
    after: dict[str, Any]
    actions: list[dict[str, Any]]
    status: str = "pending"  # pending -> executed | failed | superseded
    approved_by: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    chain: list[dict[str, Any]] = field(default_factory=list)

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
        }


Planner = Callable[[Feeder, np.ndarray, np.ndarray], tuple[int, ...]]


def milp_planner(feeder: Feeder, p_mw: np.ndarray, q_mvar: np.ndarray) -> tuple[int, ...]:
    """The DSO engineer's loss-minimising reconfiguration: the branches to leave open."""
    try:
        return reconfigure(feeder, p_inj_mw=p_mw, q_inj_mvar=q_mvar, time_limit_s=30.0).open_branches
    except (ReconfigurationInfeasible, SolverFailure) as exc:
        raise OperationError(f"no plan: {exc}") from None


class Operations:
    def __init__(
        self, grid: GridView, recorder: ActionRecorder, interval: int = 0, planner: Planner = milp_planner
    ) -> None:
        self.grid = grid
        self.planner = planner
        self.recorder = recorder
        self.interval = interval
        self.plans: dict[str, Plan] = {}
        self._confirmations: dict[str, tuple[str, int, bool, float]] = {}
        self._seq = 0
        self._lock = threading.Lock()  # one switching operation at a time
        self.enrolment = Enrolment(recorder, grid.feeder.name, sorted(grid.feeder.mg_buses))

    def _next(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq}"

    # -- reconfiguration plans
    def propose_plan(self, user: str) -> Plan:
        g = self.grid
        before = g.check(g.open_branches())
        p, q = net_injection_mw(g.feeder, {m: (kw / 1000, 0.0) for m, kw in g.injections_kw.items()})
        target = self.planner(g.feeder, p, q)
        after = g.check(target)
        if not after["ok"] or not after["radial"]:
            raise OperationError(f"the planner's configuration {target} is not radial or islands load")
        now_open, then_open = set(before["open_branches"]), set(target)
        actions = [{"branch": b, "close": True} for b in sorted(now_open - then_open)]
        actions += [{"branch": b, "close": False} for b in sorted(then_open - now_open)]
        with self._lock:
            for other in self.plans.values():
                if other.status == "pending":
                    other.status = "superseded"
            plan = Plan(self._next("plan"), user, before, after, actions)
            if not actions:
                plan.status = "nothing to do"
            self.plans[plan.id] = plan
        return plan

    def approve_plan(self, plan_id: str, user: str) -> Plan:
        with self._lock:
            plan = self.plans.get(plan_id)
            if plan is None:
                raise OperationError(f"no plan {plan_id!r}")
            if plan.status != "pending":
                raise OperationError(f"plan {plan_id} is {plan.status}, not pending")
            if tuple(sorted(plan.before["open_branches"])) != self.grid.open_branches():
                plan.status = "superseded"
                raise OperationError(f"the switches moved since {plan_id} was computed; propose a new plan")
            plan.approved_by = user
            plan.status = "executing"
            label = by_label(plan.id, user)
            plan.chain.append(self._record_plan(user, "approve plan", label, plan.actions))
            ok = self._execute(plan.actions, plan.steps)
            plan.status = "executed" if ok else "failed"
            plan.chain.append(self._record_result(user, "plan result", label, plan.actions, plan.steps))
            return plan

    def _steps_order(self, actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Make before break: each close is followed by the open that restores a radial feeder."""
        closes = [a for a in actions if a["close"]]
        opens = [a for a in actions if not a["close"]]
        order: list[dict[str, Any]] = []
        open_now = set(self.grid.open_branches())
        for c in closes:
            open_now.discard(c["branch"])
            order.append(c)
            for o in opens:
                trial = open_now | {o["branch"]}
                if self.grid.check(trial).get("radial"):
                    order.append(o)
                    open_now = trial
                    opens.remove(o)
                    break
        return order + opens

    def _execute(self, actions: list[dict[str, Any]], steps: list[dict[str, Any]]) -> bool:
        done: list[dict[str, Any]] = []
        for action in self._steps_order(actions):
            open_after = set(self.grid.open_branches())
            (open_after.discard if action["close"] else open_after.add)(action["branch"])
            verdict = self.grid.check(open_after)
            if not verdict["ok"]:
                steps.append(action | {"ok": False, "why": f"interlock: {verdict['reason']}"})
                self._rollback(done, steps)
                return False
            confirmed = self.grid.switchgear.operate(action["branch"], action["close"])
            steps.append(action | {"ok": confirmed, "why": None if confirmed else "read-back failed"})
            if not confirmed:
                self.grid.alarm(f"branch {action['branch']}: switch did not confirm; plan rolled back")
                self._rollback(done, steps)
                return False
            done.append(action)
        return True

    def _rollback(self, done: list[dict[str, Any]], steps: list[dict[str, Any]]) -> None:
        for action in reversed(done):
            ok = self.grid.switchgear.operate(action["branch"], not action["close"])
            steps.append(
                {"branch": action["branch"], "close": not action["close"], "ok": ok, "why": "rollback"}
            )
            if not ok:
                self.grid.alarm(f"branch {action['branch']}: rollback failed; check the switch on site")

    def _record_plan(
        self, user: str, action: str, label: str, actions: list[dict[str, Any]]
    ) -> dict[str, Any]:
        body = {
            "plan": label,
            "interval": self.interval,
            "actions": [{"switch": f"branch-{a['branch']}", "close": a["close"]} for a in actions],
        }
        return self.recorder.record(user, action, [("switching_plan", body)])

    def _record_result(
        self, user: str, action: str, label: str, actions: list[dict[str, Any]], steps: list[dict[str, Any]]
    ) -> dict[str, Any]:
        states = self.grid.switchgear.states()
        wanted = {a["branch"] for a in actions}
        failed = {s["branch"] for s in steps if not s["ok"] and s.get("why") != "rollback"}
        results = [
            {"switch": f"branch-{b}", "closed": bool(states.get(b)), "ok": b not in failed}
            for b in sorted(wanted)
        ]
        return self.recorder.record(user, action, [("switching_result", {"plan": label, "results": results})])

    # -- manual switching with confirmation
    def preview_switch(self, user: str, branch: int, close: bool) -> dict[str, Any]:
        if branch not in {b.number for b in self.grid.feeder.branches}:
            raise OperationError(f"no branch {branch}")
        open_now = set(self.grid.open_branches())
        if (branch not in open_now) == close:
            raise OperationError(f"branch {branch} is already {'closed' if close else 'open'}")
        after = open_now - {branch} if close else open_now | {branch}
        verdict = self.grid.check(after)
        token = None
        if verdict["ok"]:
            token = secrets.token_urlsafe(16)
            self._confirmations = {
                k: v for k, v in self._confirmations.items() if v[3] > time.monotonic()
            } | {token: (user, branch, close, time.monotonic() + CONFIRM_TTL_S)}
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
        with self._lock:
            label = by_label(self._next("manual"), user)
            actions = [{"branch": branch, "close": close}]
            chain = [self._record_plan(user, "manual switching", label, actions)]
            steps: list[dict[str, Any]] = []
            ok = self._execute(actions, steps)
            chain.append(self._record_result(user, "manual switching result", label, actions, steps))
        return {"ok": ok, "steps": steps, "chain": chain, "plan": label}


class Enrolment:
    """The lab's enrolment queue: each configured MG asks once; an operator approves or revokes it.

    Stand-in for the DSO engineer's enrolment service (signed requests with one-time tokens, issue 8)."""

    def __init__(self, recorder: ActionRecorder, feeder: str, mgs: list[str]) -> None:
        self.recorder = recorder
        self.requests = {
            mg: {
                "mg": mg,
                "mgmc": lab_key(feeder, f"mgmc-{mg}").public.hex(),
                "anonym": lab_key(feeder, f"anonym-{mg}").public.hex(),
                "status": "pending",
                "by": None,
            }
            for mg in mgs
        }

    def approve(self, mg: str, user: str) -> dict[str, Any]:
        req = self._request(mg)
        if req["status"] == "approved":
            raise OperationError(f"{mg} is already approved")
        txs: list[tuple[str, dict[str, Any]]]
        if req["status"] == "pending":
            body: dict[str, Any] = {
                "mgmc": bytes.fromhex(req["mgmc"]),
                "anonym": bytes.fromhex(req["anonym"]),
                "label": by_label(f"{mg} approved", user),
            }
            txs = [("enrol", body)]
        else:  # revoked before: authorise both keys again
            txs = [
                ("authorise", {"key": bytes.fromhex(req[k]), "authorised": True}) for k in ("mgmc", "anonym")
            ]
        entry = self.recorder.record(user, f"approve enrolment of {mg}", txs)
        req.update(status="approved", by=user)
        return req | {"chain": entry}

    def revoke(self, mg: str, user: str) -> dict[str, Any]:
        req = self._request(mg)
        if req["status"] != "approved":
            raise OperationError(f"{mg} is {req['status']}; only an approved MGMC can be revoked")
        txs = [("authorise", {"key": bytes.fromhex(req[k]), "authorised": False}) for k in ("mgmc", "anonym")]
        entry = self.recorder.record(user, f"revoke {mg}", txs)
        req.update(status="revoked", by=user)
        return req | {"chain": entry}

    def _request(self, mg: str) -> dict[str, Any]:
        if mg not in self.requests:
            raise OperationError(f"no enrolment request from {mg!r}")
        return self.requests[mg]

    def view(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.requests.values()]
