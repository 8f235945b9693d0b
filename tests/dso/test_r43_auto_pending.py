"""R43: in auto mode (the lab's policy, `loop.auto_enrol`) a request the enrolment file took but whose approval
never landed on the DSO chain is not left pending for ever by a restart.

The file keeps the request pending before the approval is sent (`EnrolmentService.request`); a server that stops
before the approval lands, or a chain that refuses or times out, leaves it so. Nobody approves in auto mode, and
the MGMC's edge, answered 'pending' by `GET /api/dso/enrolment/<key>`, polls for ever and never sends its request
again. Before D5's file a restart forgot the queue: the edge's GET found nothing (404) and it asked again. Now the
start drops what auto mode left pending (after the chain's word authorised what landed), and the MGMC's next turn
is enrolled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from peergrid_dso.app import create_app
from peergrid_dso.config import DsoSettings
from peergrid_dso.services.enrolment import EnrolmentService, enrolment_digest
from peergrid_ledger.keys import Keypair


def settings(tmp_path: Path) -> Any:
    """The lab's server (auto approval) with a data directory: its enrolment queue kept in a file."""
    console = {
        "users_file": str(tmp_path / "data" / "console-users.json"), "lab_market": False, "lab_drift": False,
        "guard_dso_api": False,
    }  # fmt: skip
    return DsoSettings.model_validate({"console": console})


def test_an_auto_approval_that_never_landed_is_asked_again_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    with TestClient(
        create_app(settings(tmp_path), listen=False),
        base_url="http://127.0.0.1:8080",
        raise_server_exceptions=False,
    ) as client:
        token = client.post("/api/dso/enrolment/tokens", json={"label": "mg1"}).json()["token"]
        body = {
            "token": token, "mgmc": mgmc.public.hex(), "anonym": anonym.public.hex(), "label": "mg1",
            "signature": mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg1")).hex(),
        }  # fmt: skip

        def not_final(self: EnrolmentService, key: bytes, operator: str = "") -> None:
            raise RuntimeError("enrol rejected: timeout not final in 8.0 s")

        monkeypatch.setattr(EnrolmentService, "approve", not_final)
        assert client.post("/api/dso/enrolment", json=body).status_code == 500  # the edge: try again later
        monkeypatch.undo()
        assert client.get(f"/api/dso/enrolment/{mgmc.public.hex()}").json()["status"] == "pending"

    with TestClient(create_app(settings(tmp_path), listen=False), base_url="http://127.0.0.1:8080") as client:
        # before: 200 pending, which the edge polls for ever; 403 'already enrolled' had it asked again
        assert client.get(f"/api/dso/enrolment/{mgmc.public.hex()}").status_code == 404
        r = client.post("/api/dso/enrolment", json=body)  # its next turn, with the token it has
        assert r.status_code == 201 and r.json()["status"] == "authorised", r.text

    with TestClient(create_app(settings(tmp_path), listen=False), base_url="http://127.0.0.1:8080") as client:
        assert client.get(f"/api/dso/enrolment/{mgmc.public.hex()}").json()["status"] == "authorised"


def test_outside_auto_mode_a_pending_request_waits_for_its_operator() -> None:
    service = EnrolmentService(recorder=None, auto=False)
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    token = service.issue_token("mg1")
    signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg1"))
    service.request(token, mgmc.public, anonym.public, "mg1", signature)
    assert service.forget_unapproved() == [] and service.enrolments[mgmc.public].status == "pending"
