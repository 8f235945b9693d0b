"""The testbed's default DSO port: `DSO_PORT` unless another process holds it, then any free one, judged by
the bind alone (`processes.dso_listener(port, or_any_free=True)`).

Before, `testbed._default_http_port` connected to 8080 and took it when nothing answered, and the testbed
bound it later: a race, and a port held by a socket that does not listen (or listens on another address)
passed for free, so the lab failed at the bind with 'port 8080 is taken'. Now the bind is the test, in one
place, and only EADDRINUSE falls back to any free port; a port asked for with --http-port still fails with the
same one line.
No lab: each test holds a socket on a free port of its own and points the default at it, never at 8080.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from peergrid_sim import processes, testbed
from peergrid_sim.broker import LOOPBACK
from peergrid_sim.processes import DSO_PORT, dso_listener


def _held_and_listening() -> socket.socket:
    return socket.create_server((LOOPBACK, 0))


def _held_not_listening() -> socket.socket:
    """A socket bound to a free loopback port that does not listen: a connect to it is refused."""
    held = socket.socket()
    held.bind((LOOPBACK, 0))
    return held


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def _listens_on_loopback(sock: socket.socket) -> bool:
    return sock.getsockname()[0] == LOOPBACK and bool(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    )


def test_the_default_port_is_taken_when_free() -> None:
    with _held_and_listening() as probe:
        port = _port(probe)  # free once closed (SO_REUSEADDR: its TIME_WAIT, if any, does not hold it)
    with dso_listener(port, or_any_free=True) as listener:
        assert _port(listener) == port and _listens_on_loopback(listener)


@pytest.mark.parametrize(
    "holder", [_held_and_listening, _held_not_listening], ids=["listening", "bound only"]
)
def test_a_default_port_another_process_holds_gives_any_free_one(holder: Any) -> None:
    # 'bound only' is what the connect probe took for free (refused), and the lab then failed at the bind
    with holder() as held, dso_listener(_port(held), or_any_free=True) as listener:
        assert _port(listener) not in (0, _port(held)) and _listens_on_loopback(listener)


@pytest.mark.parametrize(
    "holder", [_held_and_listening, _held_not_listening], ids=["listening", "bound only"]
)
def test_a_port_asked_for_that_another_process_holds_is_the_same_one_line_error(holder: Any) -> None:
    with holder() as held, pytest.raises(processes.TestbedError) as taken:
        port = _port(held)
        dso_listener(port)
    assert str(taken.value) == f"the DSO server did not start: port {port} is taken by another process"


def _time_wait_on(port: int) -> bool:
    """A TCP socket in TIME_WAIT (state 06) whose local port is `port`, per /proc/net/tcp."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(int(f[1].split(":")[1], 16) == port and f[3] == "06" for f in (line.split() for line in lines))


def test_a_default_port_left_in_time_wait_by_an_earlier_server_is_taken() -> None:
    with _held_and_listening() as server:
        port = _port(server)
        client = socket.create_connection((LOOPBACK, port))
        served, _ = server.accept()
        served.close()  # the server's side closes first: it is the one left in TIME_WAIT
        client.recv(1)  # its FIN has come
        client.close()
    if not _time_wait_on(port):
        pytest.skip(
            "no TIME_WAIT socket on the port to test with"
        )  # (another kernel's choice; not seen here)
    with dso_listener(port, or_any_free=True) as listener:
        assert _port(listener) == port


def test_an_error_other_than_a_port_held_is_not_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(address: tuple[str, int]) -> socket.socket:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket, "create_server", refused)  # (processes calls socket.create_server)
    with pytest.raises(processes.TestbedError) as failed:
        dso_listener(1234, or_any_free=True)
    assert str(failed.value) == "the DSO server did not start: port 1234: Permission denied"


def _bed_that_spawns_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: int, default: bool
) -> tuple[processes.Testbed, list[list[str]]]:
    """A testbed whose `start_dso` writes the DSO's config and binds its socket, and whose spawns (the argv of
    each) are only written down."""
    scenario: Any = SimpleNamespace(feeder="ieee33")
    bed = processes.Testbed(
        tmp_path, Path("unused.yaml"), scenario, port, 60.0, http_port_or_any_free=default
    )
    bed.broker = SimpleNamespace(host=LOOPBACK, port=9)  # type: ignore[assignment]
    monkeypatch.setattr(bed, "_console_users", lambda: tmp_path / "users.json")
    spawned: list[list[str]] = []
    monkeypatch.setattr(bed, "spawn", lambda name, argv, pass_fds=(): spawned.append(argv))
    return bed, spawned


def test_the_testbed_serves_the_dso_on_the_free_port_it_bound_when_the_default_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _held_and_listening() as held:
        bed, spawned = _bed_that_spawns_nothing(tmp_path, monkeypatch, _port(held), default=True)
        bed.start_dso()
        config = yaml.safe_load((tmp_path / "config" / "dso.yaml").read_text())
        assert bed.http_port not in (0, _port(held)) and config["http"]["port"] == bed.http_port
        assert len(spawned) == 1 and "--listen-fd" in spawned[0]  # served on the socket bound here
        assert not bed.http_port_or_any_free  # the port its clients know: a second start must not move it


def test_the_testbed_with_a_port_asked_for_that_is_held_fails_with_the_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _held_and_listening() as held:
        bed, spawned = _bed_that_spawns_nothing(tmp_path, monkeypatch, _port(held), default=False)
        with pytest.raises(
            processes.TestbedError, match=f"^the DSO server did not start: port {_port(held)} is taken"
        ):
            bed.start_dso()
        assert spawned == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [([], (DSO_PORT, True)), (["--http-port", "0"], (0, False)), (["--http-port", "5080"], (5080, False))],
)
def test_only_the_default_port_may_be_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: list[str], expected: tuple[int, bool]
) -> None:
    made: list[tuple[int, bool]] = []

    class Recorded:
        def __init__(self, *args: Any, http_port_or_any_free: bool = False) -> None:
            made.append((args[3], http_port_or_any_free))
            self.loop = None

        def start(self) -> None:
            raise processes.TestbedError("stopped here: the test needs only what the testbed was made with")

        def stop(self) -> None:
            pass

    monkeypatch.setattr(testbed, "Testbed", Recorded)
    assert testbed.main([*given, "--no-market", "--workdir", str(tmp_path)]) == 1
    assert made == [expected]
