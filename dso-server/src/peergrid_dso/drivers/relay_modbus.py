"""Relays over Modbus TCP: one command coil write, status from one block of discrete inputs.

Promises: `ModbusRelayDriver` implements the switching executor's `RelayDriver`; every failure (no
connection, a connection reset or a TLS error mid-call, a Modbus exception such as 4 for
locked-out/interlocked, a short reply) becomes `RelayError` with the reason, never a bare pymodbus or
socket exception; a client whose call failed is closed, so the next call reconnects. The register map is
data (`data/relay_map.yaml`). It names its relays (`branches`, a `switching.RelayInventory`), so the executor
reads every one before a plan and a node or an operator can adopt what they report (`switching_adopt`).
`read_every` reads every relay at once, one thread per connection (relays behind one host:port share a client
and are read one after the other on it), so silent relays cost about one timeout together, not one each (37
dead relays held a starting node 37 s before it served); each relay's own verdict (its status or its
`RelayError`) is kept. Assumes the relays' endpoints are known (branch -> host, port, unit id). Each call has
a timeout.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import yaml

from peergrid_dso.drivers.relay_tls import RelayTls, tls_client
from peergrid_dso.feeder.cases import packaged_data
from peergrid_dso.services.switching import RelayError, RelayStatus

MAX_READERS = 64  # connections read at once by `read_every` (the feeders here: 37 relays at most)
MODBUS_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal address",
    3: "illegal value",
    4: "device refused",
    6: "busy",
}


def load_relay_map() -> dict[str, dict[str, int]]:
    raw = yaml.safe_load(packaged_data("relay_map.yaml").read_text(encoding="utf-8"))
    return {table: {name: int(addr) for name, addr in points.items()} for table, points in raw.items()}


@dataclass(frozen=True)
class RelayEndpoint:
    host: str
    port: int
    unit_id: int = 1
    tls: RelayTls | None = None  # Modbus/TCP Security (relay_tls.py) when the relay supports it


@dataclass
class ModbusRelayDriver:
    endpoints: dict[int, RelayEndpoint]  # branch number -> relay
    timeout_s: float = 1.0
    relay_map: dict[str, dict[str, int]] = field(default_factory=load_relay_map)
    _clients: dict[tuple[str, int], Any] = field(default_factory=dict)

    def branches(self) -> tuple[int, ...]:
        return tuple(sorted(self.endpoints))

    def _client(self, branch: int) -> tuple[Any, RelayEndpoint]:
        from pymodbus.client import ModbusTcpClient

        ep = self.endpoints.get(branch)
        if ep is None:
            raise RelayError(f"no relay configured for branch {branch}")
        key = (ep.host, ep.port)
        client = self._clients.get(key)
        if client is None:
            if ep.tls is not None:
                client = tls_client(ep.host, ep.port, ep.tls, self.timeout_s)
            else:
                client = ModbusTcpClient(ep.host, port=ep.port, timeout=self.timeout_s, retries=0)
            self._clients[key] = client
        if not client.connected:
            try:
                connected = client.connect()
            except OSError as exc:  # refused, unreachable, a TLS handshake torn (ssl.SSLError is an OSError)
                client.close()
                raise RelayError(f"cannot connect to {ep.host}:{ep.port}: {_why(exc)}") from None
            if not connected:
                raise RelayError(f"cannot connect to {ep.host}:{ep.port}")
        return client, ep

    def _call(self, branch: int, method: str, *args: Any, **kwargs: Any) -> Any:
        from pymodbus.exceptions import ModbusException

        client, ep = self._client(branch)
        try:
            response = getattr(client, method)(*args, device_id=ep.unit_id, **kwargs)
        except (ModbusException, OSError) as exc:
            # pymodbus' sync client lets a reset connection (ConnectionResetError, BrokenPipeError) and a
            # TLS relay's ssl.SSLError out as OSError: the relay's state after it is unknown, so the
            # executor must see a failed step (and read back, roll back, record, alarm), never a crash.
            client.close()
            raise RelayError(f"{method} to {ep.host}:{ep.port}: {_why(exc)}") from None
        if response.isError():
            code = getattr(response, "exception_code", 0)
            raise RelayError(f"Modbus exception {code} ({MODBUS_EXCEPTIONS.get(code, 'unknown')})")
        return response

    def status(self, branch: int) -> RelayStatus:
        di = self.relay_map["discrete_inputs"]
        count = max(di.values()) + 1
        bits = self._call(branch, "read_discrete_inputs", 0, count=count).bits
        if len(bits) < count:
            raise RelayError("short status reply")
        closed_bit, open_bit = bits[di["closed"]], bits[di["open"]]
        closed = True if closed_bit and not open_bit else False if open_bit and not closed_bit else None
        if bits[di["operating"]]:
            closed = None
        return RelayStatus(
            closed, bool(bits[di["locked_out"]]), bool(bits[di["interlock"]]), bool(bits[di["failed"]])
        )

    def read_every(self) -> dict[int, RelayStatus | Exception]:
        """Every relay's status, or the exception its read raised (never raised here): one worker per
        connection, each reading its relays in branch order."""
        lines: dict[tuple[str, int], list[int]] = {}
        for branch, ep in sorted(self.endpoints.items()):
            lines.setdefault((ep.host, ep.port), []).append(branch)

        def read_line(branches: list[int]) -> dict[int, RelayStatus | Exception]:
            found: dict[int, RelayStatus | Exception] = {}
            for branch in branches:
                try:
                    found[branch] = self.status(branch)
                except Exception as exc:  # the caller names the relay with it (`switching._driver_error`)
                    found[branch] = exc
            return found

        if len(lines) <= 1:
            return {b: v for group in lines.values() for b, v in read_line(group).items()}
        with ThreadPoolExecutor(min(len(lines), MAX_READERS), thread_name_prefix="relay-read") as pool:
            return {b: v for found in pool.map(read_line, lines.values()) for b, v in found.items()}

    def command(self, branch: int, close: bool) -> None:
        coil = self.relay_map["coils"]["close_command" if close else "open_command"]
        self._call(branch, "write_coil", coil, True)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _why(exc: BaseException) -> str:
    """A Modbus error says what it is; a socket one needs its type ("[Errno 104] ..." alone does not)."""
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else str(exc)
