"""The lab's broker killed with SIGKILL comes back by itself, on the same port (`peergrid-testbed`'s
`broker_watch`), and the lab's daemons say in their logs that they lost it and have it back: the MGMC, the DSO
server's health listener and firmware-sim's MQTT device. The testbed says it once at WARNING with the exit status
and once when it is back; a Ctrl-C then stops the lab cleanly, the restarted broker included. Before, the testbed
only told the user how to restart it (U2 P5), and the lab stalled until then. One real lab: a one-MG scenario
(a Modbus PV the MGMC polls, an MQTT PV), no market, every port a free loopback one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import yaml
from helpers_proc import alive
from helpers_wait import wait_until

from peergrid_ledger.tied import tied_popen
from peergrid_sim.ports import listening_ports

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.system, pytest.mark.xdist_group("system")]

SCENARIO = {
    "name": "q7-broker",
    "feeder": "ieee33",
    "start": "2026-06-21T10:00:00Z",
    "speed": 1,
    "broker": {"host": "127.0.0.1", "port": 1883},  # the testbed points its devices at its own (--broker)
    "profiles": {"sunny": {"irradiance": [[0, 900], [24, 900]]}},
    "microgrids": [
        {
            "name": "mg1",
            "bus": 18,
            "profile": "sunny",
            "devices": [
                {
                    "name": "pv1",
                    "kind": "pv",
                    "protocol": "modbus-tcp",
                    "port": 0,
                    "params": {"rating_w": 10000},
                },
                {
                    "name": "pvroof",
                    "kind": "pv",
                    "protocol": "mqtt",
                    "period_s": 0.5,
                    "params": {"rating_w": 4000},
                },
            ],
        }
    ],
}
# each daemon's MQTT client, as Mosquitto logs its connection ('New client connected from ... as <id>')
CLIENTS = ("as mgmc-mg1 ", "as dso-health ", "as firmware-sim-q7-broker ")
# each daemon's log: its lost line, and its back line (`BrokerOutage`, at WARNING, which each log keeps)
OUTAGE_LINES = {
    "mgmc-mg1": (
        "WARNING lost broker 127.0.0.1:{port} ",
        "connected to broker 127.0.0.1:{port} again after ",
    ),
    "dso": (
        "lost the feeder's broker 127.0.0.1:{port} ",
        "connected to the feeder's broker 127.0.0.1:{port} again after ",
    ),
    "firmware-sim": (
        "lost the broker 127.0.0.1:{port} ",
        "connected to the broker 127.0.0.1:{port} again after ",
    ),
}


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _says_all(log: Path, lines: tuple[str, ...]) -> bool:
    return all(line in _read(log) for line in lines)


@dataclass
class Lab:
    process: subprocess.Popen[str]
    workdir: Path
    out: Path  # the testbed's output
    broker_port: int
    broker_pid: int


@contextmanager
def lab(tmp_path: Path) -> Iterator[Lab]:
    """The one-MG lab, up and every daemon connected to its broker; stopped (SIGTERM) if a test left it running."""
    scenario, workdir, out = tmp_path / "scenario.yaml", tmp_path / "bed", tmp_path / "testbed.out"
    scenario.write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")
    argv = [str(BIN / "peergrid-testbed"), "--scenario", str(scenario), "--no-market", "--http-port", "0",
            "--workdir", str(workdir), "--duration", "600"]  # fmt: skip
    with out.open("w") as sink:
        bed = tied_popen(argv, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        started = lambda: (workdir / "ports.json").exists() or bed.poll() is not None  # noqa: E731
        assert wait_until(started, 180), _read(out)
        assert bed.poll() is None, _read(out)
        port = json.loads((workdir / "ports.json").read_text())["broker"]
        mosquitto_log = workdir / "broker" / "mosquitto.log"
        assert wait_until(lambda: all(c in _read(mosquitto_log) for c in CLIENTS), 60), _read(mosquitto_log)
        yield Lab(bed, workdir, out, port, json.loads((workdir / "pids.json").read_text())["mosquitto"])
    finally:
        if bed.poll() is None:
            bed.send_signal(signal.SIGTERM)
            bed.wait(timeout=60)


def _stopped(lab: Lab) -> dict[str, int]:
    """What the testbed's stop ended (logs/stopped-pids.json), after checking none of it survived."""
    stopped = json.loads((lab.workdir / "logs" / "stopped-pids.json").read_text())
    assert not [name for name, pid in stopped.items() if alive(pid)]
    return dict(stopped)


def _brokers_of(workdir: Path) -> list[int]:
    """The PIDs of the processes running Mosquitto with this lab's config."""
    conf = str(workdir / "broker" / "mosquitto.conf").encode()
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if conf in cmdline.read_bytes().split(b"\0"):
                found.append(int(cmdline.parent.name))
        except OSError:  # ended meanwhile
            continue
    return found


def test_a_killed_broker_comes_back_on_its_port_and_the_daemons_say_lost_and_back(tmp_path: Path) -> None:
    with lab(tmp_path) as bed:
        workdir, out, port, old = bed.workdir, bed.out, bed.broker_port, bed.broker_pid
        os.kill(old, signal.SIGKILL)
        assert wait_until(lambda: "testbed: the broker is back" in _read(out), 60), _read(out)
        told = [line for line in _read(out).splitlines() if "broker" in line and line.startswith("testbed: ")]
        assert told[0].startswith(
            f"testbed: WARNING the broker (mosquitto, PID {old}) exited with -9 (SIGKILL); "
        )
        assert f"starting it again on port {port} in " in told[0]
        assert told[1].startswith(f"testbed: the broker is back on port {port} (mosquitto, PID ")
        assert len(told) == 2, told
        new = json.loads((workdir / "pids.json").read_text())["mosquitto"]
        assert new != old and port in listening_ports(new)
        assert json.loads((workdir / "ports.json").read_text())["broker"] == port
        for name, (lost, back) in OUTAGE_LINES.items():
            log, said = workdir / "logs" / f"{name}.log", (lost.format(port=port), back.format(port=port))
            assert wait_until(partial(_says_all, log, said), 60), (name, _read(log)[-3000:])
        bed.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert bed.process.wait(timeout=60) == 0, _read(out)
    assert "peergrid testbed stopped (SIGINT)" in _read(out)
    assert _stopped(bed)["mosquitto"] == new  # the restarted broker was the testbed's to stop, and it did
    # one outage: the stop ended the broker after the MGMC, which so lost it no second time
    assert _read(workdir / "logs" / "mgmc-mg1.log").count("WARNING lost broker") == 1


def test_a_ctrl_c_while_a_restart_is_due_starts_no_broker(tmp_path: Path) -> None:
    """The stop begins within the wait before the broker's start: it is never started, and nothing is left."""
    with lab(tmp_path) as bed:
        os.kill(bed.broker_pid, signal.SIGKILL)
        assert wait_until(lambda: "testbed: WARNING the broker" in _read(bed.out), 60, 0.01), _read(bed.out)
        bed.process.send_signal(signal.SIGINT)  # within the 1-2 s wait: the loop looks every 0.2 s
        assert bed.process.wait(timeout=60) == 0, _read(bed.out)
    assert "the broker is back" not in _read(bed.out) and "peergrid testbed stopped (SIGINT)" in _read(
        bed.out
    )
    assert _stopped(bed)["mosquitto"] == bed.broker_pid  # the dead one, the last the testbed had
    assert _brokers_of(bed.workdir) == []
