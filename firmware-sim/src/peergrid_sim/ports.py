"""Which TCP ports a child process itself listens on, so a launcher never mistakes another's for its own.

Promises: `listening_ports(pid)` returns the TCP ports (IPv4 and IPv6) on which process `pid` holds a socket in
LISTEN state, read from /proc (Linux, the lab host's OS); an exited process has none. `wait_for_listener`
waits until the process listens (on `port`, or on any port when `port` is 0, so a child may bind port 0 and
the launcher learns what the kernel gave it: the lowest port it saw listening at two looks in a row, so a
listener that lives for a moment is not taken for the server - paho's MQTT client makes its socket pair
through a TCP listener on 127.0.0.1:0, up for about 0.25 ms, as a daemon's client starts (R32); an edge daemon
on port 0 (its /metrics) is learned so; the DSO server's port is not: the testbed binds that socket itself and
hands it over, `processes.dso_listener`), and returns None as soon as the process exits. Never opens a socket: probing a port by connecting to it cannot
tell whose listener answered, which is how a broker that failed to bind once looked up while a test's clients
talked to another test's broker.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(fd_dir)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return set()
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
        except OSError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listening_ports(pid: int) -> set[int]:
    """The TCP ports `pid` listens on (empty when it has exited or listens on none)."""
    inodes = _socket_inodes(pid)
    if not inodes:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:  # the process's own network namespace
            lines = Path(f"/proc/{pid}/net/{table}").read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_for_listener(process: subprocess.Popen[bytes], port: int, timeout: float) -> int | None:
    """The port `process` listens on: `port` itself, or (port 0) the lowest it listened on at two looks in a
    row, 50 ms apart; None when it exited first or the timeout passed."""
    deadline = time.monotonic() + timeout
    seen: set[int] = set()  # (port 0) what the last look found
    while time.monotonic() < deadline and process.poll() is None:
        ports = listening_ports(process.pid)
        if port in ports:
            return port
        if port == 0 and (steady := ports & seen):
            return min(steady)
        seen = ports
        time.sleep(0.05)
    return None
