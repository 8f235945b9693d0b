"""The console's HTTP surface: logins, roles, CSRF, malformed input, operator actions on the DSO chain.

Every refusal is checked three ways: the status code, the reason counter in the security log, and that
nothing changed (switches, DSO chain height). Runs the DSO engineer's `create_app` in-process (no broker).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.helpers import PASSWORD, fast_hasher
from console.lab_client import lab_client
from peergrid_dso.app import create_app
from peergrid_dso.auth.users import UserStore
from peergrid_dso.config import DsoSettings
from peergrid_dso.services.enrolment import enrolment_digest
from peergrid_dso.services.injections import signed_injection
from peergrid_dso.services.switching import RelayError
from peergrid_ledger.keys import Keypair
from peergrid_ledger.proof import check_proof

MGMC = "ab" * 32


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    with lab_client(users_file) as c:
        yield c


def login(c: TestClient, name: str) -> dict[str, str]:
    r = c.post("/console/api/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf"]}


def counts(c: TestClient) -> dict[str, int]:
    return dict(c.app.state.console.security.snapshot()["counts"])  # type: ignore[attr-defined]


def chain_height(c: TestClient) -> int:
    return int(c.app.state.dso.chain.height)  # type: ignore[attr-defined]


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


def test_a_cross_site_form_cannot_log_in(client: TestClient) -> None:
    """A form on another site can send text/plain without a preflight; the login reads JSON only."""
    body = json.dumps({"username": "olga", "password": PASSWORD})
    r = client.post("/console/api/login", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 422 and "set-cookie" not in r.headers
    assert counts(client)["malformed"] == 1


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
        ("post", "/console/api/plans/plan-1765000000000/approve", None),
        ("post", "/console/api/switches/7/preview", {"close": False}),
        ("post", "/console/api/switches/7/operate", {"close": False, "confirm": "x" * 22}),
        ("post", f"/console/api/enrolment/{'ab' * 32}/approve", None),
        ("post", f"/console/api/enrolment/{'ab' * 32}/revoke", None),
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
    assert client.post(f"/console/api/enrolment/{MGMC}/approve").status_code == 403
    assert (
        client.post(f"/console/api/enrolment/{MGMC}/approve", headers={"X-CSRF-Token": "forged"}).status_code
        == 403
    )
    evil = csrf | {"Origin": "http://evil.example"}
    assert client.post(f"/console/api/enrolment/{MGMC}/approve", headers=evil).status_code == 403
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
    assert (
        client.post(f"/console/api/enrolment/{MGMC}/approve", headers=ours).status_code == 409
    )  # no such MGMC


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
    assert client.post(f"/console/api/enrolment/{MGMC}/delete", headers=csrf).status_code == 404
    assert client.post("/console/api/enrolment/mg1/approve", headers=csrf).status_code == 422
    assert client.post(f"/console/api/enrolment/{MGMC}/approve", headers=csrf).status_code == 409
    c = counts(client)
    assert c["malformed"] >= 4 and c["not_found"] >= 4 and c["conflict"] == 1


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
    assert r["ok"] and switches(client)[33] is True
    assert re.fullmatch(r"manual-\d{13} by olga", r["plan"])  # wall ms: no restart reuses it (X6)
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
    assert plan["after"]["vmin_pu"] >= 0.9 and re.fullmatch(r"plan-\d{13}", plan["id"])
    done = client.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf).json()
    assert done["status"] == "executed" and done["approved_by"] == "olga"
    states = switches(client)
    assert sorted(b for b, closed in states.items() if not closed) == sorted(plan["after"]["open_branches"])
    feeder = client.get("/console/api/feeder").json()
    assert feeder["open_branches"] == sorted(plan["after"]["open_branches"]) and not feeder["alarms"]
    audit = client.get("/console/api/operations").json()["audit"]
    assert [a["user"] for a in audit] == ["olga"] and len(audit[0]["txids"]) == 2 + len(done["steps"])
    # the plan, each executed step, the result
    for txid in audit[0]["txids"]:
        proof = client.get(f"/console/api/ledger/dso/proof/{txid}").json()
        assert check_proof(proof).height == audit[0]["height"]
    txs = client.get(f"/console/api/ledger/dso/blocks/{audit[0]['height']}").json()["transactions"]
    assert txs[0]["body"]["plan"] == f"{plan['id']} by olga"
    record = txs[-1]  # who did it, naming what it caused, in the same final block
    assert record["kind"] == "operator_action" and record["txid"] == audit[0]["record"]
    assert record["body"]["operator"] == "olga" and record["body"]["txs"] == audit[0]["txids"]
    assert client.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf).status_code == 409


class FailingRelays:
    """The server's in-memory relays, except that commands to `fail_on` are refused (a stuck breaker)."""

    def __init__(self, inner: Any, fail_on: int) -> None:
        self.inner, self.fail_on = inner, fail_on

    def status(self, branch: int) -> Any:
        return self.inner.status(branch)

    def command(self, branch: int, close: bool) -> None:
        if branch == self.fail_on:
            raise RelayError("Modbus exception 4 (device refused)")
        self.inner.command(branch, close)


def test_a_relay_that_fails_mid_plan_rolls_back_and_raises_an_alarm(client: TestClient) -> None:
    csrf = login(client, "olga")
    # the published 33-bus optimum stands in for the MILP here: this test is about the executor
    client.app.state.console.ops.planner = lambda feeder, p, q: (7, 9, 14, 32, 37)  # type: ignore[attr-defined]
    plan = client.post("/console/api/plans", headers=csrf).json()
    second_open = [a["branch"] for a in plan["actions"] if not a["close"]][1]
    executor = client.app.state.dso.switching.executor  # type: ignore[attr-defined]
    executor.driver = FailingRelays(executor.driver, second_open)
    done = client.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf).json()
    assert done["status"] == "failed" and "rolled back" in done["alarm"]
    assert any(s["rollback"] for s in done["steps"])
    first_pair = plan["actions"][:2]  # done and kept: the last radial, checked state
    expected_open = sorted(
        set(plan["before"]["open_branches"]) - {first_pair[0]["branch"]} | {first_pair[1]["branch"]}
    )
    states = switches(client)
    assert sorted(b for b, closed in states.items() if not closed) == expected_open
    alarms = client.get("/console/api/feeder").json()["alarms"]
    assert any("rolled back" in a for a in alarms)
    txs = client.get(f"/console/api/ledger/dso/blocks/{done['chain'][0]['height']}").json()["transactions"]
    kinds = [t["kind"] for t in txs]
    assert kinds[0] == "switching_plan" and kinds[-2:] == ["switching_result", "operator_action"]
    assert txs[0]["body"]["plan"] == f"{plan['id']} by olga" and txs[-1]["body"]["operator"] == "olga"
    assert not all(r["ok"] for r in txs[-2]["body"]["results"])


def test_a_locked_out_relay_refuses_the_whole_plan(client: TestClient) -> None:
    csrf = login(client, "olga")
    client.app.state.console.ops.planner = lambda feeder, p, q: (7, 9, 14, 32, 37)  # type: ignore[attr-defined]
    plan = client.post("/console/api/plans", headers=csrf).json()
    client.app.state.dso.switching.executor.driver.locked.add(9)  # type: ignore[attr-defined]
    before = switches(client)
    done = client.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf).json()
    assert done["status"] == "failed" and "locked out" in done["alarm"] and not done["steps"]
    assert switches(client) == before


def enrol_request(client: TestClient, label: str) -> str:
    """An operator issues the one-time token (a guarded action); the MGMC then enrols with it, unauthenticated."""
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    csrf = login(client, "olga")
    token = client.post("/api/dso/enrolment/tokens", headers=csrf).json()["token"]
    client.post("/console/api/logout", headers=csrf)
    signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, label))
    body = {"token": token, "mgmc": mgmc.public.hex(), "anonym": anonym.public.hex(), "label": label,
            "signature": signature.hex()}  # fmt: skip
    assert client.post("/api/dso/enrolment", json=body).status_code == 201
    return mgmc.public.hex()


def test_enrolment_approve_and_revoke_are_recorded_on_the_dso_chain(client: TestClient) -> None:
    client.app.state.dso.enrolment.auto = False  # type: ignore[attr-defined]  # the pilot: operators approve
    mgmc = enrol_request(client, "mgmc-mg2")
    csrf = login(client, "olga")
    queue = client.get("/console/api/operations").json()["enrolment"]
    assert [(e["mgmc"], e["status"]) for e in queue] == [(mgmc, "pending")]
    r = client.post(f"/console/api/enrolment/{mgmc}/approve", headers=csrf).json()
    assert r["status"] == "authorised" and r["chain"]["user"] == "olga"
    tx = client.get(f"/console/api/ledger/dso/blocks/{r['chain']['height']}").json()["transactions"][0]
    assert tx["kind"] == "enrol" and tx["body"]["mgmc"] == mgmc and tx["body"]["operator"] == "olga"
    assert client.post(f"/console/api/enrolment/{mgmc}/approve", headers=csrf).status_code == 409
    r = client.post(f"/console/api/enrolment/{mgmc}/revoke", headers=csrf).json()
    assert r["status"] == "revoked"
    block = client.get(f"/console/api/ledger/dso/blocks/{r['chain']['height']}").json()
    kinds = [(t["kind"], t["body"]["operator"]) for t in block["transactions"]]
    assert kinds == [("gov.revoke", "olga"), ("gov.revoke", "olga"), ("operator_action", "olga")]
    audit = client.get("/console/api/operations").json()["audit"]
    assert [(a["user"], a["action"]) for a in audit] == [
        ("olga", "revoke enrolment of mgmc-mg2"), ("olga", "approve enrolment of mgmc-mg2")]  # fmt: skip


def test_admins_see_users_and_refusal_counters(client: TestClient) -> None:
    csrf = login(client, "adam")
    assert {u["name"] for u in client.get("/console/api/users", headers=csrf).json()["users"]} == {
        "olga",
        "vera",
        "adam",
    }
    sec = client.get("/console/api/security").json()
    assert set(sec["counts"]) >= {"bad_login", "csrf", "forbidden", "malformed", "unauthenticated"}


@pytest.fixture
def guarded(users_file: Path) -> Iterator[TestClient]:
    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(users_file), "lab_market": False, "guard_dso_api": True}}
    )
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as c:
        yield c


def test_the_guard_keeps_dso_api_operator_actions_for_operators(guarded: TestClient) -> None:
    actions = [
        "/api/dso/enrolment/tokens",
        f"/api/dso/enrolment/{MGMC}/revoke",
        "/api/dso/plans/plan-1/approve",
        "/api/dso/reconfiguration",
    ]
    for path in actions:
        assert guarded.post(path).status_code == 401
    csrf = login(guarded, "vera")
    for path in actions:
        assert guarded.post(path, headers=csrf).status_code == 403
    csrf = login(guarded, "olga")
    assert guarded.post("/api/dso/enrolment/tokens").status_code == 403  # no CSRF token
    assert guarded.post("/api/dso/enrolment/tokens", headers=csrf).status_code == 201
    c = counts(guarded)
    assert c["unauthenticated"] == 4 and c["forbidden"] == 4 and c["csrf"] == 1
    # what MGMCs call stays open: a signed enrolment request is checked by its signature and token
    bad = {"token": "x", "mgmc": MGMC, "anonym": "cd" * 32, "label": "mg1", "signature": "00" * 64}
    guarded.cookies.clear()
    assert guarded.post("/api/dso/enrolment", json=bad).status_code == 403
    assert "token" in guarded.post("/api/dso/enrolment", json=bad).json()["detail"]


def test_replica_heads_from_health_reports_show_agreement_and_lag(client: TestClient) -> None:
    csrf = login(client, "olga")
    preview = client.post("/console/api/switches/33/preview", headers=csrf, json={"close": True}).json()
    client.post(
        "/console/api/switches/33/operate", headers=csrf, json={"close": True, "confirm": preview["confirm"]}
    )
    ours = client.get("/console/api/ledger").json()["chains"]["dso"]
    board = client.app.state.board  # type: ignore[attr-defined]

    def report(node: str, ledger: dict[str, Any]) -> None:
        body = {"node": node, "devices": [], "ledger": ledger}
        assert board.ingest(f"peergrid/feeder1/health/{node}", json.dumps(body).encode())

    report("mgmc-mg1", {ours["chain"]: {"height": ours["height"], "head": ours["head"]}})
    report("mgmc-mg2", {ours["chain"]: ours["height"] - 1})
    chain = client.get("/console/api/ledger").json()["chains"]["dso"]
    assert chain["agree"] and [r["behind"] for r in chain["replicas"]] == [0, 0, 1]
    report("mgmc-mg3", {ours["chain"]: {"height": ours["height"], "head": "ff" * 32}})
    assert client.get("/console/api/ledger").json()["chains"]["dso"]["agree"] is False
    # chains the server does not hold (the MGMCs' own) are listed from their reports alone
    report("mgmc-mg4", {"mgmc-feeder1": {"height": 7, "head": "aa" * 32}})
    report("mgmc-mg5", {"mgmc-feeder1": {"height": 6, "head": "bb" * 32}})
    other = client.get("/console/api/ledger").json()["chains"]["mgmc-feeder1"]
    assert not other["held"] and other["agree"] and other["height"] == 7 and other["head"] == "aa" * 32
    assert [(r["node"], r["behind"]) for r in other["replicas"]] == [("mgmc-mg4", 0), ("mgmc-mg5", 1)]


def test_user_changes_by_the_cli_reach_a_running_server(client: TestClient, users_file: Path) -> None:
    csrf = login(client, "olga")
    assert client.get("/console/api/session").status_code == 200
    store = UserStore(users_file, hasher=fast_hasher())
    store.add("olga", "viewer", PASSWORD, replace=True)  # demoted while logged in
    assert client.get("/console/api/session").status_code == 401  # the old operator session is gone
    store.add("nina", "operator", PASSWORD)  # added while the server runs
    login(client, "nina")
    store.remove("nina")
    assert client.post("/console/api/plans", headers=csrf).status_code == 401
    r = client.post("/console/api/login", json={"username": "nina", "password": PASSWORD})
    assert r.status_code == 401


def test_the_feeder_view_shows_the_injections_mgmcs_report(client: TestClient) -> None:
    dso = client.app.state.dso  # type: ignore[attr-defined]
    for mg, p_w in (("mg1", 250_000), ("mg4", -200_000)):  # each from its enrolled MGMC, signed
        mgmc, anonym, token = Keypair.generate(), Keypair.generate(), dso.enrolment.issue_token()
        sig = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, mg))
        dso.enrolment.request(token, mgmc.public, anonym.public, mg, sig)
        r = client.post("/api/dso/injections", json=signed_injection(mgmc, dso.chain.genesis.chain, 3, p_w))
        assert r.status_code == 201
    login(client, "vera")
    feeder = client.get("/console/api/feeder").json()
    shown = {m["mg"]: m["p_kw"] for m in feeder["mgs"]}
    assert shown["mg1"] == 250.0 and shown["mg4"] == -200.0 and shown["mg2"] == 0.0
