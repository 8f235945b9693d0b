"""Modbus/TCP Security (Modbus over TLS, port 802 by convention) to relays that support it.

Promises: `tls_client` returns a pymodbus `ModbusTlsClient` that presents the DSO's client certificate and
accepts only a relay whose certificate chains to the relays' CA, over TLS 1.2 or later; the relay decides
what the DSO may do from that certificate's Modbus Role (or its CN). `relay_endpoints` reads firmware-sim's
endpoints JSON entries (`"protocol": "modbus-tls"` marks a relay that needs it). Assumes a private relay
PKI: the relay is identified by its CA-issued certificate, not by host name (relays are addressed by IP and
the sync client gives no server name), so hostname checking is off and the CA must issue only to devices.
Never falls back to plain Modbus TCP for a relay configured for TLS.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from peergrid_ledger.settings import ConfigError, StrictSettings

MODBUS_TLS_PORT = 802


class RelayTls(StrictSettings):
    """The DSO's side of Modbus/TCP Security to relays (a config block; frozen, so hashable)."""

    ca_file: Path  # the CA that issued the relays' certificates
    cert_file: Path  # the DSO's client certificate (its role says what it may do)
    key_file: Path


def client_context(tls: RelayTls) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # see the module contract: the chain to the relay CA is the identity
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(tls.ca_file))
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


def tls_client(host: str, port: int, tls: RelayTls, timeout_s: float) -> Any:
    """A sync client, like the driver's plain one; unreadable certificates are a `RelayError`."""
    from pymodbus.client import ModbusTlsClient

    from peergrid_dso.services.switching import RelayError

    try:
        context = client_context(tls)
    except OSError as exc:  # missing file, or not a PEM certificate/key (ssl.SSLError)
        raise RelayError(
            f"Modbus/TCP Security to {host}:{port}: cannot load the DSO's certificates: {exc}"
        ) from None
    return ModbusTlsClient(host, port=port, sslctx=context, timeout=timeout_s, retries=0)


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
        out[int(e["branch"])] = RelayEndpoint(
            e["host"], int(e["port"]), int(e.get("unit_id") or 1), tls if secure else None
        )
    return out
