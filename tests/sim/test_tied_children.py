"""A killed testbed leaves no child behind (`peergrid_sim.tied`): the kernel kills every process the testbed
started — the broker, firmware-sim through its venv console script, a program behind a wrapper that execs,
one started from a worker thread — when the testbed dies by SIGKILL, as pytest-timeout or `subprocess.run`'s
timeout kills it. Before, such orphans (DSO servers at 30-68 % CPU) loaded every later test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peergrid_sim.tied import tie_to, tied_popen

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


def alive(pid: int) -> bool:
    """Running: a zombie (killed, not yet reaped by whoever inherited it) is dead for our purposes."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def survivors(pids: dict[str, int], within_s: float) -> dict[str, int]:
    """The children still running once all are gone or `within_s` passed (polled, not slept on)."""
    deadline = time.monotonic() + within_s
    while True:
        left = {name: pid for name, pid in pids.items() if alive(pid)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def wait_for(path: Path, process: subprocess.Popen[str], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not path.exists():
        assert process.poll() is None, f"the parent exited with {process.returncode}"
        assert time.monotonic() < deadline, f"no {path.name} in {within_s:.0f} s"
        time.sleep(0.1)


@contextlib.contextmanager
def cleaned_up(parent: subprocess.Popen[str]) -> Iterator[dict[str, int]]:
    """The children's PIDs (the test fills them in), killed at the end with the parent even when the test
    failed, so that it does not leave the orphans it found."""
    pids: dict[str, int] = {}
    try:
        yield pids
    finally:
        parent.kill()
        parent.wait()
        for pid in pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def kill_and_find_no_survivor(
    parent: subprocess.Popen[str], pids: dict[str, int], sig: int = signal.SIGKILL
) -> int:
    """The parent's exit code after `sig`, once none of its children runs any more."""
    assert survivors(pids, 0) == pids  # every child runs until then
    parent.send_signal(sig)
    code = parent.wait(timeout=30)
    assert survivors(pids, 10) == {}
    return code


def test_every_child_of_a_killed_testbed_dies(tmp_path: Path) -> None:
    parent = subprocess.Popen(
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
        bed = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True)
    with cleaned_up(bed) as pids:
        wait_for(workdir / "ports.json", bed, 60)  # every part came up, the DSO server listens
        pids |= json.loads((workdir / "pids.json").read_text())
        assert {"mosquitto", "firmware-sim", "dso"} <= set(pids)
        assert any(name.startswith("mgmc-") for name in pids)
        code = kill_and_find_no_survivor(bed, pids, sig)
    if sig == signal.SIGHUP:
        assert code == 0 and "stopped (SIGHUP)" in (tmp_path / "testbed.log").read_text()


def test_a_child_whose_parent_died_before_it_was_tied_never_runs(tmp_path: Path) -> None:
    """The parent can die between fork and the tie: the child finds another parent and kills itself before
    exec. Simulated by naming a parent the child does not have."""
    marker = tmp_path / "ran"
    not_my_parent = tie_to(os.getpid() + 1_000_000)
    child = subprocess.Popen([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], preexec_fn=not_my_parent)
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert not marker.exists()


def test_a_tied_child_runs_like_any_other_and_the_tie_is_not_overridden(tmp_path: Path) -> None:
    child = tied_popen([sys.executable, "-c", "print(41 + 1)"], stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=10)
    assert (child.returncode, out) == (0, "42\n")
    with pytest.raises(TypeError, match="preexec_fn"):
        tied_popen(["true"], preexec_fn=lambda: None)
