"""The DSO node's relays as configured: `loop.relays_file` read and checked against the feeder, and the driver
the node switches through.

Promises: `load_relays` returns branch -> `RelayEndpoint` for every relay the DSO drives in the file, or raises
`ConfigError` with one line that starts `loop.relays_file: <path>:` and names the entry: unreadable, not
JSON, a shape `relay_tls.relay_endpoints` refuses, a branch the feeder does not have, or no relay at all
(leave `relays_file` out to run with relays in memory). `check_relays` builds what the node will build - the
feeder (`loop_feeder.build_feeder`) and the relays - for `live.preflight` and `peergrid-dso check-config`,
and returns the warnings: the feeder's branches without a relay, named in one line (a plan that switches one
is refused at run time, "no relay configured for branch N"). `relay_driver` is the driver the node runs (Modbus, or in memory
with one relay per branch); both name their branches (`switching.RelayInventory`), so the executor reads
every relay, not only the plan's, before a plan. Reads files; never writes one, never opens a connection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peergrid_dso.drivers.relay_memory import InMemoryRelays
from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver, RelayEndpoint
from peergrid_dso.drivers.relay_tls import RelayTls, relay_endpoints
from peergrid_dso.feeder.model import Feeder
from peergrid_ledger.settings import ConfigError


def load_relays(path: Path, tls: RelayTls | None, feeder: Feeder | None) -> dict[int, RelayEndpoint]:
    where = f"loop.relays_file: {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text at byte {exc.start}") from None
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    n_branches = len(feeder.branches) if feeder is not None else None
    try:
        endpoints: dict[int, RelayEndpoint] = relay_endpoints(entries, tls, n_branches)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not endpoints:
        raise ConfigError(
            f'{where}: no relay the DSO drives in it (an entry with "kind": "relay", protocol modbus-tcp or '
            "modbus-tls, a branch, host and port); leave relays_file out to run with relays in memory"
        )
    return endpoints


def relay_driver(path: Path | None, tls: RelayTls | None, feeder: Feeder | None) -> Any:
    if path is None:
        assert feeder is not None, "relays in memory need the feeder"
        return InMemoryRelays({b.number: b.closed for b in feeder.branches})
    return ModbusRelayDriver(load_relays(path, tls, feeder), timeout_s=1.0)


def unrelayed(feeder: Feeder, endpoints: dict[int, RelayEndpoint]) -> tuple[int, ...]:
    return tuple(b.number for b in feeder.branches if b.number not in endpoints)


def check_relays(loop: Any) -> list[str]:
    """What the node builds from `loop` (a `LoopSettings`) - the feeder, then its relays - built now, so a
    bad case, ties or relays file stops `serve` before the web server starts; the warnings to log."""
    from peergrid_dso.loop_feeder import build_feeder

    feeder = build_feeder(loop)
    if loop.relays_file is None:
        return []
    missing = unrelayed(feeder, load_relays(loop.relays_file, loop.relays_tls, feeder))
    if not missing:
        return []
    return [
        f"loop.relays_file: {loop.relays_file}: {len(missing)} of {feeder.name}'s {len(feeder.branches)} "
        f"branches have no relay ({spans(missing)}): a switching plan that operates one is refused"
    ]


def spans(numbers: tuple[int, ...]) -> str:
    """1, 2, 3, 5, 7, 8 -> "1-3, 5, 7-8": a long list of branches in one readable line."""
    out: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out)
