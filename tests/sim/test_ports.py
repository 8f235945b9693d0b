"""Ports picked by one process and bound by another: the race is provoked on purpose, and nobody mistakes
another process's listener for its own.

Each test holds the port a launcher would pick bound and listening by a socket of its own before the child
starts, which is what another pytest worker did between `free_port()` and the child's bind.
"""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from peergrid_ledger.tied import tied_popen
from peergrid_sim import broker as broker_module
from peergrid_sim.broker import LOOPBACK, BrokerError, MosquittoBroker
from peergrid_sim.ports import listening_ports, wait_for_listener

pytestmark = pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another process (here: this test) listens on."""
    with socket.create_server((LOOPBACK, 0)) as holder:
        yield int(holder.getsockname()[1])


def test_listening_ports_are_the_process_own_and_vanish_when_it_exits(held_port: int) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,sys; s=socket.create_server(('127.0.0.1',0)); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        port = wait_for_listener(child, 0, 20)
        assert port is not None and port != held_port
        assert listening_ports(child.pid) == {port}
        # the held port accepts connections, but it is not the child's
        assert wait_for_listener(child, held_port, 0.3) is None
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
    assert listening_ports(child.pid) == set()
    assert wait_for_listener(child, 0, 5) is None  # exited: at once, not after the timeout


def test_a_child_that_cannot_bind_its_port_is_not_taken_for_up(held_port: int) -> None:
    code = f"import socket; socket.create_server(('127.0.0.1', {held_port}))"
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    assert wait_for_listener(child, held_port, 20) is None
    assert child.wait(10) != 0  # EADDRINUSE


def test_mosquitto_on_a_port_taken_after_the_pick_comes_up_on_another(
    tmp_path: Path, held_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pick returns the held port: the broker must notice its own process did not bind it (the
    holder accepts connections all the same) and try a fresh port."""
    picks = iter([held_port])
    real = broker_module.free_port
    monkeypatch.setattr(broker_module, "free_port", lambda host=LOOPBACK: next(picks, None) or real(host))
    with MosquittoBroker(tmp_path / "broker") as broker:
        assert broker.process is not None
        assert broker.port != held_port and broker.port in listening_ports(broker.process.pid)
        got: queue.Queue[bytes] = queue.Queue()
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ports-test")
        client.on_message = lambda _c, _u, msg: got.put(msg.payload)
        client.on_subscribe = lambda *_: subscribed.set()
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            client.subscribe("peergrid/t/x", qos=1)
            assert subscribed.wait(5)
            client.publish("peergrid/t/x", b"ours", qos=1)
            assert got.get(timeout=5) == b"ours"  # a real broker, ours
        finally:
            client.loop_stop()
            client.disconnect()
    assert "Address already in use" in (tmp_path / "broker" / "mosquitto.log").read_text()


def test_mosquitto_on_a_fixed_port_someone_holds_fails_clearly(tmp_path: Path, held_port: int) -> None:
    with pytest.raises(BrokerError, match="did not start listening"):
        MosquittoBroker(tmp_path / "broker", port=held_port).start(timeout=5)


def test_netcut_serves_on_the_socket_its_launcher_bound(tmp_path: Path) -> None:
    """The testbed binds the pullable cable's port itself and hands the socket over (`--listen-fd`)."""
    with socket.create_server((LOOPBACK, 0)) as upstream, socket.create_server((LOOPBACK, 0)) as listener:
        fd = listener.fileno()
        argv = [sys.executable, "-m", "peergrid_sim.netcut", "--listen-fd", str(fd),
                "--to", f"{LOOPBACK}:{upstream.getsockname()[1]}", "--cut-file", str(tmp_path / "cut")]  # fmt: skip
        cable = tied_popen(argv, pass_fds=(fd,))
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as client:
                upstream.settimeout(10)
                far, _ = upstream.accept()  # netcut connected upstream for us
                with far:
                    client.sendall(b"ping")
                    assert far.recv(4) == b"ping"
        finally:
            cable.terminate()
            cable.wait(10)


@pytest.mark.parametrize("bad", ["70000", "-1", "http", ""])
def test_the_testbed_refuses_a_port_that_is_not_one(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    from peergrid_sim.testbed import main

    with pytest.raises(SystemExit) as exited:
        main(["--http-port", bad, "--duration", "1"])
    assert exited.value.code == 2 and "not a TCP port (0-65535)" in capsys.readouterr().err


def test_a_broker_restart_whose_port_was_taken_meanwhile_says_so(tmp_path: Path) -> None:
    """Mosquitto restarts on the same port (outage tests): if another process bound it in the gap, the
    restart fails loudly instead of the clients reconnecting to that process."""
    broker = MosquittoBroker(tmp_path / "broker").start()
    try:
        broker.stop()
        with (
            socket.create_server((LOOPBACK, broker.port)),
            pytest.raises(BrokerError, match="did not come back"),
        ):
            broker.restart()
        broker.restart()  # the port is free again: it comes back
        assert broker.process is not None and broker.port in listening_ports(broker.process.pid)
    finally:
        broker.stop()


def test_the_fault_tests_broker_restart_on_a_taken_port_ends_the_testbed_clearly(tmp_path: Path) -> None:
    """`restart-broker` (tests/system/test_faults.py) when the port went to another process meanwhile: a
    TestbedError the testbed prints as one line, not a traceback and not a run against a foreign listener."""
    from types import SimpleNamespace

    from peergrid_sim.closedloop_run import ClosedLoop
    from peergrid_sim.processes import TestbedError

    broker = MosquittoBroker(tmp_path / "broker").start()
    bed = SimpleNamespace(workdir=tmp_path, broker=broker, _write_pids=lambda: None)
    (tmp_path / "control").mkdir()
    try:
        (tmp_path / "control" / "restart-broker").touch()
        assert ClosedLoop(1).handle_requests(bed) == ["broker restarted"]
        broker.stop()
        (tmp_path / "control" / "restart-broker").touch()
        with socket.create_server((LOOPBACK, broker.port)), pytest.raises(TestbedError, match="did not come"):
            ClosedLoop(1).handle_requests(bed)
    finally:
        broker.stop()


# Listens for 10 ms on a new port (bind 0) every 12 ms for a second - as paho's socket-pair listener does, for
# about 0.25 ms, in every DSO and edge daemon as its MQTT client starts - and only then on its server's port,
# which it prints, until stdin closes. (The lab's DSO server no longer binds its own port, S1:
# test_dso_ready_port; an edge on port 0, its /metrics, still is learned so: tests/edge, bench_edge)
FLICKERING = """
import socket, sys, time
began = time.monotonic()
while time.monotonic() - began < 1.0:
    brief = socket.create_server(("127.0.0.1", 0))
    time.sleep(0.01)
    brief.close()
    time.sleep(0.002)
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
sys.stdin.read()
"""


def test_a_listener_that_lives_for_a_moment_is_not_taken_for_the_server() -> None:
    # (R32) before, port 0 meant the first port seen: here almost surely one of the brief ones, which a
    # launcher then polled, refused, until its timeout (the lab's 'never showed its node running', ci18c)
    child = tied_popen(
        [sys.executable, "-c", FLICKERING], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        port = wait_for_listener(child, 0, 20)
        assert child.stdout is not None
        assert port == int(child.stdout.readline())
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
