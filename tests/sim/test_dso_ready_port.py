"""The lab learns the DSO server's port from the server's own listening socket (`--http-port 0`), and a
listener of that process that came and went before the server listened is not taken for it (R32): the DSO
node's MQTT client (paho) makes its socket pair through a TCP listener on 127.0.0.1:0 just as the web server
starts, and a lab whose poll of the process's sockets fell in that moment polled a port nobody served until
its timeout ('never showed its node running', ci18c). A poll that reached that listener before paho's own
connect became paho's pair, which then wrote it one b"0" per MQTT publish: its status line never ended and its
5-s socket timeout never fired, so the lab hung there (ci18f); a poll now ends within its timeout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from peergrid_ledger.tied import tied_popen
from peergrid_sim.dso_ready import health_answer, wait_ready

pytestmark = pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")

# argv: STATUS_FILE. Listens on a first port and prints it; at the first connection there it closes that
# listener, then the connection unanswered (as paho's pair would leave a poll), and only then serves a ready
# /api/health on a second port, printed too, and writes the status file
TWO_LISTENERS = """
import http.server, json, pathlib, socket, sys
status_file = pathlib.Path(sys.argv[1])
first = socket.create_server(("127.0.0.1", 0))
print(first.getsockname()[1], flush=True)
polled, _ = first.accept()
first.close()
polled.close()
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "node": "dso", "loop": {"running": True}}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
print(server.server_address[1], flush=True)
status_file.write_text("{}")
server.serve_forever()
"""


def test_a_port_the_dso_process_listened_on_only_for_a_moment_is_learned_again(tmp_path: Path) -> None:
    status_file, log = tmp_path / "status.json", tmp_path / "dso.log"
    dso = tied_popen([sys.executable, "-c", TWO_LISTENERS, str(status_file)], stdout=subprocess.PIPE)
    try:
        assert dso.stdout is not None
        port = wait_ready(dso, 0, status_file, 30.0, log)
        first, served = int(dso.stdout.readline()), int(dso.stdout.readline())
        assert port == served != first  # before: the first port, polled (refused) until the timeout
    finally:
        dso.kill()
        dso.wait()


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
