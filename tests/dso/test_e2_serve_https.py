"""`peergrid-dso serve` over HTTPS (U3-8: a pilot MGMC sends its enrolment token over the site's network):
`http.cert_file` and `http.key_file` (both or neither) serve the API and console over TLS, on the config's port or
an inherited socket; the edge's enrolment verifies the certificate against the operator's CA and gets the DSO's
own answer. Half a pair, or a file that is not there, is a config error (exit 2) before anything is served."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from peergrid_dso.cli import main as dso_main
from peergrid_edge.config import EdgeSettings
from peergrid_edge.enrolment import Enroller
from peergrid_ledger import keys
from peergrid_ledger.tied import tied_popen
from peergrid_sim.certs import make_lab_pki

PEERGRID_DSO = Path(sys.executable).parent / "peergrid-dso"


def config(tmp_path: Path, http: dict[str, object]) -> Path:
    path = tmp_path / "dso.yaml"
    doc = {"node_id": "dso-e2", "broker": {"port": 9}, "http": {"host": "127.0.0.1", "port": 8080} | http}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_serve_over_https_and_an_edge_verifies_it(tmp_path: Path) -> None:
    pki = make_lab_pki(tmp_path / "pki", [])
    cfg = config(tmp_path, {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key)})
    token_file = tmp_path / "enrolment-token"
    token_file.write_text("a token this DSO never issued")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port, fd = int(listener.getsockname()[1]), listener.fileno()
        log = tmp_path / "dso.log"
        argv = [
            str(PEERGRID_DSO),
            "serve",
            "--config",
            str(cfg),
            "--listen-fd",
            str(fd),
            "--log-level",
            "info",
        ]
        with log.open("wb") as out:
            server = tied_popen(argv, pass_fds=(fd,), stdout=out, stderr=subprocess.STDOUT)
    try:
        settings = EdgeSettings.model_validate({
            "node_id": "n", "mg": "mg-school", "data_dir": str(tmp_path / "edge"),
            "enrolment": {"url": f"https://localhost:{port}", "token_file": str(token_file),
                          "ca_file": str(pki.ca_cert)},
        })  # fmt: skip
        enroller = Enroller.from_settings(settings, keys.Keypair.generate())
        deadline = time.monotonic() + 120
        while (got := asyncio.run(enroller.run(turns=1))) == "unreachable":
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert got == "refused"  # the DSO's answer, over TLS verified with the operator's CA
        assert f"serving on https://127.0.0.1:{port} (inherited fd {fd})" in log.read_text()
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.parametrize(
    ("http", "words"),
    [
        ({"cert_file": "CERT"}, "http.cert_file and http.key_file go together"),
        ({"cert_file": "CERT", "key_file": "/nowhere/dso.key"}, "/nowhere/dso.key: no such file"),
    ],
)
def test_half_a_certificate_is_a_config_error(
    tmp_path: Path, http: dict[str, str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = make_lab_pki(tmp_path / "pki", [])
    http = {k: str(pki.server.cert) if v == "CERT" else v for k, v in http.items()}
    with pytest.raises(SystemExit) as exited:
        dso_main(["serve", "--config", str(config(tmp_path, http))])
    assert exited.value.code == 2 and words in capsys.readouterr().err
