"""NaN and Infinity in a request body: 422 with a clear message on every route, never 5xx (review13 F7)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st

from peergrid_dso.request_errors import (
    MAX_CHECKED,
    FiniteJsonBodies,
    install_request_errors,
    non_finite,
    renderable,
    renderable_validation_handler,
)

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


def test_an_unchecked_long_body_still_gets_a_renderable_422(client: Any) -> None:
    """A chunked body longer than the check's buffer streams on unchecked: the route's validation error echoes
    the NaN, and the wrapped handler renders it as "NaN" instead of failing with 500."""
    body = b'{"username": NaN, "password": "' + b"p" * (MAX_CHECKED + 10) + b'"}'

    async def post() -> Any:  # httpx's ASGI transport hands the app one chunk per receive (TestClient: one)
        import httpx

        async def stream() -> Any:
            for at in range(0, len(body), 4096):
                yield body[at : at + 4096]

        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
            return await http.post("/console/api/login", content=stream(),
                                   headers={"content-type": "application/json"})  # fmt: skip

    r = asyncio.run(post())
    assert r.status_code == 422, r.text[:300]
    inputs = {e["loc"][-1]: e.get("input") for e in r.json()["detail"]}
    assert inputs["username"] == "NaN"


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
