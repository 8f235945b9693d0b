"""Modbus/TCP Security's pure parts: the Role extension codec, roles-to-rights, and the scenario's checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from peergrid_ledger.settings import ConfigError, load_settings
from peergrid_sim.app import FirmwareSim
from peergrid_sim.certs import make_lab_pki
from peergrid_sim.modbus_security import (
    ClientIdentity,
    RoleError,
    TlsPolicy,
    decode_role,
    encode_role,
    identify,
    permits,
)
from peergrid_sim.runtime import ScenarioError
from peergrid_sim.scenario import ModbusTls, Relay, Scenario


@given(st.text(max_size=400))
def test_role_codec_round_trips(role: str) -> None:
    assert decode_role(encode_role(role)) == role


def test_role_encoding_is_der() -> None:
    assert encode_role("operator") == b"\x0c\x08operator"
    assert encode_role("x" * 200)[:3] == b"\x0c\x81\xc8"  # long form, minimal


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x0c",
        b"\x13\x02ab",
        b"\x0c\x03ab",
        b"\x0c\x01ab",
        b"\x0c\x81\x02ab",
        b"\x0c\x02\xff\xfe",
        b"\x0c\x85",
    ],
    ids=["empty", "no-length", "printable-string", "short", "long", "non-minimal", "bad-utf8", "huge-length"],
)
def test_malformed_role_is_a_role_error(der: bytes) -> None:
    with pytest.raises(RoleError):
        decode_role(der)


@given(st.binary(max_size=40))
def test_decode_role_never_raises_anything_else(der: bytes) -> None:
    try:
        decode_role(der)
    except RoleError:
        pass


def test_identity_from_lab_certificates(tmp_path: Path) -> None:
    pki = make_lab_pki(tmp_path, ["dso", "plain"], roles={"dso": "operator"})

    def who(name: str) -> ClientIdentity:
        cert = x509.load_pem_x509_certificate(pki.clients[name].cert.read_bytes())
        return identify(cert.public_bytes(Encoding.DER))

    assert who("dso") == ClientIdentity("dso", "operator")
    assert who("plain") == ClientIdentity("plain", None)


def test_roles_decide_and_the_cn_is_only_a_fallback() -> None:
    policy = TlsPolicy(
        roles={"operator": "write", "viewer": "read"}, clients={"dso": "write", "hist": "read"}
    )
    assert policy.access(ClientIdentity("x", "operator")) == "write"
    assert policy.access(ClientIdentity("dso", "viewer")) == "read"  # the role wins over the CN
    assert policy.access(ClientIdentity("dso", "guest")) is None  # an unknown role is not rescued by the CN
    assert policy.access(ClientIdentity("hist", None)) == "read"
    assert policy.access(ClientIdentity("nobody", None)) is None
    assert policy.access(ClientIdentity(None, None)) is None
    assert policy.access(ClientIdentity("dso", None, "bad role")) is None  # malformed role: nothing


@pytest.mark.parametrize("function", range(0, 128))
def test_permits_by_function_code(function: int) -> None:
    reads = {1, 2, 3, 4}
    assert permits("write", function)
    assert permits("read", function) == (function in reads)
    assert not permits(None, function)


def tls_conf(tmp_path: Path) -> ModbusTls:
    return ModbusTls(ca_file=tmp_path / "ca.crt", cert_file=tmp_path / "r.crt", key_file=tmp_path / "r.key")


def test_tls_device_needs_the_scenario_tls_settings(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nrelays: [{name: s7, branch: 7, tls: true}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="tls needs protocol modbus-tcp and a scenario 'modbus_tls'"):
        load_settings(path, Scenario)


def test_tls_on_a_serial_relay_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tls needs protocol modbus-tcp"):
        Scenario(
            name="t",
            modbus_tls=tls_conf(tmp_path),
            serial_lines=[{"name": "bus"}],
            relays=[Relay(name="s7", branch=7, protocol="modbus-rtu", line="bus", tls=True)],
        )


def test_one_port_cannot_be_both_plain_and_tls(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot serve both"):
        Scenario(
            name="t",
            modbus_tls=tls_conf(tmp_path),
            relays=[
                Relay(name="s7", branch=7, port=15020, unit_id=1, tls=True),
                Relay(name="s9", branch=9, port=15020, unit_id=2),
            ],
        )


def test_unknown_access_level_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ModbusTls(ca_file=tmp_path, cert_file=tmp_path, key_file=tmp_path, roles={"operator": "admin"})


def test_missing_certificates_are_a_scenario_error(tmp_path: Path) -> None:
    scenario = Scenario(
        name="t", modbus_tls=tls_conf(tmp_path), relays=[Relay(name="s7", branch=7, tls=True)]
    )
    app = FirmwareSim(scenario, 0.0)
    with pytest.raises(ScenarioError, match="modbus_tls: cannot load"):
        asyncio.run(app.start())


def test_readme_scenario_example_starts(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "firmware-sim" / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Modbus/TCP Security", 1)[1]
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    pki = make_lab_pki(tmp_path, [])
    files = {"ca_file": pki.ca_cert, "cert_file": pki.server.cert, "key_file": pki.server.key}
    example["modbus_tls"].update(files)
    scenario = Scenario.model_validate({"name": "readme", **example})
    assert scenario.modbus_tls is not None and scenario.modbus_tls.clients == {"historian": "read"}

    async def start_and_stop() -> list[dict[str, object]]:
        app = FirmwareSim(scenario, 0.0)
        try:
            return await app.start()
        finally:
            await app.close()

    endpoints = asyncio.run(start_and_stop())
    assert [e["protocol"] for e in endpoints if e["device"] == "tie33"] == ["modbus-tls"]
