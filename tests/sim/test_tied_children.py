"""A killed testbed leaves no child behind (`peergrid_ledger.tied`): the kernel kills every process the testbed
started — the broker, firmware-sim through its venv console script, a program behind a wrapper that execs,
one started from a worker thread — when the testbed dies by SIGKILL, as pytest-timeout or `subprocess.run`'s
timeout kills it. Before, such orphans (DSO servers at 30-68 % CPU) loaded every later test. The tie itself is
tested in tests/ledger/test_tied.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_tied import cleaned_up, kill_and_find_no_survivor, wait_for

from peergrid_ledger.tied import tied_popen

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "skeleton.yaml"
BIN = Path(sys.executable).parent

# A testbed-like parent: the testbed's own `spawn` and broker, its children started from the main thread and
# from a thread that has ended by the time it reports ready.
PARENT = """
import sys, threading, time
from pathlib import Path
from peergrid_sim.broker import MosquittoBroker
from peergrid_sim.processes import Testbed, tool
from peergrid_sim.scenario import load_scenario

work, scenario = Path(sys.argv[1]), Path(sys.argv[2])
bed = Testbed(work, scenario, load_scenario(scenario), 0, 60.0)
bed.broker = MosquittoBroker(work / "broker").start()
bed.spawn("firmware-sim", [tool("firmware-sim"), "run", str(scenario), "--endpoints-json",
          str(work / "endpoints.json"), "--speed", "60", "--broker", f"{bed.broker.host}:{bed.broker.port}"])
wrapper = work / "wrapper.sh"
wrapper.write_text("#!/bin/sh\\nexec sleep 600\\n")
wrapper.chmod(0o755)
bed.spawn("wrapped", [str(wrapper)])
worker = threading.Thread(target=bed.spawn, args=("from-a-thread", ["sleep", "600"]))
worker.start()
worker.join()
bed._write_pids()
print("ready", flush=True)
time.sleep(600)
"""


def test_every_child_of_a_killed_testbed_dies(tmp_path: Path) -> None:
    parent = tied_popen(
        [sys.executable, "-c", PARENT, str(tmp_path), str(SCENARIO)],
        stdout=subprocess.PIPE,
        text=True,
    )
    with cleaned_up(parent) as pids:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "ready"
        pids |= json.loads((tmp_path / "pids.json").read_text())
        assert set(pids) == {"mosquitto", "firmware-sim", "wrapped", "from-a-thread"}
        wait_for(tmp_path / "endpoints.json", parent, 30)  # firmware-sim is up and serving
        # the one started from a worker thread outlived that thread: it is tied to the process, not the thread
        kill_and_find_no_survivor(parent, pids)


@pytest.mark.system
@pytest.mark.xdist_group("system")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["killed", "hung-up"])
def test_a_peergrid_testbed_ended_by_a_signal_leaves_no_process(tmp_path: Path, sig: int) -> None:
    """The real lab: `peergrid-testbed` with its broker, firmware-sim, an MGMC daemon and the DSO server.
    Killed, the kernel ends its children; hung up (its terminal closed), it stops them itself and exits 0."""
    workdir = tmp_path / "bed"
    argv = [
        str(BIN / "peergrid-testbed"),
        "--http-port",
        "0",
        "--workdir",
        str(workdir),
        "--scenario",
        str(SCENARIO),
    ]
    with (tmp_path / "testbed.log").open("w") as log:
        bed = tied_popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True)
    with cleaned_up(bed) as pids:
        wait_for(workdir / "ports.json", bed, 60)  # every part came up, the DSO server listens
        pids |= json.loads((workdir / "pids.json").read_text())
        assert {"mosquitto", "firmware-sim", "dso"} <= set(pids)
        assert any(name.startswith("mgmc-") for name in pids)
        code = kill_and_find_no_survivor(bed, pids, sig)
    if sig == signal.SIGHUP:
        assert code == 0 and "stopped (SIGHUP)" in (tmp_path / "testbed.log").read_text()
