"""D5: the DSO server keeps its enrolment queue across a restart (`services.enrolment_file`, beside the console's
user file). Before, the queue lived in memory: an MGMC waiting for the operator's approval vanished from the
console at a restart until it asked again, and one enrolled over the API (the pilot's way) was answered 404 for
ever after (its edge, once authorised, never asks again), so the console could no longer list or revoke it. A
damaged file stops `serve` and `check-config` with one line naming it, never an empty queue; the closed loop's
config naming the old keys of an MG that enrolled again with new ones stops them too."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from peergrid_dso.cli import main
from peergrid_dso.services.enrolment import Enrolment, EnrolmentService, enrolment_digest
from peergrid_dso.services.enrolment_file import (
    FILE_TYPE,
    EnrolmentFile,
    EnrolmentFileError,
    check_at_start,
    enrolment_file_path,
    loop_key_faults,
)
from peergrid_dso.services.enrolment_tokens import TokenStore, token_store_path
from peergrid_ledger import keys
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.settings import ConfigError


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def submit(self, kind: str, body: dict[str, Any]) -> None:
        self.records.append((kind, body))


def ask(service: EnrolmentService, token: str, mgmc: Keypair, anonym: Keypair, label: str) -> Enrolment:
    signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, label))
    return service.request(token, mgmc.public, anonym.public, label, signature)


def server(data: Path) -> EnrolmentService:
    """The enrolment service as a (re)started server builds it on its data directory (`console.state`)."""
    users = data / "console-users.json"
    token_file, queue = token_store_path(users), enrolment_file_path(users)
    assert token_file is not None and queue is not None
    service = EnrolmentService(Recorder(), auto=False, store=TokenStore.open(token_file))
    service.keep_in(EnrolmentFile(queue))
    return service


def test_a_pending_enrolment_outlives_a_restart_and_so_do_approval_and_revocation(tmp_path: Path) -> None:
    first = server(tmp_path)
    token = first.issue_token("mg-school")
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    assert ask(first, token, mgmc, anonym, "mg-school").status == "pending"
    path = tmp_path / "enrolments.json"
    assert path.stat().st_mode & 0o777 == 0o600 and json.loads(path.read_text())["type"] == FILE_TYPE

    second = server(tmp_path)  # before: {} - the operator had nothing to approve until the MGMC asked again
    assert [e.to_json() for e in second.enrolments.values()] == [
        {"mgmc": mgmc.public.hex(), "anonym": anonym.public.hex(), "label": "mg-school", "status": "pending"}
    ]
    second.approve(mgmc.public, "olga")
    assert second.recorder.records[0][0] == "enrol"

    third = server(tmp_path)  # authorised: its edge never asks again, so the DSO must still know it
    assert third.enrolments[mgmc.public].status == "authorised"
    third.revoke(mgmc.public, "olga")
    fourth = server(tmp_path)
    assert fourth.enrolments[mgmc.public].status == "revoked"
    # its name is free again for new keys, and its own keys stay out
    with pytest.raises(ValueError, match="revoked"):
        ask(fourth, token, mgmc, anonym, "mg-school")
    again = fourth.issue_token("mg-school")
    assert ask(fourth, again, Keypair.generate(), Keypair.generate(), "mg-school").status == "pending"
    assert len(server(tmp_path).enrolments) == 2


def test_a_request_the_file_cannot_take_is_not_taken_and_its_mgmc_asks_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = server(tmp_path)
    token = service.issue_token("mg1")
    mgmc, anonym = Keypair.generate(), Keypair.generate()

    def full_disk(self: EnrolmentFile, enrolments: Any) -> None:
        raise EnrolmentFileError(f"{self.path}: cannot write the enrolment file (No space left on device)")

    monkeypatch.setattr(EnrolmentFile, "write", full_disk)
    with pytest.raises(EnrolmentFileError, match="No space left"):
        ask(service, token, mgmc, anonym, "mg1")
    assert service.enrolments == {}  # not listed as pending while no restart would find it
    monkeypatch.undo()
    assert ask(service, token, mgmc, anonym, "mg1").status == "pending"  # its token lets it ask again
    assert mgmc.public in server(tmp_path).enrolments


def test_an_auto_approval_the_file_missed_is_still_answered_authorised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service = server(tmp_path)
    service.auto = True  # the lab's policy
    token = service.issue_token("mg1")
    written: list[int] = []

    def second_write_fails(self: EnrolmentFile, enrolments: Any) -> None:
        written.append(1)
        if len(written) > 1:
            raise EnrolmentFileError(
                f"{self.path}: cannot write the enrolment file (No space left on device)"
            )

    monkeypatch.setattr(EnrolmentFile, "write", second_write_fails)
    # the approval landed on the chain: a refusal (403) would make its edge record 'refused' and stop asking
    assert ask(service, token, Keypair.generate(), Keypair.generate(), "mg1").status == "authorised"
    assert "approved on the DSO chain, but the enrolment file could not be written" in caplog.text


def test_the_lab_server_still_answers_an_mgmc_it_enrolled_before_its_restart(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from peergrid_dso.app import create_app
    from peergrid_dso.config import DsoSettings

    users = tmp_path / "data" / "console-users.json"
    console = {"users_file": str(users), "lab_market": False, "lab_drift": False, "guard_dso_api": False}
    settings = DsoSettings.model_validate({"console": console})
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:
        token = client.post("/api/dso/enrolment/tokens", json={"label": "mg1"}).json()["token"]
        body = {
            "token": token, "mgmc": mgmc.public.hex(), "anonym": anonym.public.hex(), "label": "mg1",
            "signature": mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg1")).hex(),
        }  # fmt: skip
        answer = client.post("/api/dso/enrolment", json=body).json()
        assert answer["status"] == "authorised"  # (the lab: auto)
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:
        r = client.get(f"/api/dso/enrolment/{mgmc.public.hex()}")  # before: 404, no enrolment for this MGMC
        assert r.status_code == 200 and r.json() == {"mgmc": mgmc.public.hex(), "status": "authorised"}


def entry(**changed: Any) -> dict[str, Any]:
    return {"mgmc": "11" * 32, "anonym": "22" * 32, "label": "mg1", "status": "pending"} | changed


DAMAGED = {
    "not JSON": (b'{"type": "peergrid-enrolments-v1", "enrol', "not a JSON document (damaged)"),
    "another file's type": (
        json.dumps({"type": "peergrid-enrolment-tokens-v1", "tokens": {}}).encode(),
        f"not a peergrid enrolment file (expected {FILE_TYPE})",
    ),
    "a status it does not know": (
        json.dumps({"type": FILE_TYPE, "enrolments": [entry(status="approved")]}).encode(),
        "enrolment 1 is malformed",
    ),
    "a short key": (
        json.dumps({"type": FILE_TYPE, "enrolments": [entry(), entry(mgmc="33" * 31)]}).encode(),
        "enrolment 2 is malformed",
    ),
    "one MGMC twice": (
        json.dumps({"type": FILE_TYPE, "enrolments": [entry(), entry(status="authorised")]}).encode(),
        "enrolment 2 repeats MGMC 111111111111",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_enrolment_file_stops_the_start_with_one_line_and_is_left_untouched(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body, words = DAMAGED[case]
    data = tmp_path / "data"
    data.mkdir()
    path = data / "enrolments.json"
    path.write_bytes(body)
    config = tmp_path / "dso.yaml"
    console = {"users_file": str(data / "console-users.json"), "lab_market": False, "lab_drift": False}
    config.write_text(json.dumps({"console": console}))
    with pytest.raises(EnrolmentFileError, match=re.escape(words)) as refused:
        EnrolmentFile(path).read()
    assert str(refused.value).startswith(f"{path}: ") and "move it aside" in str(refused.value)
    # the server's start: never an empty queue
    with pytest.raises(EnrolmentFileError, match=re.escape(words)):
        EnrolmentService(Recorder()).keep_in(EnrolmentFile(path))
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("serve started with a damaged queue"))
    for command in ("serve", "check-config"):
        with pytest.raises(SystemExit) as stopped:
            main([command, "--config", str(config)])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.count("\n") == 1 and str(path) in err and words in err
    assert path.read_bytes() == body


def mg(node: Keypair, anonym: Keypair) -> SimpleNamespace:
    return SimpleNamespace(node=node.public.hex(), anonym=anonym.public.hex())


def test_the_loop_config_naming_the_revoked_keys_of_a_re_enrolled_mg_is_a_fault() -> None:
    old, old_anonym, new, new_anonym = (Keypair.generate() for _ in range(4))
    queue = {
        old.public: Enrolment(old.public, old_anonym.public, "mg-school", "revoked"),
        new.public: Enrolment(new.public, new_anonym.public, "mg-school", "authorised"),
    }
    faults, warnings = loop_key_faults({"mg-school": mg(old, old_anonym)}, queue)
    assert warnings == [] and len(faults) == 1
    assert faults[0].startswith(f"loop.mgs.mg-school names MGMC {old.public.hex()[:12]}…")
    assert (
        f"enrolled again with new keys (MGMC {new.public.hex()}, anonym {new_anonym.public.hex()}"
        in faults[0]
    )
    # the config with the enrolment's keys: nothing to say
    assert loop_key_faults({"mg-school": mg(new, new_anonym)}, queue) == ([], [])
    # the new keys still pending: the loop cannot use them yet, nothing to refuse
    queue[new.public].status = "pending"
    assert loop_key_faults({"mg-school": mg(old, old_anonym)}, queue) == ([], [])
    # the config's keys not revoked and another MGMC authorised under the MG's name: told, not refused (the
    # operator revokes one in the console, which must run for that)
    queue[old.public].status, queue[new.public].status = "authorised", "authorised"
    faults, warnings = loop_key_faults({"mg-school": mg(old, old_anonym)}, queue)
    assert faults == [] and len(warnings) == 1 and "the loop hears only the config's" in warnings[0]


def loop_config(tmp_path: Path, node: Keypair, anonym: Keypair) -> Path:
    """A DSO config with a loop section (its key, the DSO chain's genesis, mg-school) and a data directory."""
    if not (tmp_path / "dso.key").exists():  # (a second config in one test: the same DSO)
        keys.write_keyfile(tmp_path / "dso.key", Keypair.generate())
    dso = keys.read_keyfile(tmp_path / "dso.key")
    genesis = Genesis(
        chain="dso-d5", time=int(time.time() * 1000) - 1000, authorities=(dso.public,),
        accounts=(Account(dso.public, ("dso",), "dso"), Account(node.public, ("mgmc",), "mg-school")),
    )  # fmt: skip
    (tmp_path / "dso-genesis.json").write_text(json.dumps(genesis.to_json()))
    loop = {
        "key_file": str(tmp_path / "dso.key"),
        "dso_chain": {"genesis": str(tmp_path / "dso-genesis.json"), "data_dir": str(tmp_path / "dso.db")},
        "mgs": {"mg-school": {"node": node.public.hex(), "anonym": anonym.public.hex(), "bus": 18}},
        "intervals": 1,
    }
    console = {"users_file": str(tmp_path / "data" / "console-users.json"), "lab_market": False}
    config = tmp_path / "dso.yaml"
    config.write_text(
        yaml.safe_dump({"node_id": "dso", "broker": {"port": 9}, "console": console, "loop": loop})
    )
    return config


def test_check_config_stops_on_the_old_keys_of_a_re_enrolled_mg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, old_anonym, new, new_anonym = (Keypair.generate() for _ in range(4))
    config = loop_config(tmp_path, old, old_anonym)
    (tmp_path / "data").mkdir()
    EnrolmentFile(tmp_path / "data" / "enrolments.json").write(
        [
            Enrolment(old.public, old_anonym.public, "mg-school", "revoked"),
            Enrolment(new.public, new_anonym.public, "mg-school", "authorised"),
        ]
    )
    with pytest.raises(SystemExit) as stopped:
        main(["check-config", "--config", str(config)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1
    assert "mg-school enrolled again with new keys" in err and new.public.hex() in err
    fixed = loop_config(tmp_path, new, new_anonym)  # the operator copies the enrolment's keys into the config
    assert main(["check-config", "--config", str(fixed)]) == 0


def test_check_at_start_reads_and_writes_nothing_without_a_file(tmp_path: Path) -> None:
    users = tmp_path / "data" / "console-users.json"
    loop = SimpleNamespace(mgs={"mg1": mg(Keypair.generate(), Keypair.generate())})
    assert check_at_start(users, loop) == [] and check_at_start(None, loop) == []
    assert not (tmp_path / "data").exists()  # no folder, no lock file made by a check
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "enrolments.json").write_text("[]")
    with pytest.raises(ConfigError, match="not a peergrid enrolment file"):  # without a loop section too
        check_at_start(users, None)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["enrolments.json"]  # no lock made


class StandInLoop:
    """The embedded node as `build_console` uses it, with the DSO chain's word on the queue (`chain_word`)."""

    def __init__(self, mgs: dict[str, Any], revoked: set[bytes], enrolled: set[bytes]) -> None:
        self.node_settings = SimpleNamespace(mgs=mgs)
        self.lock, self.listeners, self.running = threading.RLock(), [], False
        self.word = (revoked, enrolled)

    def replica(self, name: str) -> None:
        return None

    def chain_word(self, queue: list[tuple[bytes, bytes]]) -> tuple[set[bytes], set[bytes]]:
        return self.word


def console_on(tmp_path: Path, loop: StandInLoop) -> Any:
    from peergrid_dso.console.settings import ConsoleSettings
    from peergrid_dso.console.state import build_console
    from peergrid_dso.services.container import build_dso_services

    settings = ConsoleSettings.model_validate(
        {"users_file": str(tmp_path / "data" / "console-users.json"), "lab_market": False, "lab_drift": False}
    )
    dso = build_dso_services({"mg-school": 18})
    state = build_console(settings, dso, loop)
    state.stop_node_records()
    return dso


def test_the_closed_loop_start_takes_the_chain_word_on_what_the_file_missed(tmp_path: Path) -> None:
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    (tmp_path / "data").mkdir()
    queue = EnrolmentFile(tmp_path / "data" / "enrolments.json")
    queue.write([Enrolment(mgmc.public, anonym.public, "mg-school", "pending")])
    # its approval landed on the chain and the server stopped before the file took it: pending for ever
    # otherwise (the chain refuses to enrol that anonym again, so no approval could take it)
    dso = console_on(tmp_path, StandInLoop({}, set(), {anonym.public}))
    assert dso.enrolment.enrolments[mgmc.public].status == "authorised"
    assert queue.read()[mgmc.public].status == "authorised"


def test_the_closed_loop_start_takes_the_chain_word_on_the_old_keys_of_a_re_enrolled_mg(
    tmp_path: Path,
) -> None:
    """The config still naming the old keys is `serve`'s to refuse, before the web server starts (`check_at_start`;
    the console's start no longer judges the loop's keys again: test_d9_start_says_once)."""
    old, old_anonym, new, new_anonym = (Keypair.generate() for _ in range(4))
    (tmp_path / "data").mkdir()
    EnrolmentFile(tmp_path / "data" / "enrolments.json").write(
        [
            Enrolment(old.public, old_anonym.public, "mg-school", "authorised"),  # revoked on the chain since
            Enrolment(new.public, new_anonym.public, "mg-school", "authorised"),
        ]
    )
    fixed = StandInLoop(
        {"mg-school": mg(new, new_anonym)}, {old.public}, {old_anonym.public, new_anonym.public}
    )
    assert console_on(tmp_path, fixed).enrolment.enrolments[old.public].status == "revoked"
