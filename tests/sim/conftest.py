"""Run a firmware-sim scenario in a background thread so that synchronous clients (pysunspec2, mbpoll,
raw sockets) can talk to it from the test; every listener is on a free loopback port. And one settle-by-both
lab run (`settle_by_both_lab`) that the lab tests reading its MGMC chain share."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from peergrid_sim.background import BackgroundSim
from peergrid_sim.scenario import Scenario

SimThread = BackgroundSim  # the name these tests use


@pytest.fixture
def run_sim() -> Iterator[Callable[..., SimThread]]:
    started: list[SimThread] = []

    def start(scenario: dict[str, Any] | Scenario, speed: float | None = 0.0) -> SimThread:
        if isinstance(scenario, dict):
            scenario = Scenario.model_validate(scenario)
        sim = SimThread(scenario, speed).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


ALL_KINDS: dict[str, Any] = {
    "name": "all-kinds",
    "start": "2026-06-21T12:00:00Z",
    "profiles": {
        "flat": {
            "irradiance": [[0, 800], [24, 800]],
            "temperature": [[0, 25], [24, 25]],
            "load": [[0, 1.0], [24, 1.0]],
        }
    },
    "serial_lines": [{"name": "bus1", "device": "pty"}],
    "microgrids": [
        {
            "name": "mg1",
            "bus": 18,
            "profile": "flat",
            "devices": [
                {"name": "pv1", "kind": "pv", "params": {"rating_w": 10000}},
                {
                    "name": "bess1",
                    "kind": "battery",
                    "params": {
                        "capacity_wh": 20000,
                        "max_charge_w": 5000,
                        "max_discharge_w": 5000,
                        "soc_pct": 50,
                    },
                },
                {"name": "gen1", "kind": "genset", "params": {"rating_w": 30000, "start_delay_s": 10}},
                {"name": "load1", "kind": "load", "params": {"critical_w": 4000, "sheddable_w": 2000}},
                {"name": "meter", "kind": "meter"},
                {
                    "name": "pv2",
                    "kind": "pv",
                    "protocol": "modbus-rtu",
                    "line": "bus1",
                    "unit_id": 2,
                    "params": {"rating_w": 8000},
                },
                {
                    "name": "bess2",
                    "kind": "battery",
                    "protocol": "modbus-rtu",
                    "line": "bus1",
                    "unit_id": 3,
                    "params": {"capacity_wh": 10000, "max_charge_w": 3000, "max_discharge_w": 3000},
                },
            ],
        }
    ],
    "relays": [
        {"name": "sw1", "branch": 1, "closed": True, "operate_delay_s": 0.0},
        {"name": "tie33", "branch": 33, "tie": True, "closed": False, "operate_delay_s": 0.0},
    ],
}


@pytest.fixture
def all_kinds() -> dict[str, Any]:
    """One MG with every device kind (TCP and RTU) and two relays, on a flat 800 W/m2 profile."""
    return copy.deepcopy(ALL_KINDS)


def modbus_tcp_request(host: str, port: int, unit: int, pdu: bytes, timeout: float = 1.0) -> bytes | None:
    """Send one request PDU over a fresh connection; the reply PDU, or None on silence."""
    import socket
    import struct

    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">HHHB", 7, 0, len(pdu) + 1, unit) + pdu)
        try:
            header = b""
            while len(header) < 7:
                chunk = sock.recv(7 - len(header))
                if not chunk:
                    return None
                header += chunk
            length = struct.unpack(">H", header[4:6])[0] - 1
            body = b""
            while len(body) < length:
                chunk = sock.recv(length - len(body))
                if not chunk:
                    return None
                body += chunk
            return body
        except TimeoutError:
            return None


@pytest.fixture
def modbus_call() -> Callable[..., bytes | None]:
    return modbus_tcp_request


LAB_SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


@dataclass(frozen=True)
class LabRun:
    """A finished `peergrid-testbed` run: its workdir (records, nodes' stores), how many intervals it traded
    from which, and its output."""

    workdir: Path
    intervals: int
    first_interval: int
    output: str


# The settle-by-both lab's lead to its first interval (--lead-s): shorter than its start can be, so its t0 is
# set by the DSO node's readiness, as the lab's gates need it (`ClosedLoop.move_t0`: ready + `need_s`, the
# 16 s `dso_ready.MGMC_START_LOADED_S` the lab gives its MGMCs' start and the postings it waits for; the lab's
# clock key posts the moved t0's interval clock on chain, `lab_clock`). It was the other labs' 40 s, from
# before the clock could move (T6): then the lab idled until a t0 fixed at its start. H4 measured, ieee33, 3
# intervals, at load 4 (15:20 UTC) with the 40-s lead: the DSO node ready 5.0 s after its spawn; after the
# MGMCs' spawn the clock in a block at 4.2 s, the cover prices and capacities final at 5.6 s, every MG
# enrolled at 7.2 s (health saw it at 7.4 s), and t0 26.1 s after that. Under the suite's load the node's
# start-up took 21-30 s (tests/conftest.py), so the 40 s left the MGMCs 10-19 s: never more than the 16.
SETTLE_BY_BOTH_LEAD_S = 4.0


@pytest.fixture(scope="session")
def settle_by_both_lab(tmp_path_factory: pytest.TempPathFactory) -> LabRun:
    """`peergrid-testbed --settle-by-both --intervals 3` over real processes (broker, devices, six MGMC
    daemons, the DSO), run once for every test that reads its chain: the settle-both test (statements, seals,
    vouching) and the tariff test (cover prices, compensation) ran the same lab apart, 3 and 2 intervals, and
    each paid the lab's lead and end (about 55 s) for it. Both are in the "system" xdist_group, so under
    `--dist loadgroup` one worker runs them and builds this once. A run that fails fails every test using it,
    with the lab's output. Its first interval comes `need_s` after its DSO node is ready
    (`SETTLE_BY_BOTH_LEAD_S`), whatever else shares the machine."""
    workdir = tmp_path_factory.mktemp("settle-by-both-lab") / "bed"
    intervals = 3
    argv = [
        str(Path(sys.executable).parent / "peergrid-testbed"), "--scenario", str(LAB_SCENARIO),
        "--intervals", str(intervals), "--workdir", str(workdir), "--http-port", "0", "--settle-by-both",
        "--lead-s", str(SETTLE_BY_BOTH_LEAD_S),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return LabRun(workdir, intervals, 36, done.stdout)
