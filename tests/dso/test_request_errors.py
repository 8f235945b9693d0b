"""NaN and Infinity in a request body: 422 with a clear message on every route, never 5xx (review13 F7)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from peergrid_dso.auth.body_limit import MAX_BODY, READINGS_MAX_BODY, BodyLimit, body_limit
from peergrid_dso.request_errors import (
    MAX_CHECKED,
    FiniteJsonBodies,
    install_request_errors,
    non_finite,
    renderable,
    renderable_validation_handler,
)
from peergrid_dso.routes.disputes import MAX_LEAF_HEX, MAX_LEAVES

PASSWORD = "a long test password"


def _app(tmp_path: Path) -> Any:
    from argon2 import PasswordHasher

    from peergrid_dso.app import create_app
    from peergrid_dso.auth.users import UserStore
    from peergrid_dso.config import DsoSettings

    users = tmp_path / "users.json"
    UserStore(users, hasher=PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)).add(
        "olga", "operator", PASSWORD
    )
    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(users), "lab_market": False, "lab_drift": False}}
    )
    app = create_app(settings, listen=False)
    if not any(m.cls is FiniteJsonBodies for m in app.user_middleware):  # until app.py installs it
        install_request_errors(app)
    return app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(_app(tmp_path), base_url="http://127.0.0.1:8080", raise_server_exceptions=False) as c:
        yield c


def _login(client: Any) -> dict[str, str]:
    r = client.post("/console/api/login", json={"username": "olga", "password": PASSWORD})
    assert r.status_code == 200, r.text  # a finite body goes through the check to its route unchanged
    return {"X-CSRF-Token": r.json()["csrf"]}


def _routes(client: Any) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").json()["paths"]
    found = []
    for path, ops in spec.items():
        for method in ops:
            if method in ("post", "put", "patch", "delete") and not path.endswith("/events"):
                concrete = path.replace("{", "").replace("}", "")  # any segment: the body is refused first
                found.append((method.upper(), concrete))
    return sorted(found)


BODIES = [b'{"x": NaN}', b'{"username": Infinity, "password": "p"}', b"-Infinity", b"[1e999]",
          b'{"a": {"b": [1, -1E400]}}', b'{"vmin_pu": NaN, "prove_s": 0.0}']  # fmt: skip


def _assert_finite_422(response: Any, what: str) -> None:
    assert response.status_code == 422, f"{what} -> {response.status_code} {response.text[:200]}"
    (error,) = response.json()["detail"]
    assert error["type"] == "finite_number" and error["loc"] == ["body"]
    assert "numbers must be finite" in error["msg"]


def test_every_route_answers_422_to_non_finite_numbers_logged_in(client: Any) -> None:
    headers = _login(client)
    routes = _routes(client)
    assert len(routes) >= 15 and ("POST", "/console/api/login") in routes
    for method, path in routes:
        for body in BODIES:
            for content_type in ("application/json", "text/plain", None):
                h = dict(headers) | ({"content-type": content_type} if content_type else {})
                r = client.request(method, path, content=body, headers=h)
                _assert_finite_422(r, f"{method} {path} {body!r} {content_type}")
    assert client.get("/api/health").status_code == 200


def test_login_refuses_nan_before_authentication_and_counts_it(client: Any) -> None:
    r = client.post("/console/api/login", content=b'{"username": NaN, "password": "x"}',
                    headers={"content-type": "application/json"})  # fmt: skip
    _assert_finite_422(r, "login")
    assert "holds NaN" in r.json()["detail"][0]["msg"]
    security = client.app.state.console.security
    assert security.counts["malformed"] == 1
    assert "body holds NaN, not a finite number" in security.recent[-1]["detail"]
    r = client.post("/api/dso/opf", content=b"1e999", headers={"content-type": "application/json"})
    assert r.status_code in (401, 422), r.text  # the DSO API guard may answer first; never 5xx


def test_bodies_that_are_not_json_reach_their_route_as_before(client: Any) -> None:
    r = client.post("/console/api/login", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = client.post("/console/api/login", json={"username": "olga", "password": "wrong"})
    assert r.status_code == 401


class Login(BaseModel):  # at module level: a local class is no annotation FastAPI can resolve
    username: str
    password: str


def test_an_unchecked_long_body_still_gets_a_renderable_422() -> None:
    """A chunked body longer than the check's buffer streams on unchecked: the route's validation error echoes
    the NaN, and the wrapped handler renders it as "NaN" instead of failing with 500. (On the DSO's app only the
    readings route takes a body that long, so this is a bare app with the request-error guards alone.)"""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/login")
    def login(body: Login) -> dict[str, str]:
        return {"user": body.username}

    install_request_errors(app)
    body = b'{"username": NaN, "password": "' + b"p" * (MAX_CHECKED + 10) + b'"}'
    r = asyncio.run(post_chunked(app, "/login", body))
    assert r.status_code == 422, r.text[:300]
    inputs = {e["loc"][-1]: e.get("input") for e in r.json()["detail"]}
    assert inputs["username"] == "NaN"


async def post_chunked(
    app: Any, path: str, body: bytes, chunk: int = 4096, pulled: list[int] | None = None
) -> Any:
    """POST `body` without a Content-Length, `chunk` bytes per receive (httpx's ASGI transport pulls the
    stream lazily; TestClient would hand the app one piece); `pulled` counts the chunks the app asked for."""
    import httpx

    async def stream() -> Any:
        for at in range(0, len(body), chunk):
            if pulled is not None:
                pulled.append(at)
            yield body[at : at + chunk]

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
        return await http.post(path, content=stream(), headers={"content-type": "application/json"})


def test_the_wrapped_handler_renders_non_finite_inputs_and_keeps_the_inner_one() -> None:
    seen: list[Any] = []

    def inner(request: Any, exc: RequestValidationError) -> Any:
        seen.append(exc.errors())
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": exc.errors()}, 422)  # renders with allow_nan=False

    exc = RequestValidationError(
        [{"loc": ("body", "x"), "msg": "bad", "input": [math.nan, {"y": -math.inf}]}]
    )
    response = asyncio.run(renderable_validation_handler(inner)(None, exc))  # type: ignore[arg-type]
    assert response.status_code == 422 and len(seen) == 1
    assert json.loads(response.body)["detail"][0]["input"] == ["NaN", {"y": "-Infinity"}]
    response = asyncio.run(renderable_validation_handler(None)(None, exc))  # type: ignore[arg-type]
    assert json.loads(response.body)["detail"][0]["input"] == ["NaN", {"y": "-Infinity"}]


def test_install_refuses_a_started_app(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = _app(tmp_path)
    with TestClient(app), pytest.raises(RuntimeError, match="started"):
        install_request_errors(app)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=16,
)


@given(JSON)
def test_finite_json_is_never_refused(doc: Any) -> None:
    assert non_finite(json.dumps(doc, allow_nan=False).encode()) is None
    assert renderable(doc) == json.loads(json.dumps(doc))


@given(JSON, st.sampled_from([math.nan, math.inf, -math.inf]))
def test_json_with_a_non_finite_number_anywhere_is_refused(doc: Any, bad: float) -> None:
    planted = [doc, {"k": [bad]}]
    assert non_finite(json.dumps(planted).encode()) in ("NaN", "Infinity", "-Infinity")
    json.dumps(renderable(planted), allow_nan=False)  # renders


@given(st.binary(max_size=80))
def test_any_bytes_are_judged_without_raising(raw: bytes) -> None:
    found = non_finite(raw)
    assert found is None or not math.isfinite(float(found))


# -- body limits, counted as the bytes arrive (review21 F5, F6) ---------------------------------------------


class BodyReader:
    """An inner ASGI app that reads the whole body, as a route does, then answers 200 with its length."""

    def __init__(self) -> None:
        self.answered: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        self.answered.append(size)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


def through_limit(path: str, chunks: list[int], headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    """Send `chunks` (sizes) through BodyLimit to a BodyReader: (status, body, chunks pulled, reader)."""
    reader, pulled, sent = BodyReader(), [], []
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers or []}

    async def receive() -> dict[str, Any]:
        at = len(pulled)
        if at >= len(chunks):
            return {"type": "http.disconnect"}
        pulled.append(chunks[at])
        return {"type": "http.request", "body": b"x" * chunks[at], "more_body": at + 1 < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(BodyLimit(reader)(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, pulled, reader


def test_a_chunked_body_over_the_limit_is_413_as_soon_as_it_passes() -> None:
    chunks = [4096] * 51_200  # 200 MiB, no Content-Length
    status, body, pulled, reader = through_limit("/api/dso/injections", chunks)
    assert status == 413 and json.loads(body) == {"detail": f"request body over {MAX_BODY} bytes"}
    assert len(pulled) == MAX_BODY // 4096 + 1 and reader.answered == []  # the rest never read; no answer


def test_a_declared_length_over_the_limit_or_not_a_number_is_413_before_reading() -> None:
    for declared in (str(MAX_BODY + 1).encode(), b"12x", b"-1", b""):
        status, _, pulled, reader = through_limit("/console/api/login", [10], [(b"content-length", declared)])
        assert (status, pulled, reader.answered) == (413, [], []), declared


def test_the_readings_route_has_its_own_limit_and_every_other_route_the_global_one() -> None:
    assert body_limit("POST", "/api/dso/disputes/readings") == READINGS_MAX_BODY
    assert body_limit("POST", "/api/dso/disputes/readings/") == READINGS_MAX_BODY
    assert body_limit("GET", "/api/dso/disputes/readings") == MAX_BODY
    assert body_limit("POST", "/api/dso/injections") == MAX_BODY
    # the route's own bounds fit: MAX_LEAVES leaves of MAX_LEAF_HEX digits as the edge sends them
    assert (
        MAX_LEAVES * (MAX_LEAF_HEX + len('"", ')) + len('{"node": "", "interval": , "leaves": []}') + 64 + 20
        <= READINGS_MAX_BODY
    )
    status, body, _, _ = through_limit("/api/dso/disputes/readings", [16_384] * 5)
    assert status == 200 and body == b"81920"
    assert through_limit("/api/dso/injections", [16_384] * 5)[0] == 413


@settings(deadline=None)  # no timing threshold in a unit test: a loaded CI box is slow, not wrong
@given(st.lists(st.integers(0, 6_000), min_size=1, max_size=12), st.booleans())
def test_a_body_passes_exactly_when_it_fits_and_is_never_read_past_one_chunk(
    chunks: list[int], declare: bool
) -> None:
    total = sum(chunks)
    headers = [(b"content-length", str(total).encode())] if declare else []
    status, body, pulled, reader = through_limit("/api/dso/injections", chunks, headers)
    if total <= MAX_BODY:
        assert status == 200 and body == str(total).encode() and reader.answered == [total]
    else:
        assert status == 413 and reader.answered == []
        assert sum(pulled[:-1]) <= MAX_BODY  # it stopped at the chunk that passed the limit


def test_the_apps_open_route_refuses_a_chunked_body_and_counts_it(client: Any) -> None:
    ran: list[int] = []

    @client.app.post("/api/test/echo")
    async def echo(request: Request) -> dict[str, int]:  # the open injections route reads its body so
        ran.append(len(await request.body()))
        return {"read": ran[-1]}

    pulled: list[int] = []
    body = b'{"x": "' + b"p" * 10 * MAX_BODY + b'"}'
    for path in ("/api/dso/injections", "/api/test/echo"):
        pulled.clear()
        r = asyncio.run(post_chunked(client.app, path, body, pulled=pulled))
        assert r.status_code == 413 and r.json() == {"detail": f"request body over {MAX_BODY} bytes"}, r.text
        assert len(pulled) <= MAX_BODY // 4096 + 2 and r.headers["x-frame-options"] == "DENY"
    assert ran == []
    security = client.app.state.console.security
    assert (
        security.counts["malformed"] == 2 and "body over 16384 bytes (sent" in security.recent[-1]["detail"]
    )
    r = asyncio.run(post_chunked(client.app, "/api/test/echo", b'{"x": 1}'))
    assert r.status_code == 200 and ran == [8]  # a small chunked body still reaches its route
