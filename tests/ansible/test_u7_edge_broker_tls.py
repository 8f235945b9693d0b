"""The edge role's edge.yaml speaks TLS to the feeder's broker: where the inventory gives the operator's CA
(`peergrid_ca_cert`, so `edge_tls_ca_src`) the broker section names the CA the role installs under
`<edge_config_dir>/tls`, and the client certificate and key beside it where the host has them
(`edge_tls_cert_src`). Why: U7's pilot: the role installed ca.crt, client.crt and client.key but rendered the
broker as host and port only, so every MGMC it provisioned spoke plain MQTT to the broker role's TLS-only
listener (mosquitto: 'wrong version number') and never joined the feeder; its log said only 'lost broker ...
(the connection closed)'. Without a CA (an inventory with no PKI) the broker section stays plain. Real Ansible
templating, the pilot inventory, the daemon's strict model.
"""

from __future__ import annotations

from pathlib import Path

from test_a3_pilot_trading import PILOT, render

from peergrid_edge.config import EdgeSettings
from peergrid_ledger.settings import load_settings


def rendered(tmp_path: Path, **host: object) -> EdgeSettings:
    etc = tmp_path / "etc"
    result, out = render(
        tmp_path, PILOT, {"peergrid_mg_id": "mg-school", "edge_config_dir": str(etc), **host}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return load_settings(out, EdgeSettings)


def test_a_pilot_mgmc_with_its_certificate_names_the_ca_and_its_client_pair(tmp_path: Path) -> None:
    settings = rendered(tmp_path, edge_tls_cert_src="/srv/pki/mgmc-school.crt",
                        edge_tls_key_src="/srv/pki/mgmc-school.key")  # fmt: skip
    tls = tmp_path / "etc" / "tls"
    broker = settings.broker
    assert (broker.host, broker.port) == ("10.20.0.5", 8883)
    assert (broker.ca_file, broker.cert_file, broker.key_file) == (tls / "ca.crt", tls / "client.crt",
                                                                    tls / "client.key")  # fmt: skip


def test_a_ca_alone_names_the_ca(tmp_path: Path) -> None:
    broker = rendered(tmp_path).broker
    assert (broker.ca_file, broker.cert_file, broker.key_file) == (
        tmp_path / "etc" / "tls" / "ca.crt",
        None,
        None,
    )


def test_no_ca_stays_plain(tmp_path: Path) -> None:
    broker = rendered(tmp_path, peergrid_ca_cert="", edge_tls_cert_src="/srv/pki/x.crt").broker
    assert (broker.ca_file, broker.cert_file, broker.key_file) == (None, None, None)
