"""A lab network of replica processes on one machine: keys, genesis, configs, start/kill/restart, status.

Promises: `LabNet.create(root, authorities, observers, ...)` writes key files (0600), one genesis and one YAML
config per node under `root`; `start(i)` launches `python -m peergrid_ledger.consensus.node_cli` for node i
as its own process (its own session, so `kill(i)` sends SIGKILL to exactly that process), `stop(i)` sends
SIGTERM and waits; `status(i)` reads the node's status file. Every node is tied to the process that started
it (`peergrid_ledger.tied`): a test or benchmark killed before its `stop_all()` leaves no node behind. Used by
the real-broker tests and the benchmark; not by production nodes. Never touches processes it did not start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import keys
from ..genesis import Account, Genesis, Params
from ..tied import tied_popen

LAB_CHAIN = "lab-chain"


def lab_key(name: str) -> keys.Keypair:
    return keys.Keypair.from_seed(hashlib.sha256(b"peergrid-lab/" + name.encode()).digest())


@dataclass
class LabNet:
    root: Path
    names: list[str]
    authorities: int
    clients: list[keys.Keypair]
    genesis: Genesis
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        root: Path,
        authorities: int,
        observers: int,
        port: int,
        chain_settings: dict[str, Any] | None = None,
        clients: int = 1,
        feeder: str = "lab",
        genesis_time: int | None = None,
    ) -> LabNet:
        root.mkdir(parents=True, exist_ok=True)
        names = [f"authority{i}" for i in range(authorities)] + [f"observer{i}" for i in range(observers)]
        node_keys = [lab_key(f"{root}/{n}") for n in names]
        client_keys = [lab_key(f"{root}/client{i}") for i in range(clients)]
        genesis = Genesis(
            chain=LAB_CHAIN,
            time=int(time.time() * 1000) - 1000 if genesis_time is None else genesis_time,
            authorities=tuple(k.public for k in node_keys[:authorities]),
            accounts=tuple(
                Account(k.public, ("mgmc",), f"observer-{i}") for i, k in enumerate(node_keys[authorities:])
            )
            + tuple(Account(k.public, ("anonym",), f"client-{i}") for i, k in enumerate(client_keys)),
            params=Params(block_max_future_ms=5000, tx_max_age_ms=600_000),
        )
        (root / "genesis.json").write_text(json.dumps(genesis.to_json()), encoding="utf-8")
        net = cls(root, names, authorities, client_keys, genesis)
        for name, keypair in zip(names, node_keys, strict=True):
            key_file = root / f"{name}.key"
            if not key_file.exists():
                keys.write_keyfile(key_file, keypair)
            net.write_config(names.index(name), port, chain_settings or {}, feeder)
        return net

    def write_config(self, i: int, port: int, chain_settings: dict[str, Any], feeder: str = "lab") -> None:
        name = self.names[i]
        config = {
            "key_file": str(self.root / f"{name}.key"),
            "feeder": feeder,
            "broker_host": "127.0.0.1",
            "broker_port": port,
            "client_id": f"{self.root.name}-{name}",
            "status_file": str(self.root / f"{name}.status.json"),
            "chains": [
                {
                    "genesis": str(self.root / "genesis.json"),
                    "data_dir": str(self.root / f"{name}.db"),
                    **chain_settings,
                }
            ],
        }
        (self.root / f"{name}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    def db(self, i: int) -> Path:
        return self.root / f"{self.names[i]}.db"

    def start(self, i: int, command: list[str] | None = None) -> None:
        name = self.names[i]
        (self.root / f"{name}.status.json").unlink(missing_ok=True)
        argv = command or [sys.executable, "-m", "peergrid_ledger.consensus.node_cli"]
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.processes[i] = tied_popen(
            [*argv, "--config", str(self.root / f"{name}.yaml")],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

    def kill(self, i: int) -> None:
        process = self.processes.pop(i)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self, i: int) -> int:
        process = self.processes.pop(i)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(5)

    def stop_all(self) -> None:
        for i in list(self.processes):
            with contextlib.suppress(Exception):
                self.stop(i)

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            doc = json.loads((self.root / f"{self.names[i]}.status.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        chain: dict[str, Any] = doc["chains"][LAB_CHAIN]
        return chain

    def height(self, i: int) -> int:
        status = self.status(i)
        return -1 if status is None else int(status["height"])

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        logs = "\n".join(self.tail_log(i) for i in range(len(self.names)))
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what}; heights {self.heights()}\n{logs}"
        )

    def heights(self) -> dict[str, int]:
        return {name: self.height(i) for i, name in enumerate(self.names)}

    def tail_log(self, i: int, lines: int = 5) -> str:
        path = self.root / f"{self.names[i]}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return f"--- {self.names[i]}:\n" + "\n".join(text)

    def alive(self, i: int) -> bool:
        process = self.processes.get(i)
        return process is not None and process.poll() is None

    def __enter__(self) -> LabNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
