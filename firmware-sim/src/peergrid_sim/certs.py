"""Test and lab certificates: a CA, a broker certificate and per-device client certificates.

Promises: `make_lab_pki(dir, clients)` writes PEM files (keys mode 0600) and returns their paths; every
client certificate's CN is the device identity that the broker's ACLs use; each of `servers` (e.g. relays
offering Modbus/TCP Security) gets a server certificate whose only subjectAltName is its name (DNS). Assumes the directory is private
to the caller. Never for production: the pilot's CA lives with the operator (see ansible/).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class LabPki:
    ca_cert: Path
    ca_key: Path
    server: CertPair
    clients: dict[str, CertPair] = field(default_factory=dict)
    servers: dict[str, CertPair] = field(default_factory=dict)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "peergrid"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    subject: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    *,
    server: bool,
    days: int,
    role: str | None = None,
    names: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        default = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names or default), critical=False)
    if role is not None:  # Modbus/TCP Security: the client's role as a UTF8String extension
        from .modbus_security import ROLE_OID, encode_role

        role_ext = x509.UnrecognizedExtension(x509.ObjectIdentifier(ROLE_OID), encode_role(role))
        builder = builder.add_extension(role_ext, critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_lab_pki(
    directory: Path,
    clients: list[str],
    *,
    days: int = 2,
    roles: dict[str, str] | None = None,
    servers: Sequence[str] = (),
) -> LabPki:
    """`roles` gives chosen clients a Modbus Role extension (client name -> role); `servers` get server
    certificates naming only themselves (DNS subjectAltName)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("peergrid test CA")
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_cert_path = directory / "ca.crt"
    ca_cert_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "ca.key", ca_key)

    def issue(name: str, *, server: bool, own_name: bool = False) -> CertPair:
        role = None if server else (roles or {}).get(name)
        names: list[x509.GeneralName] | None = [x509.DNSName(name)] if own_name else None
        cert, key = _issue(name, ca_key, ca_name, server=server, days=days, role=role, names=names)
        pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pair.key, key)
        return pair

    server = issue("broker", server=True)
    return LabPki(
        ca_cert_path,
        directory / "ca.key",
        server,
        {c: issue(c, server=False) for c in clients},
        {s: issue(s, server=True, own_name=True) for s in servers},
    )
