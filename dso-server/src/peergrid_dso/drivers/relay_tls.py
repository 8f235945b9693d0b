"""Modbus/TCP Security (Modbus over TLS, port 802 by convention) to relays that support it.

Promises: `tls_client` returns a pymodbus `ModbusTlsClient` that presents the DSO's client certificate and
accepts only a relay whose certificate chains to the relays' CA, over TLS 1.2 or later, AND names that relay:
its subjectAltName must match the relay's pinned name (`RelayTls.names`, branch -> DNS name) or, when none is
pinned, the address the relay is reached at (a host name, or an IP address against IP SANs) - standard
OpenSSL host checking, so a relay presenting another relay's valid certificate is refused. A refusal is a
`RelayError` that says which identity was expected and why it failed, logged; it is never retried in plain.
The relay decides what the DSO may do from the DSO certificate's Modbus Role (or its CN).
`relay_endpoints` reads firmware-sim's endpoints JSON entries (`"protocol": "modbus-tls"` marks a relay that
needs it) and refuses, with a `ConfigError` naming the entry, what the DSO could not drive or would misread.
Never falls back to plain Modbus TCP for a relay configured for TLS.
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


def relay_endpoints(
    entries: Any, tls: RelayTls | None = None, n_branches: int | None = None
) -> dict[int, Any]:
    """Branch -> `RelayEndpoint` for every Modbus TCP or Modbus/TCP Security relay in an endpoints JSON.

    Other devices' entries (firmware-sim writes them all) and relays on a serial line, which the DSO does not
    drive, are skipped. Anything else that cannot be a relay the DSO drives is a `ConfigError` naming the entry
    (its index and device name): not a list, an entry that is not an object or has no `kind`, a relay with
    another protocol, without a whole-number `branch` (at most `n_branches`, the feeder's, when given), a
    `host` or a `port` in 1..65535, a `unit_id` outside 1..247, a second relay on one branch. Before, such an
    entry was skipped or failed later inside the web server's start with a bare KeyError.
    A `modbus-tls` relay gets `tls`; without it that is a `ConfigError` (never a silent plain connection).
    """
    from peergrid_dso.drivers.relay_modbus import RelayEndpoint

    if not isinstance(entries, list):
        raise ConfigError(f"expected a JSON list of endpoints, got {_json_kind(entries)}")
    out: dict[int, Any] = {}
    seen: dict[int, str] = {}
    for index, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ConfigError(f"entry {index}: expected an object, got {_json_kind(e)}")
        at = f"entry {index}" + (f" ({e['device']!r})" if isinstance(e.get("device"), str) else "")
        if "kind" not in e:
            raise ConfigError(f'{at}: no "kind" (a relay\'s entry says "kind": "relay")')
        if e["kind"] != "relay" or e.get("protocol") == "modbus-rtu":
            continue
        protocol = e.get("protocol")
        if protocol not in ("modbus-tcp", "modbus-tls"):
            raise ConfigError(
                f"{at}: protocol {protocol!r}; the DSO drives relays over modbus-tcp or modbus-tls"
            )
        branch = _whole(e, "branch", 1, n_branches, at)
        host = e.get("host")
        if not isinstance(host, str) or not host.strip():
            raise ConfigError(f'{at}: "host" must be a host name or address, got {host!r}')
        port = _whole(e, "port", 1, 65535, at)
        unit_id = 1 if e.get("unit_id") is None else _whole(e, "unit_id", 1, 247, at)
        if branch in seen:
            raise ConfigError(f"{at}: branch {branch} has a relay already ({seen[branch]})")
        seen[branch] = at
        secure = protocol == "modbus-tls"
        if secure and tls is None:
            raise ConfigError(f"relay on branch {branch} needs Modbus/TCP Security: no DSO certificate given")
        relay_tls = None
        if secure and tls is not None:
            relay_tls = tls.model_copy(update={"server_name": tls.names.get(branch)})
        out[branch] = RelayEndpoint(host, port, unit_id, relay_tls)
    return out


def _whole(entry: dict[str, Any], key: str, low: int, high: int | None, at: str) -> int:
    value = entry.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= (high or value):
        return value
    if value is None:
        raise ConfigError(f'{at}: no "{key}"')
    span = f"{low}..{high}" if high is not None else f"at least {low}"
    span += " (the feeder's branches)" if key == "branch" and high is not None else ""
    raise ConfigError(f'{at}: "{key}" must be a whole number {span}, got {value!r}')


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")
