"""The lab knows the DSO server's port before the server starts: it binds the listening socket itself and hands
it over (`processes.dso_listener`, `peergrid-dso serve --listen-fd`), so another listener of that process no
longer matters. Before (R32), with `--http-port 0` it learned the port from the process's listening sockets in
/proc, where the DSO node's MQTT client (paho) makes its socket pair through a TCP listener on 127.0.0.1:0 just
as the web server starts: a lab whose look fell in that moment polled a port nobody served until its timeout
('never showed its node running', ci18c), and a poll that reached that listener before paho's own connect
became paho's pair, which then wrote it one b"0" per MQTT publish: its status line never ended and its 5-s
socket timeout never fired, so the lab hung there (ci18f); a poll still ends within its timeout."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from peergrid_ledger.tied import tied_popen
from peergrid_sim.dso_ready import health_answer, wait_ready
from peergrid_sim.processes import TestbedError as LabError
from peergrid_sim.processes import dso_listener

# argv: FD STATUS_FILE LOOP. Listens for half a second on a port of its own first (paho's socket-pair listener,
# held far longer than paho's 0.25 ms) and says whether anything connected there; only then serves /api/health
# on the socket inherited as FD (with LOOP "1" a ready loop, and writes the status file), so the lab's first
# poll waits in that socket's backlog meanwhile
TRANSIENT_THEN_SERVED = """
import http.server, json, pathlib, socket, sys
fd, status_file, loop = int(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3] == "1"
transient = socket.create_server(("127.0.0.1", 0))
transient.settimeout(0.5)
try:
    transient.accept()
    print("the transient listener was polled", flush=True)
except TimeoutError:
    print("the transient listener was left alone", flush=True)
transient.close()
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        doc = {"status": "ok", "node": "dso"} | ({"loop": {"running": True}} if loop else {})
        body = json.dumps(doc).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Answer, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=fd)
if loop:
    status_file.write_text("{}")
server.serve_forever()
"""


@pytest.mark.parametrize("mode", ["closed loop", "console lab mode"])
def test_a_transient_listener_of_the_dso_process_no_longer_matters(tmp_path: Path, mode: str) -> None:
    # before: wait_ready(dso, 0, ...) took the transient port (seen at two looks 50 ms apart) and was
    # saved only by learning the port again once it was gone; now the port is the socket the lab bound
    loop = mode == "closed loop"
    status_file = tmp_path / "status.json"
    with dso_listener(0) as listener:
        port, fd = int(listener.getsockname()[1]), listener.fileno()
        argv = [sys.executable, "-c", TRANSIENT_THEN_SERVED, str(fd), str(status_file), "1" if loop else "0"]
        dso = tied_popen(argv, stdout=subprocess.PIPE, text=True, pass_fds=(fd,))
    try:
        wait_ready(dso, port, status_file if loop else None, 30.0, tmp_path / "dso.log")
        assert (
            dso.stdout is not None
            and dso.stdout.readline().strip() == "the transient listener was left alone"
        )
    finally:
        dso.kill()
        dso.wait()


def test_a_dso_process_that_exits_before_it_answers_is_one_line(tmp_path: Path) -> None:
    with dso_listener(0) as listener:
        port, fd = int(listener.getsockname()[1]), listener.fileno()
        dso = tied_popen([sys.executable, "-c", "import sys; sys.exit(2)"], pass_fds=(fd,))
    with pytest.raises(LabError) as failed:
        wait_ready(dso, port, tmp_path / "status.json", 30.0, tmp_path / "dso.log")
    assert str(failed.value) == f"the DSO server exited with 2 before it answered; see {tmp_path / 'dso.log'}"


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_wait_ready_refuses_a_port_that_is_not_the_servers(tmp_path: Path, port: int) -> None:
    # port 0 meant "learn it from the process" before; the lab now knows it before the server starts
    with subprocess.Popen([sys.executable, "-c", ""]) as dso, pytest.raises(ValueError) as refused:
        wait_ready(dso, port, None, 1.0, tmp_path / "dso.log")
    assert str(refused.value) == f"wait_ready needs the DSO server's own port (1-65535), not {port}"


def test_the_dsos_socket_is_bound_on_loopback_and_a_fixed_port_someone_holds_says_so() -> None:
    with dso_listener(0) as any_port:
        host, port = any_port.getsockname()
        assert host == "127.0.0.1" and port > 0
        assert any_port.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        with pytest.raises(LabError) as taken:
            dso_listener(port)
    assert str(taken.value) == f"the DSO server did not start: port {port} is taken by another process"


# Takes one connection and sends it b"0" every 0.1 s for a minute (paho's pair, woken at each publish), then
# closes; answers /api/health with a 500 on a second connection
TRICKLE = """
import socket, sys, time
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
polled, _ = server.accept()
began = time.monotonic()
while time.monotonic() - began < 60:
    polled.sendall(b"0")
    time.sleep(0.1)
"""


def test_a_poll_fed_a_byte_now_and_then_ends_within_its_timeout() -> None:
    # before: urllib's 5-s timeout is each read's, so the poll read its never-ending status line for the
    # minute and then raised BadStatusLine (not an answer the lab's loop catches)
    stand_in = tied_popen([sys.executable, "-c", TRICKLE], stdout=subprocess.PIPE, text=True)
    try:
        assert stand_in.stdout is not None
        doc, why = health_answer(int(stand_in.stdout.readline()), timeout=1.0)
        assert doc is None and why.startswith("TimeoutError"), why
    finally:
        stand_in.kill()
        stand_in.wait()
