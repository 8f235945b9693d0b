"""The lab edges' /metrics (`lab_metrics`): every lab edge's config asks for a metrics endpoint on a free
loopback port, and the testbed's one scrape at the end finds each MGMC's on its own listener and keeps its
text, or says why there is none; the whole lab's scrape is read by the settle-by-both lab test."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from peergrid_edge.config import MetricsSettings
from peergrid_ledger.tied import tied_popen
from peergrid_sim.closedloop import LabChains, LoopTiming, edge_config
from peergrid_sim.lab_metrics import METRICS_FILE, keep_edge_metrics
from peergrid_sim.ports import listening_ports

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
pytestmark = pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")

# a stand-in edge: /metrics on any free loopback port, as the daemon serves it with `metrics.port: 0`
SERVES = """
import http.server
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'peergrid_edge_meter_signed_total{device="meter",result="ok"} 3\\n'
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", 0), Answer).serve_forever()
"""


def test_every_lab_edge_asks_for_its_metrics_on_a_free_loopback_port(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    timing = LoopTiming(t0=1000.0, interval_s=6.0, first_interval=36, intervals=2)
    for mg in chains.mgs:
        config = edge_config(chains, mg, "ieee33", ("127.0.0.1", 1), tmp_path / mg, [], SCENARIO, timing,
                             tmp_path / "records")  # fmt: skip
        assert config["metrics"] == {"host": "127.0.0.1", "port": 0}
        assert MetricsSettings.model_validate(config["metrics"]).port == 0  # the edge's own settings take it


def test_the_end_keeps_each_mgmcs_scrape_or_says_why_there_is_none(tmp_path: Path) -> None:
    serving = tied_popen([sys.executable, "-c", SERVES])
    silent = tied_popen([sys.executable, "-c", "import time; time.sleep(60)"])  # listens on nothing
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(30)
    try:
        deadline = time.monotonic() + 60
        while not listening_ports(serving.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        children = [
            SimpleNamespace(name="mgmc-mg1", process=serving),
            SimpleNamespace(name="mgmc-mg2", process=silent),
            SimpleNamespace(name="mgmc-mg3", process=dead),
            SimpleNamespace(name="firmware-sim", process=serving),  # not an edge: not scraped
        ]
        path = keep_edge_metrics(SimpleNamespace(workdir=tmp_path, children=children))
    finally:
        for process in (serving, silent):
            process.kill()
            process.wait(30)
    assert path == tmp_path / "records" / METRICS_FILE
    kept = json.loads(path.read_text())
    assert sorted(kept) == ["mgmc-mg1", "mgmc-mg2", "mgmc-mg3"]
    assert kept["mgmc-mg1"]["port"] in range(1, 65536)
    assert kept["mgmc-mg1"]["text"] == 'peergrid_edge_meter_signed_total{device="meter",result="ok"} 3\n'
    assert "no listening socket" in kept["mgmc-mg2"]["error"]
    assert kept["mgmc-mg3"] == {"error": "the daemon was down"}


def test_the_scrape_takes_the_listener_seen_at_two_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port the daemon listened on at one look only (paho's wake-up listener as a client starts) is not taken
    for its metrics endpoint, though it is the lowest."""
    from peergrid_sim import lab_metrics, ports

    looks = iter([{1000, 40000}, {40000}])
    monkeypatch.setattr(ports, "listening_ports", lambda pid: next(looks))
    asked: list[str] = []

    def refused(url: str, timeout: float) -> None:
        asked.append(url)
        raise OSError("refused")

    monkeypatch.setattr(lab_metrics.urllib.request, "urlopen", refused)
    daemon = SimpleNamespace(pid=1234, poll=lambda: None)
    assert lab_metrics.scrape(daemon) == {"port": 40000, "error": "http://127.0.0.1:40000/metrics: refused"}
    assert asked == ["http://127.0.0.1:40000/metrics"]
