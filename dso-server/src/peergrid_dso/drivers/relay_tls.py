"""Modbus/TCP Security (Modbus over TLS, port 802 by convention) to relays that support it.

Promises: `tls_client` returns a pymodbus `ModbusTlsClient` that presents the DSO's client certificate and
accepts only a relay whose certificate chains to the relays' CA, over TLS 1.2 or later, AND names that relay:
its subjectAltName must match the relay's pinned name (`RelayTls.names`, branch -> DNS name) or, when none is
pinned, the address the relay is reached at (a host name, or an IP address against IP SANs) - standard
OpenSSL host checking, so a relay presenting another relay's valid certificate is refused. A refusal is a
`RelayError` that says which identity was expected and why it failed, logged; it is never retried in plain.
The relay decides what the DSO may do from the DSO certificate's Modbus Role (or its CN).
`relay_endpoints` reads firmware-sim's endpoints JSON entries (`"protocol": "modbus-tls"` marks a relay that
needs it). Never falls back to plain Modbus TCP for a relay configured for TLS.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

from peergrid_ledger.settings import ConfigError, StrictSettings

MODBUS_TLS_PORT = 802
log = logging.getLogger("peergrid_dso.relay_tls")


class RelayTls(StrictSettings):
    """The DSO's side of Modbus/TCP Security to relays (a config block; frozen, so hashable)."""

    ca_file: Path  # the CA that issued the relays' certificates
    cert_file: Path  # the DSO's client certificate (its role says what it may do)
    key_file: Path
    names: dict[int, str] = {}  # branch -> the DNS name the relay's certificate must carry (pinned)
    server_name: str | None = None  # set per relay by `relay_endpoints` from `names`; None: its address

    def __hash__(self) -> int:
        return hash((self.ca_file, self.cert_file, self.key_file, tuple(sorted(self.names.items())),
                     self.server_name))  # fmt: skip


class _VerifyingSocket(ssl.SSLSocket):
    """Remembers on its context why the relay's certificate was refused (pymodbus only logs the error)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except ssl.SSLCertVerificationError as exc:
            self.context.refusal = str(exc.verify_message or exc)  # type: ignore[attr-defined]
            raise


class _RelayContext(ssl.SSLContext):
    """A client context that always verifies the relay's name (pymodbus passes no server_hostname)."""

    relay_name = ""
    refusal: str | None = None

    def wrap_socket(  # type: ignore[override]
        self, sock: Any, server_side: bool = False, do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True, server_hostname: str | None = None, session: Any = None,
    ) -> ssl.SSLSocket:  # fmt: skip
        self.refusal = None
        return super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs,
            server_hostname or self.relay_name, session,
        )  # fmt: skip


def client_context(tls: RelayTls, relay_name: str) -> _RelayContext:
    ctx = _RelayContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True  # the relay's certificate must name it, not just come from the relay CA
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.sslsocket_class = _VerifyingSocket
    ctx.relay_name = relay_name
    ctx.load_verify_locations(cafile=str(tls.ca_file))
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


def tls_client(host: str, port: int, tls: RelayTls, timeout_s: float) -> Any:
    """A sync client, like the driver's plain one; unreadable certificates and a relay that is not the one
    expected are a `RelayError`."""
    from pymodbus.client import ModbusTlsClient

    from peergrid_dso.services.switching import RelayError

    name = tls.server_name or host
    try:
        context = client_context(tls, name)
    except OSError as exc:  # missing file, or not a PEM certificate/key (ssl.SSLError)
        raise RelayError(
            f"Modbus/TCP Security to {host}:{port}: cannot load the DSO's certificates: {exc}"
        ) from None

    class RelayTlsClient(ModbusTlsClient):
        def connect(self) -> bool:
            if super().connect():  # type: ignore[no-untyped-call]
                return True
            if context.refusal is not None:
                why = (
                    f"cannot connect to {host}:{port}: its certificate is refused ({context.refusal}); "
                    f"expected one from the relay CA naming {name!r}"
                )
                log.warning("Modbus/TCP Security: %s", why)
                raise RelayError(why)
            return False

    return RelayTlsClient(host, port=port, sslctx=context, timeout=timeout_s, retries=0)


def relay_endpoints(entries: list[dict[str, Any]], tls: RelayTls | None = None) -> dict[int, Any]:
    """Branch -> `RelayEndpoint` for every Modbus TCP or Modbus/TCP Security relay in an endpoints JSON.

    A `modbus-tls` relay gets `tls`; without it that is a `ConfigError` (never a silent plain connection).
    """
    from peergrid_dso.drivers.relay_modbus import RelayEndpoint

    out: dict[int, Any] = {}
    for e in entries:
        if (
            e.get("kind") != "relay"
            or e.get("protocol") not in ("modbus-tcp", "modbus-tls")
            or not e.get("branch")
        ):
            continue
        secure = e.get("protocol") == "modbus-tls"
        if secure and tls is None:
            raise ConfigError(
                f"relay on branch {e['branch']} needs Modbus/TCP Security: no DSO certificate given"
            )
        branch = int(e["branch"])
        relay_tls = None
        if secure and tls is not None:
            relay_tls = tls.model_copy(update={"server_name": tls.names.get(branch)})
        out[branch] = RelayEndpoint(e["host"], int(e["port"]), int(e.get("unit_id") or 1), relay_tls)
    return out
