"""The operator console's HTTP surface: login/logout/session, static assets, live events (SSE: the feeder
snapshot when it changes, each interval the closed loop finishes, a version of the operations view's plans,
enrolment queue and audit when it changes, the DSO server's connection to the broker when the feed opens and
when it is lost or back: `console.broker_link`), the console-facing JSON for the feeder, market, ledger explorer
and operations.

Promises: every `/console/api` route except login and whoami needs a live session (cookie `pg_session`,
HttpOnly, SameSite=Strict) and refuses a request without one 401, `GET /console/api/session` too (a client
learns by it that its session ended); `GET /console/api/whoami`, the page's opening question, answers 200
`{"authenticated": false}` without one, so a page load before login is no refusal (C3: the browser logged that
401 as an error at every load, and the security log counted it); every state-changing route also needs the session's CSRF token and our own origin; operator
actions need role operator or admin (all checked in `peergrid_dso.auth.http`). Each refusal is a 4xx with a
reason, counted and logged in `SecurityLog`; nothing here raises a 500 on bad input. Routes are thin: they
check, then call `console.operations` / `grid` / `chains`. `install_console(app)` mounts the router and the
security edge.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from peergrid_dso.auth.http import (
    COOKIE,
    admin,
    client_address,
    install_security,
    operator,
    origin_ok,
    refuse,
    session,
    viewer,
)
from peergrid_dso.auth.sessions import Session
from peergrid_dso.console.broker_link import broker_link, told_again
from peergrid_dso.console.operations import OperationError
from peergrid_dso.console.state import ConsoleState

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}
STATIC_NAME = re.compile(r"^[a-z0-9_-]{1,40}\.(js|css|svg|html)$")

router = APIRouter()


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginBody(Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class PreviewBody(Body):
    close: bool


class AdoptBody(Body):
    open_branches: list[int] = Field(max_length=500)  # what the operator was shown (GET .../relays)


class TokenBody(Body):
    label: str | None = Field(None, min_length=1, max_length=64)  # the MG the token is for; None: any


class OperateBody(Body):
    close: bool
    confirm: str = Field(min_length=8, max_length=64)


def console_state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


# ------------------------------------------------------------------------------------------ pages and assets


@router.get("/console", response_class=HTMLResponse)
def console_page() -> str:
    return resources.files("peergrid_dso.console").joinpath("index.html").read_text(encoding="utf-8")


@router.get("/console/static/{name}")
def static_asset(name: str, request: Request) -> Response:
    if not STATIC_NAME.fullmatch(name):
        raise refuse(request, 404, "not_found", "no such asset")
    asset = resources.files("peergrid_dso.console").joinpath("static", name)
    if not asset.is_file():
        raise refuse(request, 404, "not_found", "no such asset")
    suffix = name[name.rindex(".") :]
    return Response(asset.read_bytes(), media_type=STATIC_TYPES[suffix])


# ------------------------------------------------------------------------------------------ sessions


@router.post("/console/api/login")
def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
    state = console_state(request)
    if not origin_ok(request):
        raise refuse(request, 403, "bad_origin", "cross-origin login", body.username)
    keys = (f"user:{body.username}", f"client:{client_address(request)}")
    if state.throttle.blocked(*keys):
        raise refuse(request, 429, "login_throttled", "too many failed logins; wait", body.username)
    user = state.users.authenticate(body.username, body.password)
    if user is None:
        state.throttle.fail(*keys)
        raise refuse(request, 401, "bad_login", "wrong user name or password", body.username)
    state.throttle.clear(*keys)
    s = state.sessions.create(user)
    response.set_cookie(
        COOKIE, s.sid, httponly=True, samesite="strict", secure=state.settings.secure_cookies, path="/"
    )
    return {"user": user.name, "role": user.role, "csrf": s.csrf}


@router.post("/console/api/logout")
def logout(request: Request, response: Response, s: Session = Depends(session)) -> dict[str, Any]:
    console_state(request).sessions.end(s.sid)
    response.delete_cookie(COOKIE, path="/")
    return {"ok": True}


@router.get("/console/api/session")
def whoami(s: Session = Depends(viewer)) -> dict[str, Any]:
    return {"user": s.user.name, "role": s.user.role, "csrf": s.csrf}


@router.get("/console/api/whoami")
def page_session(request: Request) -> dict[str, Any]:
    """What the console page asks as it loads: `{"authenticated": false}` with no live session (the login form
    is the page's, not a refusal), else `/console/api/session`'s answer with `"authenticated": true`. A session
    naming a user removed or changed since login is refused 401 as on every route (counted, logged)."""
    if console_state(request).sessions.get(request.cookies.get(COOKIE)) is None:
        return {"authenticated": False}
    return {"authenticated": True, **whoami(viewer(request, session(request)))}


# ------------------------------------------------------------------------------------------ views


@router.get("/console/api/feeder")
def feeder(request: Request, _: Session = Depends(viewer)) -> dict[str, Any]:
    state = console_state(request)
    state.tick()
    return state.grid.snapshot()


@router.get("/console/api/events")
async def events(request: Request, s: Session = Depends(viewer)) -> StreamingResponse:
    state = console_state(request)

    async def stream() -> AsyncIterator[bytes]:
        last, idle = None, 0.0
        seen = state.intervals[-1] if state.intervals else None
        operations_seen = state.operations_version()
        broker_seen: dict[str, Any] | None = None
        listener = getattr(request.app.state, "health_listener", None)
        loop = getattr(request.app.state, "loop", None)
        yield b"retry: 2000\n\n"
        while not await request.is_disconnected():
            if state.sessions.get(s.sid) is None:
                yield b"event: logout\ndata: {}\n\n"
                return
            latest = state.intervals[-1] if state.intervals else None
            if latest is not seen:  # the closed loop finished an interval: views that show it reload
                seen = latest
                yield f"event: interval\ndata: {json.dumps(latest)}\n\n".encode()
            operations_now = state.operations_version()
            if operations_now != operations_seen:  # a plan, an enrolment, an audit entry: that view reloads
                operations_seen = operations_now
                yield f"event: operations\ndata: {json.dumps({'version': operations_now})}\n\n".encode()
            broker_now = broker_link(listener, loop)
            if told_again(broker_seen, broker_now):  # the header's broker line: lost, or back
                broker_seen = broker_now
                yield f"event: broker\ndata: {json.dumps(broker_now)}\n\n".encode()
            state.tick()
            snap = await asyncio.to_thread(state.grid.snapshot)
            if snap["version"] != last:
                last, idle = snap["version"], 0.0
                yield f"event: feeder\ndata: {json.dumps(snap)}\n\n".encode()
            elif idle >= 15:
                idle = 0.0
                yield b": keep-alive\n\n"
            await asyncio.sleep(state.settings.refresh_s)
            idle += state.settings.refresh_s

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/console/api/market")
def market(request: Request, day: int | None = None, _: Session = Depends(viewer)) -> dict[str, Any]:
    """The Market view of one market day (`console.market_days`): `day`'s intervals, or without it those of the
    day the view follows, with `days` to pick another from; never every interval of a long run at once (U7-10)."""
    if day is not None and day < 0:
        raise refuse(request, 422, "malformed", "day must be 0 or more")
    try:
        return console_state(request).market_view(day)
    except LookupError as exc:
        raise refuse(request, 404, "not_found", str(exc)) from None


@router.get("/console/api/disputes")
def disputes(request: Request, _: Session = Depends(viewer)) -> dict[str, Any]:
    """The disputed trades the DSO node settles and how each was decided (`dispute_node`); none without one."""
    settler = getattr(request.app.state.dso, "disputes", None)
    if settler is None:
        return {"enabled": False, "pending": [], "disputes": []}
    return {"enabled": True, **settler.snapshot()}


def _reported_heads(report: Any, chain_id: str) -> tuple[int, str | None] | None:
    """A node's health report `ledger` entry for one chain: a height, or {"height": h, "head": hex}; None
    when it holds no readable one (not a whole number >= 0: a string, a bool, a float, negative)."""
    ledger = report.get("ledger") if isinstance(report, dict) else None
    entry: Any = ledger.get(chain_id) if isinstance(ledger, dict) else None
    head: Any = None
    if isinstance(entry, dict):
        entry, head = entry.get("height"), entry.get("head")
    if type(entry) is not int or entry < 0:
        return None
    return entry, head if isinstance(head, str) else None


@router.get("/console/api/ledger")
def ledger_heads(request: Request, _: Session = Depends(viewer)) -> dict[str, Any]:
    """Each chain's replicas: this server's and those MGMC health reports name (also chains this server does
    not hold). Replicas agree when every one that reports a head hash at the top height reports the same;
    lower heights are shown as behind. A chain no replica reports a readable head of is not listed: one
    node's malformed report must not break the view for every operator (review21 F8)."""
    state = console_state(request)
    nodes = request.app.state.board.snapshot()["nodes"]
    reported: set[str] = set()
    for entry in nodes.values():
        ledger = entry["report"].get("ledger") if isinstance(entry["report"], dict) else None
        reported |= {c for c in ledger if isinstance(c, str)} if isinstance(ledger, dict) else set()
    sources: dict[str, tuple[str, dict[str, Any] | None]] = {}
    for name, explorer in sorted(state.explorers.items()):
        head = explorer.head()
        sources[name] = (head["chain"], head)
    held = {chain_id for chain_id, _ in sources.values()}
    for chain_id in sorted(reported - held):
        sources[chain_id] = (chain_id, None)
    chains = {}
    for name, (chain_id, held_head) in sources.items():
        replicas = [{"node": "dso (this server)", **held_head}] if held_head else []
        for node, entry in nodes.items():
            seen = _reported_heads(entry["report"], chain_id)
            if seen is not None:
                replicas.append({"node": node, "chain": chain_id, "height": seen[0], "head": seen[1]})
        if not replicas:  # named only in reports that hold no readable head for it
            continue
        top = max(r["height"] for r in replicas)
        heads_at_top = {r["head"] for r in replicas if r["height"] == top and r["head"]}
        for r in replicas:
            r["behind"] = top - r["height"]
        summary = held_head or {"chain": chain_id, "height": top, "head": next(iter(heads_at_top), None)}
        chains[name] = summary | {
            "replicas": replicas,
            "agree": len(heads_at_top) <= 1,
            "held": held_head is not None,
        }
    return {"chains": chains}


def _explorer(request: Request, chain: str) -> Any:
    explorer = console_state(request).explorers.get(chain)
    if explorer is None:
        raise refuse(request, 404, "not_found", f"no chain {chain!r}")
    return explorer


@router.get("/console/api/ledger/{chain}/blocks")
def ledger_blocks(
    chain: str, request: Request, before: int | None = None, limit: int = 20, _: Session = Depends(viewer)
) -> dict[str, Any]:
    if not 1 <= limit <= 100 or (before is not None and before < 1):
        raise refuse(request, 422, "malformed", "limit must be 1..100 and before >= 1")
    return {"blocks": _explorer(request, chain).blocks(before, limit)}


@router.get("/console/api/ledger/{chain}/blocks/{height}")
def ledger_block(chain: str, height: int, request: Request, _: Session = Depends(viewer)) -> dict[str, Any]:
    block = _explorer(request, chain).block(height)
    if block is None:
        raise refuse(request, 404, "not_found", f"no block {height} on {chain}")
    return dict(block)


@router.get("/console/api/ledger/{chain}/proof/{txid}")
def ledger_proof(chain: str, txid: str, request: Request, _: Session = Depends(viewer)) -> dict[str, Any]:
    if not re.fullmatch(r"[0-9a-f]{64}", txid):
        raise refuse(request, 422, "malformed", "txid must be 64 lowercase hex digits")
    proof = _explorer(request, chain).proof(bytes.fromhex(txid))
    if proof is None:
        raise refuse(request, 404, "not_found", f"no transaction {txid[:12]}… on {chain}")
    return dict(proof)


@router.get("/console/api/operations")
def operations_view(request: Request, _: Session = Depends(viewer)) -> dict[str, Any]:
    ops = console_state(request).ops
    return {
        "plans": [p.view() for p in reversed(ops.plans.values())],
        "enrolment": ops.enrolment_view(),
        "vmin_limit": ops.grid.feeder.vmin_pu,
        "audit": list(reversed(ops.audit[-50:])),
        "relay_watch": console_state(request).relay_watch_view(),  # the node's relay alarm while it stands
    }


@router.get("/console/api/security")
def security_view(request: Request, _: Session = Depends(operator)) -> dict[str, Any]:
    return console_state(request).security.snapshot()


@router.get("/console/api/users")
def users_view(request: Request, _: Session = Depends(admin)) -> dict[str, Any]:
    return {"users": [{"name": u.name, "role": u.role} for u in console_state(request).users.users()]}


# ------------------------------------------------------------------------------------------ operator actions


def _act(request: Request, s: Session, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except OperationError as exc:
        console_state(request).security.refuse(
            "conflict", str(exc), user=s.user.name, client=client_address(request)
        )
        raise HTTPException(409, str(exc)) from None


@router.post("/console/api/plans")
def propose_plan(request: Request, s: Session = Depends(operator)) -> dict[str, Any]:
    ops = console_state(request).ops
    return dict(_act(request, s, lambda: ops.propose_plan(s.user.name)).view())


@router.post("/console/api/plans/{plan_id}/approve")
def approve_plan(plan_id: str, request: Request, s: Session = Depends(operator)) -> dict[str, Any]:
    ops = console_state(request).ops
    return dict(_act(request, s, lambda: ops.approve_plan(plan_id[:40], s.user.name)).view())


@router.post("/console/api/switches/{branch}/preview")
def preview_switch(branch: int, body: PreviewBody, request: Request, s: Session = Depends(operator)) -> Any:
    ops = console_state(request).ops
    return _act(request, s, lambda: ops.preview_switch(s.user.name, branch, body.close))


@router.post("/console/api/switches/{branch}/operate")
def operate_switch(branch: int, body: OperateBody, request: Request, s: Session = Depends(operator)) -> Any:
    ops = console_state(request).ops
    return _act(request, s, lambda: ops.operate_switch(s.user.name, branch, body.close, body.confirm))


@router.get("/console/api/relays")
def relays_view(request: Request, s: Session = Depends(operator)) -> Any:
    """What every relay reports now beside the DSO's open set (reads the field: operators only)."""
    ops = console_state(request).ops
    return _act(request, s, ops.read_relays)


@router.post("/console/api/relays/adopt")
def adopt_relays(body: AdoptBody, request: Request, s: Session = Depends(operator)) -> Any:
    ops = console_state(request).ops
    return _act(request, s, lambda: ops.adopt_relays(s.user.name, tuple(body.open_branches)))


@router.post("/console/api/enrolment/tokens", status_code=201)
def issue_enrolment_token(body: TokenBody, request: Request, s: Session = Depends(operator)) -> Any:
    ops = console_state(request).ops
    return _act(request, s, lambda: ops.issue_enrolment_token(s.user.name, body.label))


@router.post("/console/api/enrolment/{mgmc}/{verb}")
def enrolment(mgmc: str, verb: str, request: Request, s: Session = Depends(operator)) -> Any:
    if verb not in ("approve", "revoke"):
        raise refuse(request, 404, "not_found", f"no enrolment action {verb!r}", s.user.name)
    if not re.fullmatch(r"[0-9a-f]{64}", mgmc):
        raise refuse(request, 422, "malformed", "the MGMC key must be 64 lowercase hex digits", s.user.name)
    ops = console_state(request).ops
    return _act(request, s, lambda: ops.enrolment_action(mgmc, verb, s.user.name))


# ------------------------------------------------------------------------------------------ installation


def install_console(app: FastAPI) -> None:
    """Mount the console: its router, and the security edge (headers, limits, counted refusals, guard)."""
    app.include_router(router)
    install_security(app)
