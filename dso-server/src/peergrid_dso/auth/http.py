"""The HTTP edge of console security: sessions from the cookie, CSRF and origin checks, roles, security
headers, body-size limits, counted 422s, and the optional guard on the DSO REST API's operator actions.

Promises: `session` accepts a request only with a live session cookie and, for state-changing methods, the
session's CSRF token in `X-CSRF-Token` and (when the browser sends one) an `Origin` equal to our own; `role(r)`
adds the role check. Every refusal is an HTTPException with a reason, counted and logged in `SecurityLog`.
`install_security(app)` adds the middleware and the 422 handler for every route of the app; body limits are
`body_limit.BodyLimit`'s (per route, counted as the bytes arrive, not read from Content-Length alone).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from peergrid_dso.auth.body_limit import MAX_BODY as MAX_BODY  # every route's but the readings' (re-exported)
from peergrid_dso.auth.body_limit import BodyLimit
from peergrid_dso.auth.sessions import Session, check_csrf

COOKIE = "pg_session"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# The DSO REST API's operator actions (guarded when console.guard_dso_api is on). Left open on purpose:
# POST /api/dso/enrolment (an MGMC's signed request with a one-time token) and /api/dso/injections.
DSO_OPERATOR_PATHS = re.compile(
    r"^/api/dso/(enrolment/tokens|enrolment/[^/]+/[^/]+|plans|plans/[^/]+/approve|reconfiguration|opf)/?$"
)
# Reads guarded as well: the enrolment list maps each anonym (the pseudonym an MG trades under) to its MG, so it
# takes a viewer's session as the console's Operations view does. Left open: GET /api/dso/enrolment/<key> (one
# MGMC's status, asked by the MGMC while it waits for approval).
DSO_VIEWER_PATHS = re.compile(r"^/api/dso/enrolment/?$")


def console_state(request: Request) -> Any:
    """The app's `ConsoleState` (built in lifespan)."""
    return request.app.state.console


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"


def refuse(request: Request, status: int, reason: str, detail: str, user: str | None = None) -> HTTPException:
    console_state(request).security.refuse(
        reason, f"{request.method} {request.url.path}: {detail}", user=user, client=client_address(request)
    )
    return HTTPException(status, detail)


def origin_ok(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser cross-site request (curl, tests); SameSite=Strict guards the cookie
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def session(request: Request) -> Session:
    state = console_state(request)
    found: Session | None = state.sessions.get(request.cookies.get(COOKIE))
    if found is None:
        raise refuse(request, 401, "unauthenticated", "log in first")
    if state.users.get(found.user.name) != found.user:  # removed, or its role changed, since login
        state.sessions.end(found.sid)
        raise refuse(request, 401, "unauthenticated", "the user was removed or changed; log in again")
    if request.method in UNSAFE:
        if not origin_ok(request):
            raise refuse(request, 403, "bad_origin", "cross-origin request", found.user.name)
        if not check_csrf(found, request.headers.get("x-csrf-token")):
            raise refuse(request, 403, "csrf", "missing or wrong CSRF token", found.user.name)
    return found


def role(needed: str) -> Callable[..., Session]:
    def check(request: Request, s: Session = Depends(session)) -> Session:
        if not s.user.can(needed):
            raise refuse(request, 403, "forbidden", f"needs role {needed}, has {s.user.role}", s.user.name)
        return s

    return check


viewer, operator, admin = role("viewer"), role("operator"), role("admin")


def _guard_dso_api(request: Request) -> Response | None:
    """An operator session and its CSRF token for the DSO API's operator actions, and a viewer's session for
    its guarded reads, when the guard is on."""
    console = getattr(request.app.state, "console", None)
    if console is None or not console.settings.guard_dso_api:
        return None
    if request.method in UNSAFE and DSO_OPERATOR_PATHS.match(request.url.path):
        needed = "operator"
    elif request.method == "GET" and DSO_VIEWER_PATHS.match(request.url.path):
        needed = "viewer"
    else:
        return None
    try:
        role(needed)(request, session(request))
    except HTTPException as exc:
        return JSONResponse({"detail": exc.detail}, exc.status_code)
    return None


def install_security(app: FastAPI) -> None:
    """Security headers on every response, counted refusals of malformed requests (422) and oversized
    bodies (413) anywhere in the API, and the DSO API guard."""
    # add_middleware puts each new one outermost: BodyLimit ends up just inside `guard` (so its 413s get the
    # headers) and outside every middleware added before it or appended later (request_errors reads bodies).
    app.add_middleware(BodyLimit)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response
        if (refusal := _guard_dso_api(request)) is not None:
            response = refusal
        else:
            response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.url.path.startswith("/console/api"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> Response:
        console = getattr(request.app.state, "console", None)
        if console is not None:
            where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
            console.security.refuse(
                "malformed", f"{request.method} {request.url.path}: {where}", client=client_address(request)
            )
        return await request_validation_exception_handler(request, exc)
