"""Switching plans over the REST API (/api/dso/plans): propose one, list them, approve one.

Promises: a plan is made from the DSO's open set (`plan_switching`; a branch the feeder does not have, or no safe
order, is 422), then submitted, executed and the DSO's open set set under the relays' lock (the console's
`Operations.acting`, the lock the closed loop and the node's relay watch hold), and recorded there as an
operator's action (who: the console session's user, `dso.acting_user`); a plan made from an open set another
writer moved while this one waited for the lock is refused with 409 before it is recorded or run (review31
R31-4), and an awaiting plan whose start no longer stands is withdrawn at approval. Where the relays ended is
written back only where a step ran (a plan refused before any step says nothing of them, review27 R27-4). A
record the DSO chain refuses is 409 with its reason, never a 500. Split out of `routes.dso`, which mounts it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import Field

from peergrid_dso.routes.dso import Strict, acting_user, get_dso
from peergrid_dso.services.container import DsoServices
from peergrid_dso.services.dso_chain import ChainRejected
from peergrid_dso.services.switching import SwitchingPlanError, plan_switching

router = APIRouter(prefix="/api/dso", tags=["dso"])


class PlanIn(Strict):
    target_open: list[int] = Field(min_length=1, max_length=500)
    interval: int = Field(0, ge=0)


def _plan_json(plan: Any) -> dict[str, Any]:
    return {
        "plan": plan.plan_id, "interval": plan.interval, "from_open": list(plan.from_open), "to_open": list(plan.to_open),
        "operations": [{"branch": op.branch, "close": op.close} for op in plan.operations],
    }  # fmt: skip


def recorded(request: Request, action: str) -> contextlib.AbstractContextManager[None]:
    """The console's operator record around a REST action: who (the session's user) and what it caused."""
    console = getattr(request.app.state, "console", None)
    if console is None:
        return contextlib.nullcontext()
    acting: contextlib.AbstractContextManager[None] = console.ops.acting(acting_user(request), action)
    return acting


@router.post("/plans", status_code=201)
def create_plan(body: PlanIn, request: Request, dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    for number in body.target_open:
        if not 1 <= number <= len(dso.feeder.branches):
            raise HTTPException(422, f"no branch {number}")
    plan_id = f"plan-{next(dso.plan_ids)}"
    try:
        plan = plan_switching(
            dso.feeder, dso.open_set, body.target_open, plan_id=plan_id, interval=body.interval
        )
    except SwitchingPlanError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        with recorded(request, f"REST plan {plan_id} to open {list(plan.to_open)}"):
            # The plan was made from the open set read before the relays' lock was ours: another plan or an
            # adoption may have moved the network since (review31 R31-4), and a stale plan is refused by the
            # executor with its old starting open set as where the relays ended. Judged here, as approve does.
            if tuple(sorted(plan.from_open)) != tuple(sorted(dso.open_set)):
                raise HTTPException(409, "the network changed while this plan was made; not submitted")
            result = dso.switching.submit(plan)
            # Where the relays ended, also after a rollback (review27 R27-4), under the relays' lock; a plan
            # refused before any step (no steps) read the relays off its start and says nothing of where they are.
            if result is not None and result.steps:
                dso.open_set = result.final_open
    except ChainRejected as exc:  # e.g. a plan id the chain already holds: the reason, never a 500
        raise HTTPException(409, f"the DSO chain refused plan {plan_id}: {exc}") from None
    return {
        **_plan_json(plan),
        "status": "pending" if result is None else ("done" if result.ok else "failed"),
    }


@router.get("/plans")
def plans(dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    return {
        "pending": [_plan_json(p) for p in dso.switching.pending.values()],
        "done": [
            {"plan": r.plan_id, "ok": r.ok, "final_open": list(r.final_open), "alarm": r.alarm}
            for r in dso.switching.results.values()
        ],
    }


@router.post("/plans/{plan_id}/approve")
def approve_plan(plan_id: str, request: Request, dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    with recorded(request, f"REST approve and execute {plan_id}"):  # the open set judged and set under it
        plan = dso.switching.pending.get(plan_id)
        if plan is None:
            raise HTTPException(404, f"no plan {plan_id!r} awaiting approval")
        if tuple(sorted(plan.from_open)) != tuple(sorted(dso.open_set)):
            dso.switching.pending.pop(plan_id)
            raise HTTPException(409, "the network changed since this plan was made; plan withdrawn")
        result = dso.switching.approve(plan_id)
        dso.open_set = result.final_open
    steps = [
        {"branch": s.branch, "close": s.close, "ok": s.ok, "detail": s.detail, "rollback": s.rollback}
        for s in result.steps
    ]
    return {
        "plan": plan_id,
        "ok": result.ok,
        "final_open": list(result.final_open),
        "alarm": result.alarm,
        "steps": steps,
    }
