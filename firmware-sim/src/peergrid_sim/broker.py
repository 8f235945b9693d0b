"""A real Mosquitto broker on a free loopback port, for tests and the lab testbed.

Promises: `MosquittoBroker.start()` returns once the Mosquitto process it started listens on 127.0.0.1 (its
own socket, not merely a port that accepts connections: another process may hold the port it picked), with a
config generated here (plain, or TLS with client certificates whose CN is the MQTT username, and optional
topic ACLs); `stop()` ends exactly the process it started, by its PID, and the process that started it dying
any other way kills it too (`peergrid_ledger.tied`: a killed test leaves no broker behind). The broker runs in a
session of its own, as the testbed's other children do: a Ctrl-C at the terminal (SIGINT to the foreground
process group) reaches the testbed, which stops the broker last, after the processes that use it; in the
testbed's group it died with the Ctrl-C and every MGMC and the DSO logged a broker outage as they stopped.
Never binds anything but loopback and never assumes port 1883 is free. Messages are not persisted: peergrid's
gossip must not depend on it. A publish larger than `MAX_PACKET_BYTES` (a little above the ledger's largest
envelope, which every replica refuses above anyway) is refused by the broker, which disconnects its sender: it
never reaches a subscriber (Mosquitto's default allows 256 MiB, which each subscriber would copy whole; review21 F4).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from peergrid_ledger.consensus.transport import MAX_ENVELOPE_BYTES
from peergrid_ledger.tied import tied_popen
from peergrid_sim.certs import LabPki
from peergrid_sim.ports import wait_for_listener

LOOPBACK = "127.0.0.1"
# The whole MQTT packet: the envelope plus the fixed header, topic, packet id and (MQTT 5) properties.
MAX_PACKET_BYTES = MAX_ENVELOPE_BYTES + 64 * 1024


class BrokerError(RuntimeError):
    """Mosquitto is missing, its config was refused, or it did not start listening in time."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.02)
    return False


@dataclass
class BrokerConfig:
    port: int
    tls: LabPki | None = None
    acl_lines: list[str] | None = None

    def render(self, workdir: Path) -> str:
        # `user root` stops mosquitto from dropping to the `mosquitto` user when started as root,
        # which could not read certificates in a private temp dir.
        lines = [
            "per_listener_settings false",
            "persistence false",
            "user root",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            "max_inflight_messages 1000",
            "max_queued_messages 100000",
            f"max_packet_size {MAX_PACKET_BYTES}",
            # Without it QoS 0 messages wait ~19 ms for Nagle (see ARCHITECTURE.md field notes).
            "set_tcp_nodelay true",
            f"listener {self.port} {LOOPBACK}",
        ]
        if self.tls is None:
            lines.append("allow_anonymous true")
        else:
            lines += [
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server.cert}",
                f"keyfile {self.tls.server.key}",
                "require_certificate true",
                "use_identity_as_username true",
                "allow_anonymous false",
                "tls_version tlsv1.2",
            ]
        if self.acl_lines is not None:
            acl_path = workdir / "acl"
            acl_path.write_text("\n".join(self.acl_lines) + "\n", encoding="utf-8")
            lines.append(f"acl_file {acl_path}")
        return "\n".join(lines) + "\n"


class MosquittoBroker:
    def __init__(
        self,
        workdir: Path,
        *,
        tls: LabPki | None = None,
        acl_lines: list[str] | None = None,
        port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.host = LOOPBACK
        self.port = port or 0
        self.tls = tls
        self.acl_lines = acl_lines
        self.process: subprocess.Popen[bytes] | None = None
        self._timeout = 10.0

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def _spawn(self) -> bool:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            BrokerConfig(self.port, self.tls, self.acl_lines).render(self.workdir), encoding="utf-8"
        )
        with self.log_path.open("ab") as log:
            self.process = tied_popen(
                [exe, "-c", str(conf)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C is the testbed's to handle (module docstring)
            )
        # Mosquitto cannot bind port 0 for us, so the port was picked before: if another process took it in
        # between, that process accepts our connections while our broker exits with "address in use".
        return wait_for_listener(self.process, self.port, self._timeout) is not None

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        self._timeout = timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port != 0
        # A free port can be taken between probing and binding; try a few (each checked as our own listener).
        for _attempt in range(1 if fixed_port else 5):
            if not fixed_port:
                self.port = free_port()
            if self._spawn():
                return self
            self.stop()
        raise BrokerError(f"mosquitto did not start listening; see {self.log_path}")

    def restart(self) -> None:
        """Stop and start again on the same port, with the same config, TLS and ACL files (outage tests, and the
        testbed's `broker_watch` after the broker died)."""
        self.stop()
        if not self._spawn():
            raise BrokerError(f"mosquitto did not come back on port {self.port}; see {self.log_path}")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
