"""Modbus/TCP Security between the DSO's relay driver and firmware-sim relays, over real loopback sockets.

One firmware-sim serves TLS-only relays (client certificates from the lab CA required, rights from the
certificate's Modbus Role or, lacking one, its CN) and one plain relay; the DSO drives them with
`ModbusRelayDriver` and `relay_tls`.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver, RelayEndpoint
from peergrid_dso.drivers.relay_tls import RelayTls, relay_endpoints
from peergrid_dso.services.switching import RelayError
from peergrid_ledger.settings import ConfigError
from peergrid_sim.background import BackgroundSim
from peergrid_sim.certs import LabPki, make_lab_pki
from peergrid_sim.modbus import mbap_frame
from peergrid_sim.scenario import ModbusTls, Relay, Scenario

ROLES = {"dso": "operator", "console": "viewer", "auditor": "auditor"}  # auditor: a role the relay lacks
CLIENTS = ["dso", "console", "auditor", "historian", "stranger"]  # historian, stranger: no role
READ_DISCRETE_0_6 = bytes([2, 0, 0, 0, 6])


class SimThread(BackgroundSim):
    """firmware-sim on its own event loop in a thread, so the sync pymodbus clients can call it."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, None)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return make_lab_pki(tmp_path_factory.mktemp("relay-pki"), CLIENTS, roles=ROLES)


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    """Another CA issuing the same names and roles: none of it may be trusted."""
    return make_lab_pki(tmp_path_factory.mktemp("other-pki"), CLIENTS, roles=ROLES)


@pytest.fixture(scope="module")
def sim(pki: LabPki) -> Iterator[SimThread]:
    scenario = Scenario(
        name="modbus-tls",
        modbus_tls=ModbusTls(
            ca_file=pki.ca_cert,
            cert_file=pki.server.cert,
            key_file=pki.server.key,
            clients={"historian": "read"},
        ),
        relays=[
            Relay(name="s7", branch=7, closed=True, operate_delay_s=0.05, tls=True),
            Relay(name="s14", branch=14, closed=True, operate_delay_s=0.05, tls=True),
            Relay(name="tie33", branch=33, closed=False, tie=True, operate_delay_s=0.05),
        ],
    )
    with SimThread(scenario) as running:
        yield running


def relay_entry(sim: SimThread, branch: int) -> dict[str, Any]:
    return next(e for e in sim.endpoints if e.get("branch") == branch)


def dso_tls(pki: LabPki, client: str, ca: LabPki | None = None) -> RelayTls:
    pair = pki.clients[client]
    return RelayTls(ca_file=(ca or pki).ca_cert, cert_file=pair.cert, key_file=pair.key)


def driver_for(sim: SimThread, tls: RelayTls | None) -> ModbusRelayDriver:
    return ModbusRelayDriver(relay_endpoints(sim.endpoints, tls), timeout_s=1.0)


def refused_count(sim: SimThread) -> int:
    return sim.call(lambda: sum(server.refused for server in sim.app.tcp))


def client_ssl(pki: LabPki, client: str | None, *, tls12: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if client is not None:
        ctx.load_cert_chain(str(pki.clients[client].cert), str(pki.clients[client].key))
    return ctx


def raw_modbus_over_tls(port: int, ctx: ssl.SSLContext, pdu: bytes) -> bytes:
    """One request over a raw TLS socket; returns the reply PDU, raises if the server refuses the session."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, ctx.wrap_socket(raw) as tls:
        tls.sendall(mbap_frame(1, 1, pdu))
        reply = tls.recv(260)
        if not reply:
            raise ConnectionError("closed without a reply")
        return reply[7:]


def test_endpoints_mark_tls_relays(sim: SimThread) -> None:
    assert relay_entry(sim, 7)["protocol"] == "modbus-tls"
    assert relay_entry(sim, 14)["protocol"] == "modbus-tls"
    assert relay_entry(sim, 33)["protocol"] == "modbus-tcp"
    with pytest.raises(ConfigError, match="branch 7 needs Modbus/TCP Security"):
        relay_endpoints(sim.endpoints, None)


def test_dso_operates_a_relay_over_modbus_tcp_security_and_reads_back(sim: SimThread, pki: LabPki) -> None:
    driver = driver_for(sim, dso_tls(pki, "dso"))
    try:
        assert driver.status(7).closed is True
        driver.command(7, close=False)
        deadline = time.monotonic() + 5
        while driver.status(7).closed is not False and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.status(7).closed is False
        assert sim.call(lambda: sim.app.sim.relays["s7"].mechanism.closed) is False
        driver.command(7, close=True)
        while driver.status(7).closed is not True and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.status(7).closed is True
        assert driver.status(33).closed is False  # the plain relay beside it still answers plain Modbus TCP
    finally:
        driver.close()


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_client_without_certificate_is_refused_at_handshake(
    sim: SimThread, pki: LabPki, tls12: bool, caplog: pytest.LogCaptureFixture
) -> None:
    port = relay_entry(sim, 7)["port"]
    caplog.set_level(logging.INFO, logger="peergrid_sim.server")
    # TLS 1.2 fails inside the handshake; under TLS 1.3 the client's half of the handshake completes and
    # it learns of the refusal (the server drops the connection) at its first read.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        raw_modbus_over_tls(port, client_ssl(pki, None, tls12=tls12), READ_DISCRETE_0_6)
    time.sleep(0.1)
    assert not [r for r in caplog.records if "security session" in r.getMessage()]  # no session began
    raw_modbus_over_tls(port, client_ssl(pki, "dso", tls12=tls12), READ_DISCRETE_0_6)
    time.sleep(0.1)
    assert [r for r in caplog.records if "security session" in r.getMessage()]  # as a good client's does


def test_certificate_from_another_ca_is_refused(sim: SimThread, pki: LabPki, other_pki: LabPki) -> None:
    port = relay_entry(sim, 7)["port"]
    foreign = client_ssl(pki, None, tls12=True)
    foreign.load_cert_chain(str(other_pki.clients["dso"].cert), str(other_pki.clients["dso"].key))
    with pytest.raises(ssl.SSLError):
        raw_modbus_over_tls(port, foreign, READ_DISCRETE_0_6)
    # and through the DSO's driver: a foreign operator certificate operates nothing
    driver = driver_for(
        sim,
        RelayTls(
            ca_file=pki.ca_cert,
            cert_file=other_pki.clients["dso"].cert,
            key_file=other_pki.clients["dso"].key,
        ),
    )
    try:
        with pytest.raises(RelayError):
            driver.command(14, close=False)
    finally:
        driver.close()
    assert sim.call(lambda: sim.app.sim.relays["s14"].mechanism.closed) is True


def test_dso_refuses_a_relay_whose_certificate_it_does_not_trust(
    sim: SimThread, pki: LabPki, other_pki: LabPki
) -> None:
    driver = driver_for(sim, dso_tls(pki, "dso", ca=other_pki))
    try:
        with pytest.raises(RelayError, match="cannot connect"):
            driver.status(14)
    finally:
        driver.close()


def test_read_only_role_reads_but_its_write_gets_exception_01(sim: SimThread, pki: LabPki) -> None:
    before = refused_count(sim)
    driver = driver_for(sim, dso_tls(pki, "console"))
    try:
        assert driver.status(14).closed is True
        with pytest.raises(RelayError, match=r"Modbus exception 1 \(illegal function\)"):
            driver.command(14, close=False)
    finally:
        driver.close()
    assert sim.call(lambda: sim.app.sim.relays["s14"].mechanism.closed) is True
    assert refused_count(sim) == before + 1


def test_certificate_without_role_falls_back_to_the_cn_allow_list(sim: SimThread, pki: LabPki) -> None:
    port = relay_entry(sim, 14)["port"]
    write_close = bytes([5, 0, 0, 0xFF, 0x00])
    historian = client_ssl(pki, "historian")  # CN allowed to read
    assert raw_modbus_over_tls(port, historian, READ_DISCRETE_0_6)[0] == 2
    assert raw_modbus_over_tls(port, historian, write_close) == bytes([0x85, 1])
    stranger = client_ssl(pki, "stranger")  # valid certificate, no role, CN not listed: nothing
    assert raw_modbus_over_tls(port, stranger, READ_DISCRETE_0_6) == bytes([0x82, 1])
    auditor = client_ssl(pki, "auditor")  # a role the relay does not know: nothing
    assert raw_modbus_over_tls(port, auditor, READ_DISCRETE_0_6) == bytes([0x82, 1])


def test_plain_modbus_tcp_to_a_tls_only_port_fails(sim: SimThread) -> None:
    entry = relay_entry(sim, 14)
    client = ModbusTcpClient("127.0.0.1", port=entry["port"], timeout=1, retries=0)
    try:
        try:
            response = client.write_coil(1, True, device_id=1)
        except ModbusException:
            pass
        else:
            assert response.isError()
    finally:
        client.close()
    plain = ModbusRelayDriver({14: RelayEndpoint("127.0.0.1", entry["port"], 1)}, timeout_s=1.0)
    try:
        with pytest.raises(RelayError):
            plain.status(14)
    finally:
        plain.close()
    assert sim.call(lambda: sim.app.sim.relays["s14"].mechanism.closed) is True


def test_dso_certificate_files_missing_is_a_relay_error(sim: SimThread, pki: LabPki, tmp_path: Path) -> None:
    driver = driver_for(
        sim,
        RelayTls(ca_file=pki.ca_cert, cert_file=tmp_path / "absent.crt", key_file=tmp_path / "absent.key"),
    )
    with pytest.raises(RelayError, match="cannot load the DSO's certificates"):
        driver.status(7)


def test_dso_node_config_drives_tls_relays(sim: SimThread, pki: LabPki, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from peergrid_dso.interval_node import relay_driver

    relays_file = tmp_path / "endpoints.json"
    relays_file.write_text(json.dumps(sim.endpoints), encoding="utf-8")
    block = {
        "ca_file": str(pki.ca_cert),
        "cert_file": str(pki.clients["dso"].cert),
        "key_file": str(pki.clients["dso"].key),
    }
    settings = SimpleNamespace(relays_file=relays_file, relays_tls=RelayTls.model_validate(block))
    driver = relay_driver(settings, None)  # type: ignore[arg-type]
    try:
        assert driver.status(14).closed is True and driver.status(33).closed is False
    finally:
        driver.close()
    with pytest.raises(ConfigError, match="needs Modbus/TCP Security"):
        relay_driver(SimpleNamespace(relays_file=relays_file, relays_tls=None), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extra"):
        RelayTls.model_validate({**block, "password": "x"})


def test_a_sunspec_device_can_be_served_over_tls_too(pki: LabPki) -> None:
    scenario = Scenario(
        name="pv-tls",
        modbus_tls=ModbusTls(ca_file=pki.ca_cert, cert_file=pki.server.cert, key_file=pki.server.key),
        microgrids=[
            {
                "name": "mg1",
                "bus": 18,
                "devices": [{"name": "pv1", "kind": "pv", "tls": True, "params": {"rating_w": 5000}}],
            }
        ],
    )
    with SimThread(scenario) as running:
        entry = next(e for e in running.endpoints if e["device"] == "pv1")
        assert entry["protocol"] == "modbus-tls"
        read_marker = bytes([3]) + (40000).to_bytes(2, "big") + (2).to_bytes(2, "big")
        assert raw_modbus_over_tls(entry["port"], client_ssl(pki, "dso"), read_marker) == b"\x03\x04SunS"
        assert raw_modbus_over_tls(entry["port"], client_ssl(pki, "console"), read_marker) == b"\x03\x04SunS"
        write = bytes([6]) + (40000).to_bytes(2, "big") + (0).to_bytes(2, "big")
        assert raw_modbus_over_tls(entry["port"], client_ssl(pki, "console"), write) == bytes([0x86, 1])
