"""`peergrid-dso serve --listen-fd N` serves on a listening TCP socket its launcher bound (S1).

The lab's testbed binds the DSO server's socket itself and hands it over, so it knows the port at once; it used
to learn it from the server process's listening sockets in /proc, where paho's own short-lived listener could
be taken for it (R32). An fd that is no listening TCP socket exits 2 with one line before the config is read;
one that is serves there, and the config's http.port is not bound (here a port another socket holds).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from peergrid_dso.cli import inherited_listener
from peergrid_dso.cli import main as dso_main
from peergrid_ledger.tied import tied_popen
from peergrid_sim.ports import listening_ports

PEERGRID_DSO = Path(sys.executable).parent / "peergrid-dso"


def _config(tmp_path: Path, http_port: int, broker_port: int = 9) -> Path:
    path = tmp_path / "dso.yaml"
    doc = {
        "node_id": "dso-s1",
        "broker": {"port": broker_port},
        "http": {"host": "127.0.0.1", "port": http_port},
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def serve_argv(config: Path, fd: int) -> list[str]:
    """`peergrid-dso serve` with `config` on the inherited listening socket `fd`, logging at info."""
    return [
        str(PEERGRID_DSO),
        "serve",
        "--config",
        str(config),
        "--listen-fd",
        str(fd),
        "--log-level",
        "info",
    ]


def _closed_fd() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)  # the lowest free number: nothing else opens it between here and the check (one thread)
    return fd


def _pipe(stack: ExitStack) -> int:
    read, write = os.pipe()
    stack.callback(os.close, read)
    stack.callback(os.close, write)
    return read


def _file(stack: ExitStack) -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    stack.callback(os.close, fd)
    return fd


def _socket(stack: ExitStack, family: int, kind: int, listen: bool) -> int:
    sock = stack.enter_context(socket.socket(family, kind))
    sock.bind("" if family == socket.AF_UNIX else ("127.0.0.1", 0))  # (abstract namespace: no file)
    if listen:
        sock.listen()
    return sock.fileno()


BAD_FDS: dict[str, tuple[Callable[[ExitStack], int], str]] = {
    "closed": (lambda _: _closed_fd(), "not an open file descriptor"),
    "negative": (lambda _: -1, "not an open file descriptor"),
    "pipe": (_pipe, "not a socket (a pipe)"),
    "devnull": (_file, "not a socket (a character device)"),
    "udp": (lambda s: _socket(s, socket.AF_INET, socket.SOCK_DGRAM, False), "not a TCP socket (AF_INET, SOCK_DGRAM)"),
    "unix": (lambda s: _socket(s, socket.AF_UNIX, socket.SOCK_STREAM, True), "not a TCP socket (AF_UNIX, SOCK_STREAM)"),
    "not listening": (lambda s: _socket(s, socket.AF_INET, socket.SOCK_STREAM, False), "a TCP socket that does not listen"),
}  # fmt: skip


@pytest.mark.parametrize("bad", sorted(BAD_FDS))
def test_a_listen_fd_that_is_no_listening_tcp_socket_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    make, says = BAD_FDS[bad]
    config = _config(tmp_path, 8080)
    with ExitStack() as stack:
        fd = make(stack)
        with pytest.raises(SystemExit) as exited:
            dso_main(["serve", "--config", str(config), "--listen-fd", str(fd)])
        if fd >= 0 and bad != "closed":
            os.fstat(fd)  # the check left it open (closed by its owner, not by the check)
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and err == f"peergrid-dso: error: --listen-fd {fd}: {says}" + (
        " (its launcher binds it and calls listen first)" if bad == "not listening" else ""
    ), err


def test_the_inherited_socket_keeps_its_own_family() -> None:
    # uvicorn's own `fd=` wraps every fd as AF_UNIX; this one reads it from the socket
    with socket.create_server(("127.0.0.1", 0)) as bound:
        fd = os.dup(bound.fileno())
        os.set_inheritable(fd, True)  # as pass_fds leaves it in the server's process
        got = inherited_listener(fd)
        with got:
            assert got.family == socket.AF_INET and got.type == socket.SOCK_STREAM
            assert got.getsockname() == bound.getsockname()
            assert not got.get_inheritable()  # served here, not passed on to its children (R34-6)


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield int(holder.getsockname()[1])


def _health(port: int, deadline: float) -> dict[str, Any]:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as answer:
                doc: dict[str, Any] = json.loads(answer.read())
                return doc
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_serve_answers_on_the_inherited_socket_and_binds_no_config_port(
    tmp_path: Path, held_port: int
) -> None:
    config = _config(tmp_path, held_port)  # bound by uvicorn, this would fail: address in use
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port, fd = int(listener.getsockname()[1]), listener.fileno()
        argv = serve_argv(config, fd)
        log = tmp_path / "dso.log"
        with log.open("wb") as out:
            server = tied_popen(argv, pass_fds=(fd,), stdout=out, stderr=subprocess.STDOUT)
    try:
        doc = _health(port, time.monotonic() + 120)  # queued in the backlog until uvicorn accepts
        assert doc["node"] == "dso-s1", log.read_text()
        assert listening_ports(server.pid) == {port}  # the config's port was never bound
        assert f"serving on http://127.0.0.1:{port} (inherited fd {fd})" in log.read_text()
    finally:
        server.terminate()  # uvicorn shuts down, then dies of the SIGTERM it held back (as uvicorn.run does)
        server.wait(30)
    assert "Finished server process" in log.read_text()
