"""The live DSO node on the pilot's broker: TLS with the DSO's client certificate (CN = its ACL identity).

Against the `mosquitto_tls` fixture (client certificates required, no anonymous access): the embedded node
connects with its certificate; without one, with an untrusted CA, or without TLS, `peergrid-dso serve`
stops before starting with one line saying why.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from peergrid_dso.broker_tls import BrokerTls
from peergrid_dso.cli import main as dso_main
from peergrid_dso.config import DsoSettings
from peergrid_dso.live import EmbeddedLoop, preflight
from peergrid_ledger import keys
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.settings import ConfigError
from peergrid_sim.certs import make_lab_pki


def settings_doc(tmp_path: Path, broker: Any, tls: dict[str, str]) -> dict[str, Any]:
    dso, mgmc, anonym = keys.Keypair.generate(), keys.Keypair.generate(), keys.Keypair.generate()
    keys.write_keyfile(tmp_path / "dso.key", dso)
    genesis = Genesis(
        chain="dso-tls", time=int(time.time() * 1000) - 1000, authorities=(dso.public,),
        accounts=(Account(dso.public, ("dso",), "dso"), Account(mgmc.public, ("mgmc",), "mg1")),
    )  # fmt: skip
    (tmp_path / "dso-genesis.json").write_text(json.dumps(genesis.to_json()))
    return {
        "node_id": "dso",
        "broker": {"host": broker.host, "port": broker.port, **tls},
        "console": {"lab_market": False, "lab_drift": False},
        "loop": {
            "key_file": str(tmp_path / "dso.key"),
            "dso_chain": {"genesis": str(tmp_path / "dso-genesis.json"), "data_dir": str(tmp_path / "dso.db"),
                          "block_period_ms": 200},
            "mgs": {"mg1": {"node": mgmc.public.hex(), "anonym": anonym.public.hex(), "bus": 18}},
            "intervals": 1,
        },
    }  # fmt: skip


def certs(pki: Any, name: str | None = "dso") -> dict[str, str]:
    doc = {"ca_file": str(pki.ca_cert)}
    if name is not None:
        doc |= {"cert_file": str(pki.clients[name].cert), "key_file": str(pki.clients[name].key)}
    return doc


def test_the_dso_node_connects_to_the_tls_broker_with_its_certificate(
    tmp_path: Path, mosquitto_tls: Any, test_pki: Any
) -> None:
    settings = DsoSettings.model_validate(settings_doc(tmp_path, mosquitto_tls, certs(test_pki)))
    preflight(settings)  # the broker accepts the node
    loop = EmbeddedLoop(settings)
    assert loop.node_settings.broker_tls is not None
    loop.start()
    try:
        transport = loop.node.transport
        assert transport.connected.wait(20), dict(transport.stats)
        assert transport.stats["connect_refused"] == 0
    finally:
        loop.stop()
    assert "dso-loop" in mosquitto_tls.log_path.read_text()  # its client id, over TLS as CN dso


@pytest.mark.parametrize(
    ("tls", "says"),
    [
        ("ca only", "refused the TLS connection (no client certificate configured)"),
        ("foreign ca", "does not verify against the CA file"),
        ("plain", "closed the connection without accepting it; it may require TLS"),
    ],
)
def test_a_refused_dso_node_stops_serve_with_one_clear_line(
    tmp_path: Path, mosquitto_tls: Any, test_pki: Any, capsys: Any, tls: str, says: str
) -> None:
    import yaml

    if tls == "ca only":
        broker_tls = certs(test_pki, None)
    elif tls == "foreign ca":
        broker_tls = certs(make_lab_pki(tmp_path / "other-pki", ["dso"]))
    else:
        broker_tls = {}
    doc = settings_doc(tmp_path, mosquitto_tls, broker_tls)
    with pytest.raises(ConfigError, match=r"broker 127\.0\.0\.1:"):
        preflight(DsoSettings.model_validate(doc))
    config = tmp_path / "dso.yaml"
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(SystemExit) as exited:
        dso_main(["serve", "--config", str(config)])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err


def test_broker_tls_settings_are_checked(tmp_path: Path, test_pki: Any) -> None:
    with pytest.raises(ValidationError, match="go together"):
        DsoSettings.model_validate({"broker": {"ca_file": "/ca.crt", "cert_file": "/dso.crt"}})
    with pytest.raises(ValidationError, match="needs ca_file"):
        DsoSettings.model_validate({"broker": {"cert_file": "/dso.crt", "key_file": "/dso.key"}})
    with pytest.raises(ConfigError, match="no such file"):
        BrokerTls(ca_file=tmp_path / "absent.crt").context()
    wrong_key = BrokerTls(
        ca_file=test_pki.ca_cert,
        cert_file=test_pki.clients["dso"].cert,
        key_file=test_pki.clients["mgmc-1"].key,
    )
    with pytest.raises(ConfigError, match="cannot load"):
        wrong_key.context()


def test_the_health_listener_uses_the_brokers_tls_settings(
    tmp_path: Path, mosquitto_tls: Any, test_pki: Any
) -> None:
    from fastapi.testclient import TestClient

    from peergrid_dso.app import create_app

    doc = settings_doc(tmp_path, mosquitto_tls, certs(test_pki))
    del doc["loop"]
    settings = DsoSettings.model_validate(doc)

    def connected() -> bool:
        return "as dso-health" in mosquitto_tls.log_path.read_text()

    with TestClient(create_app(settings)):
        deadline = time.monotonic() + 20
        while not connected() and time.monotonic() < deadline:
            time.sleep(0.1)
    log = mosquitto_tls.log_path.read_text()
    assert connected() and "u'dso'" in log, log  # over TLS, as the certificate's CN
