"""REST API: enrolment, injections, network state, OPF, plans and switching, ledger; 4xx on bad input."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from peergrid_dso.routes.dso import install_dso_api
from peergrid_dso.services.container import build_dso_services
from peergrid_dso.services.enrolment import enrolment_digest
from peergrid_dso.services.injections import signed_injection
from peergrid_ledger.keys import Keypair

MGS = {"mg1": 18, "mg2": 33, "mg3": 25}


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_dso_api(app)
    app.state.dso = build_dso_services(MGS)
    return TestClient(app)


def signed_request(client: TestClient, mgmc: Keypair, anonym: Keypair, label: str = "mg1") -> dict[str, str]:
    token = client.post("/api/dso/enrolment/tokens").json()["token"]
    sig = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, label))
    return {
        "token": token,
        "mgmc": mgmc.public.hex(),
        "anonym": anonym.public.hex(),
        "label": label,
        "signature": sig.hex(),
    }


def test_enrolment_token_is_one_time_and_signature_checked(client: TestClient) -> None:
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    body = signed_request(client, mgmc, anonym)
    forged = {**body, "signature": Keypair.generate().sign(b"x" * 32).hex()}
    r = client.post("/api/dso/enrolment", json=forged)
    assert r.status_code == 403 and "signature" in r.json()["detail"]
    r = client.post("/api/dso/enrolment", json=body)
    assert r.status_code == 201 and r.json()["status"] == "authorised"  # lab: automatic
    r = client.post("/api/dso/enrolment", json=body)
    assert r.status_code == 403 and "token" in r.json()["detail"]
    r = client.post(f"/api/dso/enrolment/{mgmc.public.hex()}/revoke")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert client.post(f"/api/dso/enrolment/{mgmc.public.hex()}/revoke").status_code == 409
    kinds = [rec["kind"] for rec in client.get("/api/dso/ledger").json()["records"]]
    assert kinds == ["enrol", "gov.revoke", "gov.revoke"]  # the MGMC's identity key and its anonym


def test_injections_network_state_and_opf(client: TestClient) -> None:
    chain = client.app.state.dso.chain.genesis.chain  # type: ignore[attr-defined]
    anonyms = {}
    for mg, p_w in (("mg1", 3_000_000), ("mg2", 1_500_000), ("mg3", -500_000)):
        mgmc, anonyms[mg] = Keypair.generate(), Keypair.generate()
        enrolment = signed_request(client, mgmc, anonyms[mg], mg)
        assert client.post("/api/dso/enrolment", json=enrolment).status_code == 201
        r = client.post("/api/dso/injections", json=signed_injection(mgmc, chain, 4, p_w))
        assert r.status_code == 201 and r.json()["mg"] == mg
    anonym = anonyms["mg1"]
    state = client.get("/api/dso/network", params={"interval": 4}).json()
    assert not state["secure"] and "bus 18" in state["violations"][0]
    opf = client.post("/api/dso/opf", json={"interval": 4}).json()
    assert [c["mg"] for c in opf["contracts"]] == ["mg1"] and opf["sent_to"] == ["mg1"]
    sealed = [
        r for r in client.get("/api/dso/ledger").json()["records"] if r["kind"] == "adjustment_contract"
    ]
    assert len(sealed) == 1 and sealed[0]["body"]["to"] == anonym.public.hex()
    contract = json.loads(anonym.unseal(bytes.fromhex(sealed[0]["body"]["ciphertext"])))
    assert contract["mg"] == "mg1" and contract["max_injection_w"] < 3_000_000
    assert client.get("/api/dso/opf").status_code == 200


def test_reconfiguration_is_validated_by_pandapower(client: TestClient) -> None:
    r = client.post("/api/dso/reconfiguration", json={"vmin_pu": 0.9})
    assert r.status_code == 200
    body = r.json()
    assert body["open_branches"] == [7, 9, 14, 32, 37]
    assert body["pandapower_losses_kw"] == pytest.approx(body["losses_kw"], rel=1e-3)
    assert client.get("/api/dso/reconfiguration").json() == body


def test_plan_waits_for_approval_then_switches(client: TestClient) -> None:
    r = client.post("/api/dso/plans", json={"target_open": [7, 9, 14, 32, 37]})
    assert r.status_code == 201 and r.json()["status"] == "pending"
    plan = r.json()["plan"]
    assert client.get("/api/dso/network").json()["open_branches"] == [33, 34, 35, 36, 37]
    r = client.post(f"/api/dso/plans/{plan}/approve")
    assert r.status_code == 200 and r.json()["ok"], r.json()
    assert client.get("/api/dso/network").json()["open_branches"] == [7, 9, 14, 32, 37]
    kinds = [rec["kind"] for rec in client.get("/api/dso/ledger").json()["records"]]
    steps = r.json()["steps"]
    assert kinds == ["switching_plan", *["switching_step"] * len(steps), "switching_result"] and steps


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        (
            "post",
            "/api/dso/enrolment",
            {"token": "t", "mgmc": "zz", "anonym": "00", "label": "x", "signature": "00"},
            422,
        ),
        ("post", "/api/dso/enrolment/abcd/approve", None, 400),
        ("post", "/api/dso/enrolment/" + "00" * 32 + "/explode", None, 404),
        ("post", "/api/dso/plans", {"target_open": [999]}, 422),
        ("post", "/api/dso/plans", {"target_open": [7, 9]}, 422),
        ("post", "/api/dso/plans/plan-77/approve", None, 404),
        ("post", "/api/dso/reconfiguration", {"vmin_pu": 2}, 422),
        ("post", "/api/dso/opf", {"interval": 1, "p_min_mw": 3, "p_max_mw": 1}, 422),
        ("get", "/api/dso/reconfiguration", None, 404),
    ],
)
def test_bad_requests_get_4xx_with_a_reason(
    client: TestClient, method: str, path: str, body, status: int
) -> None:
    r = client.request(method, path, json=body)
    assert r.status_code == status
    assert r.json()["detail"]


def test_rest_switching_is_recorded_with_the_operator_who_asked(operator_session) -> None:  # type: ignore[no-untyped-def]
    """A plan made and approved through the REST API with an operator's console session ends with an
    `operator_action` naming that operator and every switching record the approval caused."""
    c, csrf = operator_session
    c.app.state.dso.switching.auto = False
    r = c.post("/api/dso/plans", json={"target_open": [7, 9, 14, 32, 37]}, headers=csrf)
    assert r.status_code == 201, r.text
    r = c.post(f"/api/dso/plans/{r.json()['plan']}/approve", headers=csrf)
    assert r.status_code == 200 and r.json()["ok"], r.text
    records = c.get("/api/dso/ledger").json()["records"]
    kinds = [rec["kind"] for rec in records]
    made, approved = (i for i, kind in enumerate(kinds) if kind == "operator_action")
    assert kinds[:made] == ["switching_plan"] and approved == len(kinds) - 1, kinds
    assert records[made]["body"]["operator"] == records[approved]["body"]["operator"] == "olga"
    assert len(records[made]["body"]["txs"]) == 1 and "approve" in records[approved]["body"]["action"]
    caused = kinds[made + 1 : approved]
    assert len(records[approved]["body"]["txs"]) == len(caused)
    assert set(caused) == {"switching_step", "switching_result"}
