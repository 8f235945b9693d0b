"""Modbus/TCP Security (Modbus over TLS): the server's TLS context and its role-based authorisation.

Promises: `server_context` accepts only TLS 1.2+ clients whose certificate chains to the configured CA
(mutual authentication, spec R-06 and following); `identify` reads the client's role from the Modbus Role
extension (OID 1.3.6.1.4.1.50316.802.1, an ASN.1 UTF8String) and its CN; `TlsPolicy.access` turns that
identity into `read`, `write` or nothing, and `permits` decides one request by its function code. A
request the role may not make is answered with exception 01 (ILLEGAL FUNCTION), as the specification
prescribes for an authorisation refusal. A certificate that carries a role is judged by that role alone;
the CN allow-list is only the fallback for certificates without one. A malformed role denies everything.
Assumes the TLS layer has already verified the chain. Never does I/O beyond reading the PEM files.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

ROLE_OID = "1.3.6.1.4.1.50316.802.1"
UTF8STRING = 0x0C
READ_FUNCTIONS = frozenset({1, 2, 3, 4})  # read coils, discrete inputs, holding and input registers
Access = Literal["read", "write"]


class RoleError(ValueError):
    """The role extension is not a well-formed DER UTF8String."""


def encode_role(role: str) -> bytes:
    """DER UTF8String: tag 0x0C, definite length (short or long form), the UTF-8 bytes."""
    body = role.encode("utf-8")
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return bytes([UTF8STRING]) + length + body


def decode_role(der: bytes) -> str:
    if len(der) < 2 or der[0] != UTF8STRING:
        raise RoleError("role is not a UTF8String")
    first = der[1]
    if first < 0x80:
        length, start = first, 2
    else:
        width = first & 0x7F
        if not 1 <= width <= 4 or len(der) < 2 + width:
            raise RoleError("bad role length")
        length, start = int.from_bytes(der[2 : 2 + width], "big"), 2 + width
        if length < 0x80 or der[2] == 0:
            raise RoleError("role length not in minimal DER form")
    if len(der) != start + length:
        raise RoleError("role length does not match its content")
    try:
        return der[start:].decode("utf-8")
    except UnicodeDecodeError:
        raise RoleError("role is not valid UTF-8") from None


@dataclass(frozen=True)
class ClientIdentity:
    common_name: str | None
    role: str | None  # None: no role extension
    role_error: str | None = None  # the extension is present but malformed


def identify(cert_der: bytes) -> ClientIdentity:
    """The CN and the Modbus role of a (chain-verified) client certificate."""
    cert = x509.load_der_x509_certificate(cert_der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else None
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(ROLE_OID))
    except x509.ExtensionNotFound:
        return ClientIdentity(cn, None)
    value = ext.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    try:
        return ClientIdentity(cn, decode_role(raw))
    except RoleError as exc:
        return ClientIdentity(cn, None, str(exc))


@dataclass(frozen=True)
class TlsPolicy:
    """Roles-to-rights rules: what each role (or, lacking a role, each CN) may do."""

    roles: Mapping[str, Access] = field(default_factory=dict)
    clients: Mapping[str, Access] = field(default_factory=dict)

    def access(self, who: ClientIdentity) -> Access | None:
        if who.role_error is not None:
            return None
        if who.role is not None:
            return self.roles.get(who.role)
        return self.clients.get(who.common_name or "")


def permits(access: Access | None, function: int) -> bool:
    if access == "write":
        return True
    return access == "read" and function in READ_FUNCTIONS


def server_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2 or later, the device's own certificate, and a client certificate from `ca_file` required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


@dataclass(frozen=True)
class TlsListener:
    """What a Modbus TCP listener needs to speak Modbus/TCP Security."""

    context: ssl.SSLContext
    policy: TlsPolicy

    def access_of(self, ssl_object: ssl.SSLObject | None) -> tuple[ClientIdentity | None, Access | None]:
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return None, None
        who = identify(der)
        return who, self.policy.access(who)


__all__ = [
    "ROLE_OID",
    "Access",
    "ClientIdentity",
    "RoleError",
    "TlsListener",
    "TlsPolicy",
    "decode_role",
    "encode_role",
    "identify",
    "permits",
    "server_context",
]
