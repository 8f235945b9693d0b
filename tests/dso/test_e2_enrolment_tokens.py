"""Enrolment tokens an operator hands to Ansible (U3-8): `peergrid-dso enrolment token create [--label MG]` writes
them to the DSO's data directory, where they outlive a restart of the server (a token flashed days before its
first boot is still good); a damaged token file is a clear error (the CLI, `serve`, and the API's 503), never an
empty token set; a token for one MG is refused under another; a token's own MGMC may send its request again."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from peergrid_dso.cli import main
from peergrid_dso.services.enrolment import EnrolmentRefused, EnrolmentService, enrolment_digest
from peergrid_dso.services.enrolment_tokens import TokenStore, TokenStoreError, token_store_path
from peergrid_ledger.keys import Keypair


class Recorder:
    def submit(self, kind: str, body: dict[str, Any]) -> None:
        pass


def config(tmp_path: Path, users: bool = True, **console: Any) -> Path:
    path = tmp_path / "dso.yaml"
    if users:
        console["users_file"] = str(tmp_path / "data" / "console-users.json")
    path.write_text(json.dumps({"console": console | {"lab_market": False, "lab_drift": False}}))
    return path


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def ask(service: EnrolmentService, token: str, mgmc: Keypair, anonym: Keypair, label: str = "mg1") -> Any:
    signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, label))
    return service.request(token, mgmc.public, anonym.public, label, signature)


def test_a_token_from_the_cli_outlives_a_restart_and_is_kept_only_as_its_hash(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    code, out = cli("enrolment", "token", "create", "--config", str(cfg), "--label", "mg-school")
    token = out.strip()
    assert code == 0 and len(token) >= 20 and out.count("\n") == 1
    path = token_store_path(tmp_path / "data" / "console-users.json")
    assert path is not None and token not in path.read_text() and path.stat().st_mode & 0o777 == 0o600
    # the server, started later (a new store on the same file, as after a restart), takes it once
    service = EnrolmentService(Recorder(), auto=False, store=TokenStore.open(path))
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    assert ask(service, token, mgmc, anonym, "mg-school").status == "pending"
    restarted = EnrolmentService(Recorder(), auto=False, store=TokenStore.open(path))
    with pytest.raises(EnrolmentRefused, match="unknown or already used"):
        ask(restarted, token, Keypair.generate(), Keypair.generate(), "mg-school")
    # its own MGMC asks again (the restart lost its pending enrolment): it waits again
    assert ask(restarted, token, mgmc, anonym, "mg-school").status == "pending"
    code, listing = cli("enrolment", "token", "list", "--config", str(cfg))
    assert code == 0 and "mg-school" in listing and f"used by MGMC {mgmc.public.hex()[:12]}" in listing
    assert token not in listing


def test_a_token_for_one_mg_is_refused_under_another(tmp_path: Path) -> None:
    service = EnrolmentService(Recorder(), auto=True, store=TokenStore.open(tmp_path / "tokens.json"))
    token = service.issue_token("mg-school")
    with pytest.raises(EnrolmentRefused, match="this token was issued for mg-school, not mg-depot"):
        ask(service, token, Keypair.generate(), Keypair.generate(), "mg-depot")
    assert ask(service, token, Keypair.generate(), Keypair.generate(), "mg-school").status == "authorised"
    memory = EnrolmentService(Recorder(), auto=True)  # the lab's: in memory, the same rule
    token = memory.issue_token("mg1")
    with pytest.raises(EnrolmentRefused, match="issued for mg1, not mg2"):
        ask(memory, token, Keypair.generate(), Keypair.generate(), "mg2")
    with pytest.raises(ValueError, match="label must be 1-64"):
        memory.issue_token("x" * 65)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"type": "peergrid-enrolment-tokens-v1", "tok', "not a JSON document (damaged)"),
        (b"{}", "not a peergrid enrolment token file"),
        (b'{"type": "peergrid-enrolment-tokens-v1", "tokens": {"ab": {}}}', "a malformed token entry"),
    ],
)
def test_a_damaged_token_file_is_refused_clearly_and_left_untouched(
    tmp_path: Path, body: bytes, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path)
    path = tmp_path / "data" / "enrolment-tokens.json"
    path.parent.mkdir()
    path.write_bytes(body)
    with pytest.raises(TokenStoreError, match=re.escape(words)) as refused:
        TokenStore.open(path)
    assert str(path) in str(refused.value) and "move it aside" in str(refused.value)
    assert cli("enrolment", "token", "create", "--config", str(cfg))[0] == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    with pytest.raises(SystemExit) as served:  # before the web server: one line, exit 2
        main(["serve", "--config", str(cfg)])
    assert served.value.code == 2 and words in capsys.readouterr().err
    assert path.read_bytes() == body


def test_a_token_file_damaged_while_the_server_runs_is_a_503_not_no_token(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from peergrid_dso.app import create_app
    from peergrid_dso.config import DsoSettings
    from peergrid_ledger.settings import load_settings

    # no operator here: the token route is the operator's otherwise (guard_dso_api)
    settings = load_settings(str(config(tmp_path, guard_dso_api=False)), DsoSettings)
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:
        r = client.post("/api/dso/enrolment/tokens", json={"label": "mg1"})
        assert r.status_code == 201 and r.json()["label"] == "mg1"
        token = r.json()["token"]
        path = tmp_path / "data" / "enrolment-tokens.json"
        assert json.loads(path.read_text())["type"] == "peergrid-enrolment-tokens-v1"
        path.write_text("garbage")
        mgmc, anonym = Keypair.generate(), Keypair.generate()
        body = {
            "token": token, "mgmc": mgmc.public.hex(), "anonym": anonym.public.hex(), "label": "mg1",
            "signature": mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg1")).hex(),
        }  # fmt: skip
        r = client.post("/api/dso/enrolment", json=body)
        assert r.status_code == 503 and "not a JSON document" in r.json()["detail"]
        assert client.post("/api/dso/enrolment/tokens").status_code == 503
        assert path.read_text() == "garbage"


def test_a_config_without_a_data_directory_is_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["enrolment", "token", "create", "--config", str(config(tmp_path, users=False))])
    assert refused.value.code == 2
    assert "console.users_file is not set" in capsys.readouterr().err


def test_the_console_issues_a_token_an_operator_hands_to_ansible(
    operator_session: Any, tmp_path: Path
) -> None:
    """Operations -> Enrolment's 'Issue an enrolment token' (POST /console/api/enrolment/tokens): an operator's
    session and CSRF token; the token, bound to the MG named, lands in the data directory's store and enrols."""
    client, csrf = operator_session
    assert (
        client.post("/console/api/enrolment/tokens", json={"label": "mg-school"}).status_code == 403
    )  # no CSRF
    assert client.post("/console/api/enrolment/tokens", json={"label": ""}, headers=csrf).status_code == 422
    r = client.post("/console/api/enrolment/tokens", json={"label": "mg-school"}, headers=csrf)
    assert r.status_code == 201 and r.json()["label"] == "mg-school"
    token = r.json()["token"]
    (record,) = TokenStore.open(tmp_path / "enrolment-tokens.json").records().values()
    assert record.label == "mg-school" and record.used_by is None
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    body = {
        "token": token, "mgmc": mgmc.public.hex(), "anonym": anonym.public.hex(), "label": "mg-school",
        "signature": mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg-school")).hex(),
    }  # fmt: skip
    assert client.post("/api/dso/enrolment", json=body).status_code == 201
    any_mg = client.post("/console/api/enrolment/tokens", json={}, headers=csrf)
    assert any_mg.status_code == 201 and any_mg.json()["label"] is None
