"""The settle-by-both lab starts its MGMCs without waiting for the DSO server to listen (`ClosedLoop.start`).

Under load the DSO took 12 s to listen; the lab used to start the MGMCs only then (their configs needed the
DSO API's port), so they came up after their first interval began and could never meter it. Now the MGMCs'
`dso_api_url` is a socket the lab bound before writing their configs, handed to a forward (netcut) to the
DSO's own port once it listens. Here a stand-in DSO (a tiny HTTP server) listens only once every MGMC was
started: the old order waited for it for ever (until its timeout), and a request to the MGMCs' URL must
reach it through the forward.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from peergrid_ledger.tied import tied_popen
from peergrid_sim.closedloop import LabChains, SettleByBoth
from peergrid_sim.closedloop_run import ClosedLoop
from peergrid_sim.ports import listening_ports
from peergrid_sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"

pytestmark = pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")

# binds any free loopback port only once the go file exists, then answers every GET with its own port
STAND_IN_DSO = """
import http.server, pathlib, sys, time
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.02)
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(self.server.server_address[1]).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", 0), Answer).serve_forever()
"""


class Bed:
    """What `ClosedLoop.start` uses of the testbed: the stand-in DSO, and `spawn` that starts only the
    forward (netcut) for real and records the rest."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.scenario_path, self.scenario = workdir, SCENARIO, load_scenario(SCENARIO)
        self.broker = SimpleNamespace(host="127.0.0.1", port=1883)
        self.http_port = 0
        self.restartable: set[str] = set()
        self.go = workdir / "go"
        self.spawned: list[tuple[str, list[str], bool]] = []  # name, argv, whether the DSO listened then
        self.processes: list[subprocess.Popen[bytes]] = []
        (workdir / "config").mkdir()  # as the testbed's start makes it

    def start_dso(self, loop: dict[str, Any]) -> Any:
        process = tied_popen([sys.executable, "-c", STAND_IN_DSO, str(self.go)])
        self.processes.append(process)
        self.dso = SimpleNamespace(process=process, log=self.workdir / "dso.log")
        return self.dso

    def spawn(self, name: str, argv: list[str], pass_fds: tuple[int, ...] = ()) -> Any:
        self.spawned.append((name, argv, bool(listening_ports(self.dso.process.pid))))
        if name == "dso-api":
            self.processes.append(tied_popen(argv, pass_fds=pass_fds))
        elif sum(1 for n, _, _ in self.spawned if n.startswith("mgmc-")) == len(self.scenario.microgrids):
            self.go.touch()  # every MGMC is started: only now may the DSO listen
        return SimpleNamespace(process=None, log=self.workdir / f"{name}.log")


def test_the_mgmcs_start_before_the_dso_listens_and_reach_its_api_through_the_lab_socket(
    tmp_path: Path,
) -> None:
    LabChains.create(tmp_path / "keys", "ieee33", SCENARIO, SettleByBoth.for_lab(6.0, 36, 1000.0))
    bed = Bed(tmp_path)
    try:
        ClosedLoop(intervals=1).start(bed, [], tmp_path / "endpoints.json")
        names = [name for name, _, _ in bed.spawned]
        assert names == [f"mgmc-mg{i}" for i in range(1, 7)] + ["dso-api"]
        assert not any(listened for name, _, listened in bed.spawned if name.startswith("mgmc-"))
        urls = {
            yaml.safe_load((tmp_path / "config" / f"{name}.yaml").read_text())["market"]["dso_api_url"]
            for name in names[:-1]
        }
        (url,) = urls  # one for all, known before the DSO listened
        dso_port = bed.http_port
        assert dso_port in listening_ports(bed.dso.process.pid) and not url.endswith(f":{dso_port}")
        forward = bed.spawned[-1][1]
        assert forward[forward.index("--to") + 1] == f"127.0.0.1:{dso_port}"
        with urllib.request.urlopen(url + "/", timeout=20) as answer:  # through the forward, to the DSO
            assert json.loads(answer.read()) == dso_port
    finally:
        for process in bed.processes:
            process.kill()
            process.wait(10)


def test_without_settle_by_both_there_is_no_forward(tmp_path: Path) -> None:
    LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    bed = Bed(tmp_path)
    bed.go.touch()
    try:
        ClosedLoop(intervals=1).start(bed, [], tmp_path / "endpoints.json")
        assert [name for name, _, _ in bed.spawned] == [f"mgmc-mg{i}" for i in range(1, 7)]
        config = yaml.safe_load((tmp_path / "config" / "mgmc-mg1.yaml").read_text())
        assert "dso_api_url" not in config["market"]
    finally:
        for process in bed.processes:
            process.kill()
            process.wait(10)
