"""The DSO's connection to the feeder's broker over TLS with its client certificate (the pilot's broker: TLS,
per-device certificates whose CN is the identity the ACLs use, no anonymous access).

Promises: `BrokerTls.apply(client)` sets a paho client to verify the broker against `ca_file` (and its name
against the address it dials) and to present the DSO's certificate; unreadable or mismatched files are a
`ConfigError` with one line. `check_broker(host, port, tls, client_id)` makes one MQTT connection (TLS
handshake, CONNECT, CONNACK) before the node starts and raises `ConfigError` saying why when the broker
refuses it for good - no or an untrusted certificate, a broker certificate that does not verify, not
authorised - so a misconfigured node stops at once with a clear message instead of retrying in silence.
A broker that is not up yet is only logged: the node's MQTT clients retry with back-off.
Must never send anything but CONNECT and DISCONNECT, and never keep the probe's connection.
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from typing import Any

from peergrid_ledger.settings import BrokerTlsSettings, ConfigError

log = logging.getLogger("peergrid_dso.broker_tls")
CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class BrokerTls(BrokerTlsSettings):
    """TLS to the broker: the feeder CA (required here), and the DSO's client certificate and key (both or
    neither, checked by `BrokerTlsSettings`)."""

    ca_file: Path

    def context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            if self.cert_file is not None:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except FileNotFoundError as exc:
            raise ConfigError(f"broker TLS: {exc.filename}: no such file") from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"broker TLS: cannot load the CA, certificate or key: {exc}") from None
        return context

    def apply(self, client: Any) -> None:
        """Use TLS on a paho client (before it connects)."""
        client.tls_set_context(self.context())


def _connect_packet(client_id: str, keepalive_s: int = 10) -> bytes:
    ident = client_id.encode()[:64]
    variable = b"\x00\x04MQTT\x04\x02" + keepalive_s.to_bytes(2, "big")
    body = variable + len(ident).to_bytes(2, "big") + ident
    return b"\x10" + bytes([len(body)]) + body  # remaining length < 128: one byte


def check_broker(host: str, port: int, tls: BrokerTls | None, client_id: str, timeout_s: float = 5.0) -> None:
    """One MQTT connection to the broker; `ConfigError` when it refuses this node for good (see module)."""
    where = f"broker {host}:{port}"
    context = tls.context() if tls is not None else None
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        log.warning("%s not reachable yet (%s); the node's MQTT clients will retry", where, exc)
        return
    try:
        with raw:
            sock: Any = raw
            if context is not None:
                sock = context.wrap_socket(raw, server_hostname=host)
            sock.sendall(_connect_packet(client_id))
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    break
                reply += chunk
            if len(reply) == 4 and reply[0] == 0x20:
                sock.sendall(b"\xe0\x00")  # DISCONNECT
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or exc.reason
        raise ConfigError(f"{where}: its certificate does not verify against the CA file ({why})") from None
    except ssl.SSLError as exc:
        hint = "" if tls is None or tls.cert_file is not None else " (no client certificate configured)"
        raise ConfigError(f"{where} refused the TLS connection{hint}: {exc.reason or exc}") from None
    except (ConnectionResetError, BrokenPipeError):
        reply = b""  # refused mid-connect: said below
    except OSError as exc:
        log.warning("%s: connection check failed (%s); the node's MQTT clients will retry", where, exc)
        return
    if len(reply) < 4 or reply[0] != 0x20:
        hint = "; it may require TLS (broker.ca_file) and a client certificate" if context is None else ""
        raise ConfigError(f"{where} closed the connection without accepting it{hint}")
    if reply[3] != 0:
        reason = CONNACK_REASONS.get(reply[3], f"return code {reply[3]}")
        raise ConfigError(f"{where} refused the DSO node: {reason}")
