"""A pilot MGMC enrols itself (U3-8): the edge's `Enroller` against the real DSO server (its FastAPI app, served
by uvicorn over TLS on a loopback port, its certificate from a test CA the edge verifies), with the token an
operator issued with `peergrid-dso enrolment token create` into the DSO's data directory.

Pending -> the operator approves over the REST API -> the edge sees authorised and never asks again; an unknown
or used token is refused with the DSO's words and not sent again; a DSO down at first (then up, then restarted
while the request is pending) is asked again until it answers; a DSO whose certificate is not of the operator's
CA is not talked to.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from peergrid_edge.config import EdgeSettings
from peergrid_edge.enrolment import STATE_FILE, Enroller, enrolment_digest, http_transport
from peergrid_ledger import keys
from peergrid_sim.certs import make_lab_pki

PASSWORD = "a long test password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dso:
    """The DSO server (console, REST API, enrolment in operator mode) with its data directory `data`."""

    def __init__(self, data: Path, cert: Path, key: Path) -> None:
        from argon2 import PasswordHasher

        from peergrid_dso.auth.users import UserStore

        self.data, self.cert, self.key, self.port = data, cert, key, free_port()
        self.config = data / "dso.yaml"
        data.mkdir(parents=True, exist_ok=True)
        users = data / "console-users.json"
        UserStore(users, hasher=PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)).add(
            "olga", "operator", PASSWORD
        )
        self.config.write_text(
            json.dumps({"console": {"users_file": str(users), "lab_market": False, "lab_drift": False}})
        )
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def token(self, label: str | None = None) -> str:
        """`peergrid-dso enrolment token create` as the operator runs it (the server up or not)."""
        from peergrid_dso.cli import main

        argv = ["enrolment", "token", "create", "--config", str(self.config)]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(argv + ([] if label is None else ["--label", label])) == 0
        return out.getvalue().strip()

    def start(self) -> None:
        from peergrid_dso.app import create_app
        from peergrid_dso.config import DsoSettings
        from peergrid_ledger.settings import load_settings

        app = create_app(load_settings(str(self.config), DsoSettings), listen=False)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning",
            ssl_certfile=str(self.cert), ssl_keyfile=str(self.key),
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started
        app.state.dso.enrolment.auto = False  # the pilot's DSO: dso_server_auto_enrol false
        self.app = app

    def stop(self) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(20)

    def approve(self, mgmc: bytes, ca: Path) -> dict[str, Any]:
        """The operator logs in and approves the MGMC's pending enrolment (REST API, session and CSRF)."""
        with httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(ca))) as client:
            login = client.post("/console/api/login", json={"username": "olga", "password": PASSWORD})
            assert login.status_code == 200, login.text
            csrf = {"X-CSRF-Token": login.json()["csrf"]}
            r = client.post(f"/api/dso/enrolment/{mgmc.hex()}/approve", headers=csrf)
            assert r.status_code == 200, r.text
            answer: dict[str, Any] = r.json()
            return answer


@pytest.fixture
def pki(tmp_path: Path) -> Any:
    return make_lab_pki(tmp_path / "pki", [])


@pytest.fixture
def dso(tmp_path: Path, pki: Any) -> Iterator[Dso]:
    d = Dso(tmp_path / "dso", pki.server.cert, pki.server.key)
    yield d
    if d.server is not None and not d.server.should_exit:
        d.stop()


def edge_settings(tmp_path: Path, dso: Dso, ca: Path, token: str, mg: str = "mg-school") -> EdgeSettings:
    token_file = tmp_path / "edge" / "enrolment-token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(token)  # as cloud-init writes it: no newline
    return EdgeSettings.model_validate(
        {
            "node_id": f"{mg}-pi",
            "mg": mg,
            "data_dir": str(tmp_path / "edge"),
            "enrolment": {"url": dso.url, "token_file": str(token_file), "ca_file": str(ca), "retry_s": 0.05,
                          "retry_max_s": 0.2},
        }
    )  # fmt: skip


def enroller(settings: EdgeSettings, identity: keys.Keypair, **kw: Any) -> Enroller:
    e = Enroller.from_settings(settings, identity)
    for name, value in kw.items():
        setattr(e, name, value)
    return e


def state(settings: EdgeSettings) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((settings.data_dir / STATE_FILE).read_text())
    return doc


async def until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_the_edge_and_the_dso_sign_the_same_bytes() -> None:
    from peergrid_dso.services.enrolment import enrolment_digest as dso_digest

    mgmc, anonym = keys.Keypair.generate().public, keys.Keypair.generate().public
    assert enrolment_digest("t0k", mgmc, anonym, "mg-school") == dso_digest("t0k", mgmc, anonym, "mg-school")


def test_pending_then_approved_then_never_sent_again(
    tmp_path: Path, dso: Dso, pki: Any, caplog: pytest.LogCaptureFixture
) -> None:
    token = dso.token(label="mg-school")  # before the DSO runs: the flash is days before its first boot
    dso.start()
    settings = edge_settings(tmp_path, dso, pki.ca_cert, token)
    identity = keys.Keypair.generate()
    caplog.set_level(logging.INFO, "peergrid.edge.enrolment")

    async def scenario() -> str:
        task = asyncio.create_task(enroller(settings, identity).run())
        await until(lambda: (settings.data_dir / STATE_FILE).exists())
        assert state(settings)["status"] == "pending"
        approved = await asyncio.to_thread(dso.approve, identity.public, pki.ca_cert)
        assert approved["status"] == "authorised" and approved["label"] == "mg-school"
        return await asyncio.wait_for(task, 20)

    assert asyncio.run(scenario()) == "authorised"
    said = state(settings)
    assert (
        said["status"] == "authorised"
        and said["mgmc"] == identity.public.hex()
        and token not in json.dumps(said)
    )
    words = caplog.text
    assert "pending approval at the DSO" in words and "Operations -> Enrolment" in words
    assert "mg-school is authorised by the DSO" in words
    anonym = keys.read_keyfile(settings.data_dir / "keys" / "anonym.key")  # made for the request, kept
    assert dso.app.state.dso.enrolment.enrolments[identity.public].anonym == anonym.public

    def no_dso(*_: Any) -> tuple[int, Any]:
        raise AssertionError("an authorised MGMC asked the DSO again")

    assert asyncio.run(enroller(settings, identity, transport=no_dso).run()) == "authorised"


def test_unknown_and_used_tokens_are_refused_in_the_dsos_words_and_not_sent_again(
    tmp_path: Path, dso: Dso, pki: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dso.start()
    settings = edge_settings(tmp_path / "a", dso, pki.ca_cert, "not-a-token-the-dso-issued")
    identity = keys.Keypair.generate()
    caplog.set_level(logging.INFO, "peergrid.edge.enrolment")
    assert asyncio.run(enroller(settings, identity).run()) == "refused"
    assert "unknown or already used enrolment token" in state(settings)["detail"]
    assert (
        "the DSO refused mg-school's request: HTTP 403: unknown or already used enrolment token"
        in caplog.text
    )
    sent: list[str] = []

    def counting(method: str, path: str, body: Any) -> tuple[int, Any]:
        sent.append(method)
        raise AssertionError("a refused token was sent again")

    assert asyncio.run(enroller(settings, identity, transport=counting).run()) == "refused" and sent == []
    assert "not sent again (put a new token" in caplog.text

    # a token another MGMC used (a copied image): refused; a token for another MG: refused, naming it
    token = dso.token()
    first = edge_settings(tmp_path / "b", dso, pki.ca_cert, token, mg="mg-depot")
    assert asyncio.run(enroller(first, keys.Keypair.generate()).run(turns=1)) == "pending"
    copy = edge_settings(tmp_path / "c", dso, pki.ca_cert, token, mg="mg-farm")
    assert asyncio.run(enroller(copy, keys.Keypair.generate()).run()) == "refused"
    assert "unknown or already used enrolment token" in state(copy)["detail"]
    bound = edge_settings(tmp_path / "d", dso, pki.ca_cert, dso.token(label="mg-school"), mg="mg-farm")
    assert asyncio.run(enroller(bound, keys.Keypair.generate()).run()) == "refused"
    assert "this token was issued for mg-school, not mg-farm" in state(bound)["detail"]


def test_a_dso_down_then_up_then_restarted_is_asked_until_it_authorises(
    tmp_path: Path, dso: Dso, pki: Any, caplog: pytest.LogCaptureFixture
) -> None:
    token = dso.token()
    settings = edge_settings(tmp_path, dso, pki.ca_cert, token)
    identity = keys.Keypair.generate()
    caplog.set_level(logging.INFO, "peergrid.edge.enrolment")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # two asks found nobody: the DSO starts
            await asyncio.to_thread(dso.start)
        await asyncio.sleep(0.01)

    async def scenario() -> str:
        task = asyncio.create_task(enroller(settings, identity, sleep=sleep).run())
        await until(lambda: (settings.data_dir / STATE_FILE).exists())
        assert state(settings)["status"] == "pending"
        # the DSO restarts while the request waits: its pending enrolment was in memory, the used token is not
        await asyncio.to_thread(dso.stop)
        await asyncio.to_thread(dso.start)
        await until(lambda: identity.public in dso.app.state.dso.enrolment.enrolments)
        assert dso.app.state.dso.enrolment.enrolments[identity.public].status == "pending"
        await asyncio.to_thread(dso.approve, identity.public, pki.ca_cert)
        return await asyncio.wait_for(task, 20)

    assert asyncio.run(scenario()) == "authorised"
    assert waits[:3] == [0.05, 0.1, 0.2]  # back-off doubling to retry_max_s
    words = caplog.text
    assert words.count("cannot be reached") == 2  # once while first down, once across the restart
    assert "is reached again" in words and "is authorised by the DSO" in words


def test_a_dso_certificate_not_of_the_operators_ca_is_not_talked_to(tmp_path: Path, dso: Dso) -> None:
    token = dso.token()
    dso.start()
    other = make_lab_pki(tmp_path / "other-pki", [])
    settings = edge_settings(tmp_path, dso, other.ca_cert, token)
    got = asyncio.run(enroller(settings, keys.Keypair.generate()).run(turns=1))
    assert got == "unreachable" and not (settings.data_dir / STATE_FILE).exists()
    assert dso.app.state.dso.enrolment.enrolments == {}
    transport = http_transport(dso.url, other.ca_cert, 5.0)
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        transport("GET", "/api/dso/enrolment", None)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://10.20.0.2:8080", "plain http carries the enrolment token in the clear"),
        ("ftp://dso", "expected the DSO server's https URL"),
        ("https://", "expected the DSO server's https URL"),
    ],
)
def test_an_enrolment_url_that_would_leak_the_token_is_refused(url: str, words: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=words):
        EdgeSettings.model_validate({"node_id": "n", "mg": "m", "enrolment": {"url": url}})
    ok = EdgeSettings.model_validate(
        {"node_id": "n", "mg": "m", "enrolment": {"url": "http://127.0.0.1:8080/"}}
    )
    assert ok.enrolment is not None and ok.enrolment.url == "http://127.0.0.1:8080"
    assert EdgeSettings.model_validate({"node_id": "n", "mg": "m"}).enrolment is None  # the lab: unchanged


def test_no_token_file_is_said_and_nothing_is_sent(
    tmp_path: Path, dso: Dso, pki: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = edge_settings(tmp_path, dso, pki.ca_cert, "x")
    assert settings.enrolment is not None
    settings.enrolment.token_file.unlink()

    def no_dso(*_: Any) -> tuple[int, Any]:
        raise AssertionError("sent without a token")

    caplog.set_level(logging.INFO, "peergrid.edge.enrolment")
    assert asyncio.run(enroller(settings, keys.Keypair.generate(), transport=no_dso).run()) == "no token"
    assert "cannot read the token file" in caplog.text


def test_the_daemon_enrols_beside_its_loops_and_runs_on_while_the_dso_is_down(
    tmp_path: Path, dso: Dso, pki: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """`peergrid-edge run` with an enrolment section: the ask is a task of its own (no broker here: port 9), the
    daemon's other tasks run while the DSO cannot be reached, and once the DSO is up and approves, the task ends
    (no death) and the daemon runs on; the lab's config (no section) starts no such task."""
    from peergrid_edge.daemon import EdgeDaemon

    token = dso.token()
    base = edge_settings(tmp_path, dso, pki.ca_cert, token).model_dump(mode="json")
    settings = EdgeSettings.model_validate(
        base | {"broker": {"host": "127.0.0.1", "port": 9}, "dispatch": {"enabled": False}}
    )
    caplog.set_level(logging.INFO, "peergrid")

    async def scenario() -> EdgeDaemon:
        daemon = EdgeDaemon(settings)
        run = asyncio.create_task(daemon.run(install_signals=False))
        await until(lambda: "cannot be reached" in caplog.text)
        await asyncio.sleep(0.3)
        assert not run.done() and daemon.health()["mg"] == "mg-school"  # the daemon goes on meanwhile
        await asyncio.to_thread(dso.start)
        await until(lambda: daemon.keypair.public in dso.app.state.dso.enrolment.enrolments)
        await asyncio.to_thread(dso.approve, daemon.keypair.public, pki.ca_cert)
        await until(lambda: "task enrolment finished" in caplog.text)
        assert not run.done()
        daemon.stop()
        await asyncio.wait_for(run, 20)
        return daemon

    daemon = asyncio.run(scenario())
    assert (
        state(settings)["status"] == "authorised" and daemon.keypair.public.hex() == state(settings)["mgmc"]
    )


def test_peergrid_edge_enrol_asks_once_and_says_the_status(
    tmp_path: Path, dso: Dso, pki: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`peergrid-edge enrol --config`: one ask, the status on stdout; exit 3 pending, 0 authorised, 2 without an
    enrolment section (the lab's config)."""
    import yaml

    from peergrid_edge.cli import main as edge_main

    dso.start()
    settings = edge_settings(tmp_path, dso, pki.ca_cert, dso.token())
    identity = keys.Keypair.generate()
    keys.write_keyfile(settings.data_dir / "node.key", identity)
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude={"market"})))
    assert edge_main(["enrol", "--config", str(cfg)]) == 3
    assert capsys.readouterr().out == "pending\n"
    dso.approve(identity.public, pki.ca_cert)
    assert edge_main(["enrol", "--config", str(cfg)]) == 0 and capsys.readouterr().out == "authorised\n"
    lab = tmp_path / "lab.yaml"
    lab.write_text(yaml.safe_dump({"node_id": "n", "mg": "mg1", "data_dir": str(tmp_path / "lab")}))
    assert edge_main(["enrol", "--config", str(lab)]) == 2
    assert "no enrolment section" in capsys.readouterr().err
