"""Who may read the DSO's enrolments (review41 R41-3): the list names every MG beside its anonym, the pseudonym it
trades under, and `GET /api/dso/enrolment` gave it to anyone who reached the server (over the site's network
since the DSO serves HTTPS itself). With the guard on it now takes a viewer's session, as the console's Operations
view does; an MGMC asks for its own status alone at `GET /api/dso/enrolment/<its key>`, open, which names neither
anonym nor label."""

from __future__ import annotations

import json
from pathlib import Path

from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from peergrid_dso.app import create_app
from peergrid_dso.auth.users import UserStore
from peergrid_dso.config import DsoSettings
from peergrid_dso.services.enrolment import enrolment_digest
from peergrid_ledger.keys import Keypair
from peergrid_ledger.settings import load_settings

PASSWORD = "a long test password"


def test_the_list_takes_a_session_and_an_mgmc_asks_for_its_own_status(tmp_path: Path) -> None:
    users = tmp_path / "data" / "console-users.json"
    users.parent.mkdir()
    UserStore(users, hasher=PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)).add(
        "vera", "viewer", PASSWORD
    )
    cfg = tmp_path / "dso.yaml"
    cfg.write_text(
        json.dumps({"console": {"users_file": str(users), "lab_market": False, "lab_drift": False}})
    )
    settings = load_settings(str(cfg), DsoSettings)
    with TestClient(create_app(settings, listen=False), base_url="https://127.0.0.1:8443") as client:
        token = client.app.state.dso.enrolment.issue_token("mg-school")  # type: ignore[attr-defined]
        mgmc, anonym = Keypair.generate(), Keypair.generate()
        signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg-school"))
        body = {
            "token": token, "mgmc": mgmc.public.hex(), "anonym": anonym.public.hex(), "label": "mg-school",
            "signature": signature.hex(),
        }  # fmt: skip
        assert client.post("/api/dso/enrolment", json=body).status_code == 201
        listing = client.get("/api/dso/enrolment")
        assert listing.status_code == 401 and anonym.public.hex() not in listing.text  # before: 200, the map
        own = client.get(f"/api/dso/enrolment/{mgmc.public.hex()}")
        assert own.status_code == 200 and own.json() == {"mgmc": mgmc.public.hex(), "status": "authorised"}
        assert client.get(f"/api/dso/enrolment/{Keypair.generate().public.hex()}").status_code == 404
        assert client.get("/api/dso/enrolment/not-hex").status_code == 400
        login = client.post("/console/api/login", json={"username": "vera", "password": PASSWORD})
        assert login.status_code == 200, login.text
        listing = client.get("/api/dso/enrolment")
        assert listing.status_code == 200 and listing.json()[0]["anonym"] == anonym.public.hex()
