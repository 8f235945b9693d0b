"""The walking skeleton end to end: `peergrid-testbed` with real processes.

A PV inverter emulated by firmware-sim serves SunSpec over Modbus TCP, an edge daemon polls it and
publishes health over a real Mosquitto, and the DSO server shows the reading through its API and console.
Stopped with SIGTERM (as systemd stops it) once that was seen, every process the testbed started is gone.
It ran with `--duration 20` and waited that out after its checks (15-18 s idle); the duration's own stop
is tested in test_testbed_ports, and here it only caps the run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers_proc import alive

from peergrid_ledger.tied import tied_popen

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.system, pytest.mark.xdist_group("system")]


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


def _dso_port(workdir: Path) -> int | None:
    """The DSO server's port once the testbed found it listening (`--http-port 0`: any free port)."""
    ports = workdir / "ports.json"
    return int(json.loads(ports.read_text())["dso_http"]) if ports.exists() else None


def test_inverter_reading_reaches_the_dso(tmp_path: Path) -> None:
    workdir = tmp_path / "bed"
    bed = tied_popen(
        [
            str(BIN / "peergrid-testbed"),
            "--duration",
            "120",
            "--http-port",
            "0",
            "--workdir",
            str(workdir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reading = None
    port = None
    try:
        # the DSO server and the edges start under the suite's load (DSO start-ups of 21-30 s at load 11-15
        # beside another lab); the loop ends at the first reading, so a long bound costs nothing
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and bed.poll() is None and reading is None:
            time.sleep(0.5)
            port = port or _dso_port(workdir)
            if port is None:
                continue
            try:
                nodes = _get(f"http://127.0.0.1:{port}/api/nodes")
            except OSError:
                continue
            assert isinstance(nodes, dict)
            for entry in nodes["nodes"].values():
                for device in entry["report"]["devices"]:
                    if device["nature"] == "pv" and device["ok"] and device["power_w"] is not None:
                        reading = device
        assert reading is not None, "no PV reading reached the DSO"
        assert 103 in reading["models"] or 701 in reading["models"]
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert "peergrid DSO console" in page
        user, password = (workdir / "console-admin.txt").read_text().split()
        login = urllib.request.Request(
            f"http://127.0.0.1:{port}/console/api/login",
            data=json.dumps({"username": user, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login, timeout=5) as response:
            assert json.loads(response.read())["role"] == "admin"
        bed.send_signal(signal.SIGTERM)
        output, _ = bed.communicate(timeout=60)
    finally:
        if bed.poll() is None:
            bed.kill()
            bed.wait()
    assert bed.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output
    assert "peergrid testbed stopped (SIGTERM)" in output  # by the signal, not the duration's cap
    assert not (workdir / "pids.json").exists() and not (workdir / "ports.json").exists()  # stopped: gone
    pids = json.loads((workdir / "logs" / "stopped-pids.json").read_text())  # what its stop ended
    assert {"firmware-sim", "dso", "mosquitto"} <= set(pids)
    assert not [name for name, pid in pids.items() if alive(pid)], "the testbed left processes running"
