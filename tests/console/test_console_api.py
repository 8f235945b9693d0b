"""The console's HTTP surface: logins, roles, CSRF, malformed input, operator actions on the DSO chain.

Every refusal is checked three ways: the status code, the reason counter in the security log, and that
nothing changed (switches, DSO chain height). Runs the DSO engineer's `create_app` in-process (no broker).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.helpers import PASSWORD
from peergrid_dso.app import create_app
from peergrid_dso.config import DsoSettings
from peergrid_ledger.proof import check_proof


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(users_file), "lab_market": False, "lab_drift": False}}
    )
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as c:
        yield c


def login(c: TestClient, name: str) -> dict[str, str]:
    r = c.post("/console/api/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf"]}


def counts(c: TestClient) -> dict[str, int]:
    return dict(c.app.state.console.security.snapshot()["counts"])  # type: ignore[attr-defined]


def chain_height(c: TestClient) -> int:
    return int(c.app.state.console.ops.recorder.chain.height)  # type: ignore[attr-defined]


def switches(c: TestClient) -> dict[int, bool]:
    return dict(c.app.state.console.grid.switchgear.states())  # type: ignore[attr-defined]


def test_the_skeleton_contract_holds_without_login(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "peergrid DSO console" in page.text
    assert "Content-Security-Policy" in page.headers and page.headers["X-Frame-Options"] == "DENY"
    assert client.get("/api/health").json()["status"] == "ok"
    assert "nodes" in client.get("/api/nodes").json()
    assert client.get("/console/static/app.js").headers["content-type"].startswith("text/javascript")


def test_refusals_are_logged_without_secrets(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="peergrid_dso.security"):
        client.post("/console/api/login", json={"username": "olga", "password": "the wrong password"})
    assert "refused bad_login" in caplog.text and "olga" in caplog.text
    assert "the wrong password" not in caplog.text


def test_console_data_needs_a_session(client: TestClient) -> None:
    for path in (
        "/console/api/feeder",
        "/console/api/market",
        "/console/api/ledger",
        "/console/api/operations",
    ):
        assert client.get(path).status_code == 401
    assert client.post("/console/api/plans").status_code == 401
    assert counts(client)["unauthenticated"] == 5


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_it(client: TestClient) -> None:
    r = client.post("/console/api/login", json={"username": "vera", "password": PASSWORD})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert client.get("/console/api/session").json()["role"] == "viewer"
    csrf = {"X-CSRF-Token": r.json()["csrf"]}
    assert client.post("/console/api/logout", headers=csrf).status_code == 200
    assert client.get("/console/api/session").status_code == 401


def test_bad_logins_are_refused_counted_and_throttled(client: TestClient) -> None:
    for _ in range(5):
        r = client.post("/console/api/login", json={"username": "olga", "password": "not the password"})
        assert r.status_code == 401
    r = client.post("/console/api/login", json={"username": "olga", "password": PASSWORD})
    assert r.status_code == 429  # even the right password waits out the window
    c = counts(client)
    assert c["bad_login"] == 5 and c["login_throttled"] == 1
    assert client.post("/console/api/login", json={"username": "ghost", "password": "x"}).status_code == 429


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/console/api/plans", None),
        ("post", "/console/api/plans/plan-1/approve", None),
        ("post", "/console/api/switches/7/preview", {"close": False}),
        ("post", "/console/api/switches/7/operate", {"close": False, "confirm": "x" * 22}),
        ("post", "/console/api/enrolment/mg1/approve", None),
        ("post", "/console/api/enrolment/mg1/revoke", None),
        ("get", "/console/api/security", None),
        ("get", "/console/api/users", None),
    ],
)
def test_a_viewer_cannot_act(client: TestClient, method: str, path: str, body: Any) -> None:
    csrf = login(client, "vera")
    before = (switches(client), chain_height(client))
    r = getattr(client, method)(path, headers=csrf, **({"json": body} if body is not None else {}))
    assert r.status_code == 403 and "needs role" in r.json()["detail"]
    assert counts(client)["forbidden"] == 1
    assert (switches(client), chain_height(client)) == before


def test_state_changes_need_the_csrf_token_and_our_origin(client: TestClient) -> None:
    csrf = login(client, "olga")
    assert client.post("/console/api/enrolment/mg1/approve").status_code == 403
    assert (
        client.post("/console/api/enrolment/mg1/approve", headers={"X-CSRF-Token": "forged"}).status_code
        == 403
    )
    evil = csrf | {"Origin": "http://evil.example"}
    assert client.post("/console/api/enrolment/mg1/approve", headers=evil).status_code == 403
    assert (
        client.post(
            "/console/api/login",
            headers={"Origin": "http://evil.example"},
            json={"username": "olga", "password": PASSWORD},
        ).status_code
        == 403
    )
    c = counts(client)
    assert c["csrf"] == 2 and c["bad_origin"] == 2 and chain_height(client) == 0
    ours = csrf | {"Origin": "http://127.0.0.1:8080"}
    assert client.post("/console/api/enrolment/mg1/approve", headers=ours).status_code == 200


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/console/api/login", {"content": b'{"username": "olga", "password": '}),
        ("/console/api/login", {"json": {"username": "olga"}}),
        ("/console/api/login", {"json": {"username": "olga", "password": PASSWORD, "role": "admin"}}),
        ("/console/api/login", {"json": {"username": ["olga"], "password": PASSWORD}}),
        ("/console/api/switches/seven/preview", {"json": {"close": True}}),
        ("/console/api/switches/7/preview", {"json": {"close": "yes"}}),
        ("/console/api/switches/7/operate", {"json": {"close": True}}),
        ("/console/api/switches/7/operate", {"json": {"close": True, "confirm": "x" * 500}}),
    ],
)
def test_malformed_requests_get_422_and_are_counted(client: TestClient, path: str, kwargs: Any) -> None:
    csrf = login(client, "olga")
    r = client.post(path, headers=csrf, **kwargs)
    assert r.status_code == 422, r.text
    assert counts(client)["malformed"] == 1 and chain_height(client) == 0


def test_oversized_bodies_and_odd_paths_are_refused(client: TestClient) -> None:
    csrf = login(client, "olga")
    r = client.post("/console/api/login", headers=csrf, content=b"x" * 100_000)
    assert r.status_code == 413
    for path in ("/console/static/..%2fstate.py", "/console/static/app.py", "/console/static/nope.js"):
        assert client.get(path).status_code == 404
    assert client.get("/console/api/ledger/dso/proof/zz").status_code == 422
    assert client.get("/console/api/ledger/nochain/blocks").status_code == 404
    assert client.get("/console/api/ledger/dso/blocks?limit=100000").status_code == 422
    assert client.post("/console/api/enrolment/mg1/delete", headers=csrf).status_code == 404
    assert client.post("/console/api/enrolment/mg99/approve", headers=csrf).status_code == 409
    c = counts(client)
    assert c["malformed"] >= 3 and c["not_found"] >= 4


def test_manual_switching_needs_a_fresh_confirmation_from_the_same_operator(client: TestClient) -> None:
    csrf = login(client, "olga")
    preview = client.post("/console/api/switches/33/preview", headers=csrf, json={"close": True}).json()
    assert preview["ok"] and preview["radial"] is False and preview["confirm"]
    wrong = {"close": False, "confirm": preview["confirm"]}
    assert client.post("/console/api/switches/33/operate", headers=csrf, json=wrong).status_code == 409
    assert switches(client)[33] is False  # a mismatched confirmation is used up and changes nothing
    preview = client.post("/console/api/switches/33/preview", headers=csrf, json={"close": True}).json()
    ok = {"close": True, "confirm": preview["confirm"]}
    r = client.post("/console/api/switches/33/operate", headers=csrf, json=ok).json()
    assert r["ok"] and switches(client)[33] is True and r["plan"].endswith(" by olga")
    assert client.post("/console/api/switches/33/operate", headers=csrf, json=ok).status_code == 409  # once
    block = client.get(f"/console/api/ledger/dso/blocks/{r['chain'][0]['height']}").json()
    assert block["transactions"][0]["kind"] == "switching_plan"
    assert block["transactions"][0]["body"]["plan"] == r["plan"]
    assert client.get("/console/api/feeder").json()["branches"][32]["closed"] is True


def test_the_interlock_refuses_a_switch_that_islands_load(client: TestClient) -> None:
    csrf = login(client, "olga")
    preview = client.post("/console/api/switches/1/preview", headers=csrf, json={"close": False}).json()
    assert not preview["ok"] and "islands load" in preview["reason"] and preview["confirm"] is None
    assert switches(client)[1] is True


def test_a_plan_is_approved_executed_recorded_and_provable(client: TestClient) -> None:
    csrf = login(client, "olga")
    plan = client.post("/console/api/plans", headers=csrf).json()
    assert plan["status"] == "pending" and plan["after"]["losses_kw"] < plan["before"]["losses_kw"]
    assert plan["after"]["vmin_pu"] >= 0.9
    done = client.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf).json()
    assert done["status"] == "executed" and done["approved_by"] == "olga"
    states = switches(client)
    assert sorted(b for b, closed in states.items() if not closed) == sorted(plan["after"]["open_branches"])
    feeder = client.get("/console/api/feeder").json()
    assert feeder["open_branches"] == sorted(plan["after"]["open_branches"]) and not feeder["alarms"]
    audit = client.get("/console/api/operations").json()["audit"]
    assert [a["user"] for a in audit] == ["olga", "olga"]
    for entry in audit:
        proof = client.get(f"/console/api/ledger/dso/proof/{entry['txids'][0]}").json()
        assert check_proof(proof).height == entry["height"]
    assert client.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf).status_code == 409


def test_a_relay_that_fails_mid_plan_rolls_back_and_raises_an_alarm(client: TestClient) -> None:
    csrf = login(client, "olga")
    # the published 33-bus optimum stands in for the MILP here: this test is about the executor
    client.app.state.console.ops.planner = lambda feeder, p, q: (7, 9, 14, 32, 37)  # type: ignore[attr-defined]
    plan = client.post("/console/api/plans", headers=csrf).json()
    opens = [a["branch"] for a in plan["actions"] if not a["close"]]
    before = switches(client)
    client.app.state.console.grid.switchgear.failing.add(opens[-1])  # type: ignore[attr-defined]
    done = client.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf).json()
    assert done["status"] == "failed"
    assert any(s["why"] == "rollback" for s in done["steps"])
    assert switches(client) == before
    alarms = client.get("/console/api/feeder").json()["alarms"]
    assert any("rolled back" in a for a in alarms)
    result_tx = client.get(f"/console/api/ledger/dso/blocks/{done['chain'][1]['height']}").json()[
        "transactions"
    ][0]
    assert result_tx["kind"] == "switching_result"
    assert not all(r["ok"] for r in result_tx["body"]["results"])


def test_enrolment_approve_and_revoke_are_recorded_with_who(client: TestClient) -> None:
    csrf = login(client, "olga")
    r = client.post("/console/api/enrolment/mg2/approve", headers=csrf).json()
    assert r["status"] == "approved" and r["by"] == "olga"
    tx = client.get(f"/console/api/ledger/dso/blocks/{r['chain']['height']}").json()["transactions"][0]
    assert tx["kind"] == "enrol" and tx["body"]["label"] == "mg2 approved by olga"
    assert client.post("/console/api/enrolment/mg2/approve", headers=csrf).status_code == 409
    r = client.post("/console/api/enrolment/mg2/revoke", headers=csrf).json()
    assert r["status"] == "revoked"
    kinds = [
        t["kind"]
        for t in client.get(f"/console/api/ledger/dso/blocks/{r['chain']['height']}").json()["transactions"]
    ]
    assert kinds == ["authorise", "authorise"]
    ops = client.get("/console/api/operations").json()
    assert [a["action"] for a in ops["audit"]] == ["revoke mg2", "approve enrolment of mg2"]


def test_admins_see_users_and_refusal_counters(client: TestClient) -> None:
    csrf = login(client, "adam")
    assert {u["name"] for u in client.get("/console/api/users", headers=csrf).json()["users"]} == {
        "olga",
        "vera",
        "adam",
    }
    sec = client.get("/console/api/security").json()
    assert set(sec["counts"]) >= {"bad_login", "csrf", "forbidden", "malformed", "unauthenticated"}
