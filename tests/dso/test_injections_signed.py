"""/api/dso/injections takes only reports signed by an enrolled, authorised MGMC; every refusal is a 4xx
with a reason and is counted (forged, replayed, stale, unknown key, malformed)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from peergrid_dso.routes.dso import install_dso_api
from peergrid_dso.services.container import build_dso_services
from peergrid_dso.services.injections import signed_injection
from peergrid_ledger.keys import Keypair

from .test_api import signed_request

URL = "/api/dso/injections"


@pytest.fixture
def lab() -> tuple[TestClient, Keypair, str]:
    app = FastAPI()
    install_dso_api(app)
    app.state.dso = build_dso_services({"mg1": 18, "mg2": 33})
    client = TestClient(app)
    mgmc = Keypair.generate()
    assert (
        client.post("/api/dso/enrolment", json=signed_request(client, mgmc, Keypair.generate())).status_code
        == 201
    )
    return client, mgmc, app.state.dso.chain.genesis.chain


def refusals(client: TestClient) -> dict[str, int]:
    counts: dict[str, int] = client.get(f"{URL}/refusals").json()
    return counts


def test_a_signed_report_is_stored_for_its_mg(lab: tuple[TestClient, Keypair, str]) -> None:
    client, mgmc, chain = lab
    r = client.post(URL, json=signed_injection(mgmc, chain, 7, 250_000, -10_000))
    assert r.status_code == 201 and r.json() == {
        "interval": 7,
        "mg": "mg1",
        "revision": 0,
        "accepted": True,
        "new": True,
    }
    assert client.app.state.dso.injections[7] == {"mg1": (0.25, -0.01)}  # type: ignore[attr-defined]
    again = client.post(URL, json=signed_injection(mgmc, chain, 7, 250_000, -10_000))
    assert again.status_code == 200 and again.json()["new"] is False  # the same report twice changes nothing
    assert refusals(client) == {}


def test_forged_reports_are_refused(lab: tuple[TestClient, Keypair, str]) -> None:
    client, mgmc, chain = lab
    body = signed_injection(mgmc, chain, 3, 100_000)
    for forged in (
        {**body, "p_w": 900_000},  # value changed after signing
        {**body, "signature": Keypair.generate().sign(b"x").hex()},  # someone else's signature
        signed_injection(mgmc, "another-chain", 3, 100_000) | {"mgmc": mgmc.public.hex()},  # other DSO chain
    ):
        r = client.post(URL, json=forged)
        assert r.status_code == 403 and r.json()["detail"].startswith("forged: signature does not verify")
    assert refusals(client) == {"forged": 3}
    assert 3 not in client.app.state.dso.injections  # type: ignore[attr-defined]


def test_replayed_and_stale_reports_are_refused(lab: tuple[TestClient, Keypair, str]) -> None:
    client, mgmc, chain = lab
    assert client.post(URL, json=signed_injection(mgmc, chain, 5, 100_000)).status_code == 201
    r = client.post(URL, json=signed_injection(mgmc, chain, 5, 400_000))  # same interval, other value
    assert r.status_code == 409 and r.json()["detail"].startswith("replay:")
    r = client.post(URL, json=signed_injection(mgmc, chain, 4, 100_000))  # an older interval
    assert r.status_code == 409 and r.json()["detail"].startswith("stale:")
    # A revision after re-bargaining is accepted; going back to revision 0 is not.
    assert client.post(URL, json=signed_injection(mgmc, chain, 5, 80_000, revision=1)).status_code == 201
    r = client.post(URL, json=signed_injection(mgmc, chain, 5, 100_000, revision=0))
    assert r.status_code == 409 and "revision > 1" in r.json()["detail"]
    assert client.app.state.dso.injections[5] == {"mg1": (0.08, 0.0)}  # type: ignore[attr-defined]
    assert refusals(client) == {"replay": 2, "stale": 1}


def test_unknown_and_revoked_keys_are_refused(lab: tuple[TestClient, Keypair, str]) -> None:
    client, mgmc, chain = lab
    r = client.post(URL, json=signed_injection(Keypair.generate(), chain, 1, 1_000))
    assert r.status_code == 403 and r.json()["detail"].startswith("unknown_key:")
    assert client.post(f"/api/dso/enrolment/{mgmc.public.hex()}/revoke").status_code == 200
    r = client.post(URL, json=signed_injection(mgmc, chain, 2, 1_000))
    assert r.status_code == 403 and r.json()["detail"].startswith("unknown_key:")
    assert refusals(client) == {"unknown_key": 2}


@pytest.mark.parametrize(
    "change",
    [
        {"p_w": "lots"},
        {"p_w": 0.5},
        {"interval": -1},
        {"p_w": 10**12},
        {"mgmc": "zz"},
        {"signature": "00"},
        {"extra": 1},
        {"mg": "mg1"},
    ],
)
def test_malformed_reports_are_refused(
    lab: tuple[TestClient, Keypair, str], change: dict[str, object]
) -> None:
    client, mgmc, chain = lab
    r = client.post(URL, json=signed_injection(mgmc, chain, 1, 1_000) | change)
    assert r.status_code == 422 and r.json()["detail"].startswith("malformed:")
    assert refusals(client) == {"malformed": 1}


def test_a_body_that_is_not_json_is_refused(lab: tuple[TestClient, Keypair, str]) -> None:
    client, _, _ = lab
    r = client.post(URL, content=b"\xff not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("malformed:")
    assert refusals(client) == {"malformed": 1}


def test_the_signed_body_is_in_the_openapi_schema(lab: tuple[TestClient, Keypair, str]) -> None:
    client, _, _ = lab
    body = client.get("/openapi.json").json()["paths"]["/api/dso/injections"]["post"]["requestBody"]
    fields = body["content"]["application/json"]["schema"]["properties"]
    assert {"mgmc", "interval", "revision", "p_w", "q_var", "signature"} <= set(fields)
