"""Request body limits per route, counted as the bytes arrive (review21 F5, F6).

Promises: `BodyLimit` (ASGI middleware) answers 413 `{"detail": "request body over N bytes"}` to a request
whose declared Content-Length is over its route's limit (or is not a number) before any of the body is read,
and to one that sends more than that without declaring it (Transfer-Encoding: chunked) as soon as the running
count passes the limit: no route, and no middleware inside this one, ever holds more than the limit plus one
received chunk, and the rest is never read. Each refusal is counted "malformed" in the console's security log
when the app has a console. The limit is `body_limit(method, path)`: `MAX_BODY` (16 KiB) for every route but
`POST /api/dso/disputes/readings`, which must carry every leaf of one commitment interval in one body, and is
bounded by that route's own validation (`MAX_LEAVES` leaves of at most `MAX_LEAF_HEX` hex digits each).
Assumes it sits outside every middleware that reads the body (`install_security` puts it right inside the
security headers' middleware, outside request_errors' `FiniteJsonBodies`).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peergrid_dso.request_errors import count_malformed
from peergrid_dso.routes.disputes import MAX_LEAF_HEX, MAX_LEAVES

MAX_BODY = 16 * 1024
# One readings body: {"node": 64 hex, "interval": n, "leaves": [...]}; each leaf its hex digits, two quotes
# and a separator, with room for a pretty-printer's newline and indent (the edge sends ", " separators).
READINGS_PATH = "/api/dso/disputes/readings"
LEAF_OVERHEAD = 16
READINGS_MAX_BODY = MAX_LEAVES * (MAX_LEAF_HEX + LEAF_OVERHEAD) + 1024
ROUTE_LIMITS = {("POST", READINGS_PATH): READINGS_MAX_BODY}


def body_limit(method: str, path: str) -> int:
    """The most bytes a request to this route may send (trailing slashes ignored, as the router does)."""
    return ROUTE_LIMITS.get((method, path.rstrip("/") or "/"), MAX_BODY)


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes its limit. An HTTPException, so that FastAPI's body parsing
    lets it through (it turns any other error while reading into a 400) and renders it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class BodyLimit:
    """ASGI middleware: 413 once a request's body (declared or counted) passes its route's limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["method"], scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            _count(scope, limit, f"declares {declared[:20]!r}")
            await _refusal(limit)(scope, receive, send)
            return
        received, started = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    _count(scope, limit, f"sent {received} so far")
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:  # a route that answers while it reads: too late for a 413, the connection ends
                raise
            await _refusal(limit)(scope, receive, send)


def _refusal(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over {limit} bytes"}, 413)


def _count(scope: Scope, limit: int, how: str) -> None:
    count_malformed(scope, f"body over {limit} bytes ({how})")
