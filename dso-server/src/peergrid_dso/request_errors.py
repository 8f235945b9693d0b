"""NaN and Infinity never reach a route, and a 422 always renders (review13 F7).

Python's json (Starlette's `request.json()`, pydantic's JSON mode) takes the literals `NaN`, `Infinity` and
`-Infinity`, and a number beyond a float's range (`1e999`) as infinity; none of them is JSON (RFC 8259). A float
field would take one as a value, and the 422 of any other field echoes it as the error's `input`, which the
JSON response cannot render (allow_nan=False): the request answered 500, before login on `/console/api/login`.

Promises: `install_request_errors(app)`, called once after every other handler and middleware is installed,
(1) refuses, before routing and a route's authentication, a request body of any content type that parses as JSON and
holds a number that is not finite, with 422 `{"detail": [{"type": "finite_number", "loc": ["body"], "msg":
...}]}`, counted as "malformed" in the console's security log when there is one; a body that is not JSON at all
goes on unchanged (its route refuses it as before); (2) wraps the app's RequestValidationError handler so that
any error it renders carries non-finite floats as the strings "NaN", "Infinity", "-Infinity" (defence in depth:
a 422 never turns into a 500). Bodies are buffered for the check up to `MAX_CHECKED` bytes; a longer one (which
the security middleware refuses with 413 when it declares its length) streams on unchecked.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_CHECKED = 64 * 1024
WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}


class NonFinite(Exception):
    """A JSON document holding a number that is not finite (not a ValueError: json's own errors are)."""


def _refuse_constant(name: str) -> float:
    raise NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFinite(text[:40])
    return value


def non_finite(body: bytes) -> str | None:
    """Pure: the first non-finite number in `body` as written (`NaN`, `-Infinity`, `1e999`) when the body is
    a JSON document holding one; None when it holds none or is not JSON at all."""
    try:
        json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except NonFinite as exc:
        return str(exc)
    except (ValueError, RecursionError):  # not JSON (or too deep for json): its route decides, as before
        return None
    return None


def renderable(value: Any) -> Any:
    """Pure: `value` with every non-finite float (at any depth of dicts, lists and tuples) as its JSON-ish name."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: renderable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [renderable(v) for v in value]
    return value


def finite_number_response(found: str) -> JSONResponse:
    msg = f"the JSON body holds {found}: numbers must be finite (NaN and Infinity are not JSON)"
    return JSONResponse({"detail": [{"type": "finite_number", "loc": ["body"], "msg": msg}]}, 422)


class FiniteJsonBodies:
    """ASGI middleware: a request whose body is JSON with a non-finite number is answered 422 here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WITH_BODY:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size, complete = 0, False
        while not complete and size <= MAX_CHECKED:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see it
                break
            size += len(message.get("body", b""))
            complete = not message.get("more_body", False)
        if complete and (found := non_finite(b"".join(m.get("body", b"") for m in messages))) is not None:
            count_malformed(scope, f"body holds {found}, not a finite number")
            await finite_number_response(found)(scope, receive, send)
            return
        await self.app(scope, _replay(messages, receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def count_malformed(scope: Scope, what: str) -> None:
    """A refused request body counted `malformed` in the console's security log (where the app has a console),
    named by its method, path and `what`; the body-size limit (`auth.body_limit`) counts its refusals here too."""
    console = getattr(getattr(scope.get("app"), "state", None), "console", None)
    if console is not None:
        client = scope.get("client")
        console.security.refuse(
            "malformed", f"{scope['method']} {scope['path']}: {what}", client=client[0] if client else "-"
        )


def renderable_validation_handler(
    inner: Callable[[Request, Any], Any] | None,
) -> Callable[..., Awaitable[Any]]:
    """The app's RequestValidationError handler `inner` (FastAPI's own when None), given errors it can render."""
    render: Callable[[Request, Any], Any] = inner or request_validation_exception_handler

    async def handle(request: Request, exc: Exception) -> Any:
        if isinstance(exc, RequestValidationError):
            exc = RequestValidationError(renderable(list(exc.errors())), body=renderable(exc.body))
        answer = render(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    return handle


def install_request_errors(app: FastAPI) -> None:
    """Install both guards on `app` before it starts; call it after the other handlers and middleware: the
    handler wraps the one set, and the middleware goes innermost (after the security middleware's 413 and its
    headers, before routing)."""
    if app.middleware_stack is not None:
        raise RuntimeError("install_request_errors: the app has started already")
    inner = app.exception_handlers.get(RequestValidationError)
    app.add_exception_handler(RequestValidationError, renderable_validation_handler(inner))
    app.user_middleware.append(Middleware(FiniteJsonBodies))
