"""REST API of the DSO services under /api/dso: thin routes that validate, delegate, and map errors to 4xx.

Every bad request gets a 4xx with a `detail` saying why (pydantic validation is 422); the services raise
typed errors (`EnrolmentRefused`, `SwitchingPlanError`, `SecurityInfeasible`, ...) that are mapped here.
Heavy work (power flow, MILP) runs in FastAPI's thread pool (plain `def` routes). Injections are accepted
only signed by an enrolled, authorised MGMC (`services.injections`); refusals are counted and listed at
GET /api/dso/injections/refusals.
The switching plans (/api/dso/plans: executed, and the DSO's open set judged and set, under the relays' lock,
as the console's own operations are) are `routes.dso_plans`, mounted by `install_dso_api` with this router.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from peergrid_dso.services.acvalidate import ValidationMismatch, cross_check, validate_ac
from peergrid_dso.services.container import DsoServices
from peergrid_dso.services.enrolment import EnrolmentRefused
from peergrid_dso.services.enrolment_file import EnrolmentFileError
from peergrid_dso.services.enrolment_tokens import TokenStoreError
from peergrid_dso.services.injections import InjectionGate, InjectionRefused
from peergrid_dso.services.powerflow import IslandedLoadError
from peergrid_dso.services.reconfiguration import ReconfigurationInfeasible, SolverFailure, reconfigure
from peergrid_dso.services.security import (
    MgRange,
    OpfNumericalFailure,
    SecurityInfeasible,
    check_security,
    contracts_for,
    minimal_adjustment,
)

router = APIRouter(prefix="/api/dso", tags=["dso"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnrolmentRequest(Strict):
    token: str = Field(min_length=1, max_length=128)
    mgmc: str = Field(pattern=r"^[0-9a-f]{64}$")
    anonym: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: str = Field(min_length=1, max_length=64)
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")


class TokenIn(Strict):
    label: str | None = Field(None, min_length=1, max_length=64)  # the MG the token is for; None: any


class InjectionIn(Strict):
    """An MGMC's signed equivalent injection (see `services.injections`): integer W and var."""

    mgmc: str = Field(pattern=r"^[0-9a-f]{64}$")
    interval: int = Field(ge=0, le=2**40)
    revision: int = Field(0, ge=0, le=10**6)
    p_w: int = Field(ge=-(10**9), le=10**9)
    q_var: int = Field(0, ge=-(10**9), le=10**9)
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")


class ReconfigurationIn(Strict):
    vmin_pu: float = Field(0.90, gt=0.5, lt=1.0)
    prove_s: float = Field(0.0, ge=0.0, le=300.0)  # time to prove a loss lower bound (0: a fast answer)
    target_gap: float = Field(1e-3, gt=0.0, lt=1.0)


class OpfIn(Strict):
    interval: int = Field(ge=0)
    p_min_mw: float = Field(-5.0, ge=-50, le=50)
    p_max_mw: float = Field(5.0, ge=-50, le=50)


def get_dso(request: Request) -> DsoServices:
    services: DsoServices = request.app.state.dso
    return services


def _key(hex_key: str) -> bytes:
    try:
        key = bytes.fromhex(hex_key)
    except ValueError:
        raise HTTPException(400, "key must be hex") from None
    if len(key) != 32:
        raise HTTPException(400, "key must be 32 bytes")
    return key


def _token_store_down(exc: TokenStoreError) -> HTTPException:
    # the DSO's own file is damaged: never read as no token (every MGMC would be refused as unknown)
    return HTTPException(503, f"the enrolment token store cannot be used: {exc}")


@router.post("/enrolment/tokens", status_code=201)
def issue_token(body: TokenIn | None = None, dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    label = None if body is None else body.label
    try:
        return {"token": dso.enrolment.issue_token(label), "label": label}
    except TokenStoreError as exc:
        raise _token_store_down(exc) from None


@router.post("/enrolment", status_code=201)
def enrol(body: EnrolmentRequest, dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    try:
        e = dso.enrolment.request(
            body.token,
            bytes.fromhex(body.mgmc),
            bytes.fromhex(body.anonym),
            body.label,
            bytes.fromhex(body.signature),
        )
    except EnrolmentRefused as exc:
        raise HTTPException(403, str(exc)) from None
    except TokenStoreError as exc:
        raise _token_store_down(exc) from None
    except EnrolmentFileError as exc:  # not kept, so not taken: 503, and the MGMC asks again
        raise HTTPException(503, f"the enrolment queue cannot be kept: {exc}") from None
    return e.to_json()


@router.get("/enrolment")
def enrolments(dso: DsoServices = Depends(get_dso)) -> list[dict[str, Any]]:
    # every MG's label beside its anonym: a viewer's session where the guard is on (`auth.http`)
    return [e.to_json() for e in dso.enrolment.enrolments.values()]


@router.get("/enrolment/{mgmc}")
def enrolment_status(mgmc: str, dso: DsoServices = Depends(get_dso)) -> dict[str, str]:
    """One MGMC's status, for the MGMC itself (`peergrid_edge.enrolment`), open: it names no anonym and no
    label, and only who knows the identity key asks for it."""
    e = dso.enrolment.enrolments.get(_key(mgmc))
    if e is None:
        raise HTTPException(404, "no enrolment for this MGMC")
    return {"mgmc": e.mgmc.hex(), "status": e.status}


def acting_user(request: Request) -> str:
    """Who acts: the user of the console session the request carries (an operator's: the DSO API guard
    checked it), else `unnamed` - recorded as such on chain, never guessed."""
    from peergrid_dso.auth.http import COOKIE
    from peergrid_dso.services.enrolment import UNNAMED

    console = getattr(request.app.state, "console", None)
    found = console.sessions.get(request.cookies.get(COOKIE)) if console is not None else None
    return found.user.name if found is not None else UNNAMED


@router.post("/enrolment/{mgmc}/{action}")
def enrolment_action(
    mgmc: str, action: str, request: Request, dso: DsoServices = Depends(get_dso)
) -> dict[str, Any]:
    if action not in ("approve", "revoke"):
        raise HTTPException(404, f"unknown action {action!r} (approve or revoke)")
    act = dso.enrolment.approve if action == "approve" else dso.enrolment.revoke
    try:
        e = act(_key(mgmc), acting_user(request))
    except EnrolmentRefused as exc:
        raise HTTPException(409, str(exc)) from None
    return e.to_json()


_gate_lock = threading.Lock()


def injection_gate(dso: DsoServices) -> InjectionGate:
    with _gate_lock:
        if dso.injection_gate is None:

            def authorised_mg(key: bytes) -> str | None:
                e = dso.enrolment.enrolments.get(key)
                ok = e is not None and e.status == "authorised" and e.label in dso.feeder.mg_buses
                return e.label if ok and e is not None else None

            dso.injection_gate = InjectionGate(dso.chain.genesis.chain, authorised_mg)
        gate: InjectionGate = dso.injection_gate
        return gate


_INJECTION_BODY = {
    "content": {"application/json": {"schema": InjectionIn.model_json_schema()}},
    "required": True,
}


@router.post("/injections", status_code=201, openapi_extra={"requestBody": _INJECTION_BODY})
async def post_injection(
    request: Request, response: Response, dso: DsoServices = Depends(get_dso)
) -> dict[str, Any]:
    """Signed by an enrolled MGMC's identity key; refusals are 4xx with a reason, and counted (the body is
    parsed here, not by FastAPI, so that malformed ones are counted too; its schema is in the OpenAPI)."""
    gate = injection_gate(dso)
    try:
        body = InjectionIn.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise _refused(gate.refuse(422, "malformed", f"{where}: {first.get('msg', 'invalid')}")) from None
    try:
        report, new = gate.accept(
            bytes.fromhex(body.mgmc), body.interval, body.revision, body.p_w, body.q_var,
            bytes.fromhex(body.signature),
        )  # fmt: skip
    except InjectionRefused as exc:
        raise _refused(exc) from None
    if new:
        dso.injections.setdefault(report.interval, {})[report.mg] = (report.p_w / 1e6, report.q_var / 1e6)
    else:
        response.status_code = 200  # the identical report again: accepted before, nothing changes
    return {
        "interval": report.interval,
        "mg": report.mg,
        "revision": report.revision,
        "accepted": True,
        "new": new,
    }


def _refused(exc: InjectionRefused) -> HTTPException:
    return HTTPException(exc.status, f"{exc.category}: {exc.reason}")


@router.get("/injections/refusals")
def injection_refusals(dso: DsoServices = Depends(get_dso)) -> dict[str, int]:
    return dict(injection_gate(dso).refusals)


def _injections(dso: DsoServices, interval: int | None) -> dict[str, tuple[float, float]]:
    given = dso.injections.get(interval, {}) if interval is not None else {}
    return {mg: given.get(mg, (0.0, 0.0)) for mg in dso.feeder.mg_buses}


@router.get("/network")
def network(interval: int | None = None, dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    check = check_security(dso.feeder, dso.open_set, _injections(dso, interval))
    return {
        "feeder": dso.feeder.name,
        "open_branches": list(dso.open_set),
        "mg_buses": {mg: dso.feeder.bus_ids[i] for mg, i in dso.feeder.mg_buses.items()},
        "secure": check.secure,
        "violations": [str(v) for v in check.violations],
        "vmin_pu": check.vmin_pu,
        "vmax_pu": check.vmax_pu,
        "max_loading": check.max_loading,
        "losses_kw": check.losses_kw,
    }


@router.post("/reconfiguration")
def run_reconfiguration(body: ReconfigurationIn, dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    try:
        r = reconfigure(dso.feeder, vmin_pu=body.vmin_pu, prove_s=body.prove_s, target_gap=body.target_gap)
    except (ReconfigurationInfeasible, IslandedLoadError) as exc:
        raise HTTPException(422, f"infeasible: {exc}") from None
    except SolverFailure as exc:
        raise HTTPException(503, f"solver failure: {exc}") from None
    check = validate_ac(dso.feeder, r.open_branches)  # pandapower's Newton-Raphson has the last word
    try:
        cross_check(r.losses_kw, r.vmin_pu, check)
    except ValidationMismatch as exc:
        raise HTTPException(500, str(exc)) from None
    dso.last_reconfiguration = {
        "open_branches": list(r.open_branches), "losses_kw": r.losses_kw, "vmin_pu": r.vmin_pu,
        "initial_losses_kw": r.initial_losses_kw, "seconds": r.seconds, "pandapower_losses_kw": check.losses_kw,
        "bound_kw": r.bound_kw, "gap": r.gap, "proven": r.proven, "proof_seconds": r.proof_seconds,
    }  # fmt: skip
    return dso.last_reconfiguration


@router.get("/reconfiguration")
def last_reconfiguration(dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    if dso.last_reconfiguration is None:
        raise HTTPException(404, "no reconfiguration has run yet")
    return dso.last_reconfiguration


@router.post("/opf")
def run_opf(body: OpfIn, dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    if body.p_min_mw > body.p_max_mw:
        raise HTTPException(422, "p_min_mw must not exceed p_max_mw")
    current = _injections(dso, body.interval)
    ranges = {mg: MgRange(body.p_min_mw, body.p_max_mw) for mg in current}
    try:
        target = minimal_adjustment(dso.feeder, dso.open_set, current, ranges)
    except SecurityInfeasible as exc:
        raise HTTPException(422, str(exc)) from None
    except OpfNumericalFailure as exc:
        raise HTTPException(503, f"numerical failure: {exc}") from None
    contracts = contracts_for(body.interval, current, target, reason="network limits")
    # Each contract goes on the DSO chain sealed to the MG's anonym, for MGs enrolled under their MG id.
    anonyms = {e.label: e.anonym for e in dso.enrolment.enrolments.values() if e.status == "authorised"}
    sent = []
    for c in contracts:
        if c.mg in anonyms:
            dso.recorder.adjustment(anonyms[c.mg], body.interval, c.body())
            sent.append(c.mg)
    dso.last_opf = {
        "interval": body.interval,
        "injections": target,
        "contracts": [c.body() for c in contracts],
        "sent_to": sent,
    }
    return dso.last_opf


@router.get("/opf")
def last_opf(dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    if dso.last_opf is None:
        raise HTTPException(404, "no OPF has run yet")
    return dso.last_opf


@router.get("/ledger")
def ledger(dso: DsoServices = Depends(get_dso)) -> dict[str, Any]:
    records = [{"kind": kind, "body": _jsonable(body)} for kind, body in dso.recorder.submitted]
    return {"chain": "dso-local", "height": dso.chain.height, "records": records}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def install_dso_api(app: FastAPI) -> None:
    from peergrid_dso.routes.disputes import install_disputes_api
    from peergrid_dso.routes.dso_plans import router as plans_router

    app.include_router(router)
    app.include_router(plans_router)  # /api/dso/plans: switching plans under the relays' lock
    install_disputes_api(app)  # /api/dso/disputes: how the DSO settled disputed trades
