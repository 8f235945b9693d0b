"""`peergrid_ledger.tied`: a tied child runs like any `Popen` child, with whatever its caller passes, and the
kernel kills it when its parent dies, however the parent started it (main thread, a thread that has ended, a bare
fork, the ledger's lab network of nodes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers_tied import cleaned_up, kill_and_find_no_survivor

from peergrid_ledger.tied import tie_to, tied_popen

# A parent that ties a child in each way there is, then reports their PIDs and waits to be killed.
PARENT = """
import json, os, sys, threading, time
from pathlib import Path
from peergrid_ledger.consensus.labnet import LabNet
from peergrid_ledger.tied import tie_to, tied_popen

pids = {"main-thread": tied_popen(["sleep", "600"]).pid}
worker = threading.Thread(target=lambda: pids.update({"from-a-thread": tied_popen(["sleep", "600"]).pid}))
worker.start()
worker.join()
net = LabNet.create(Path(sys.argv[1]), 1, 0, port=1)
net.start(0, [sys.executable, "-c", "import time; time.sleep(600)"])  # a node that never exits by itself
pids["labnet-node"] = net.processes[0].pid
parent = os.getpid()
forked = os.fork()
if forked == 0:
    tie_to(parent)()
    time.sleep(600)
    os._exit(0)
pids["forked"] = forked
print(json.dumps(pids), flush=True)
time.sleep(600)
"""

# What a child sees of its own start: the death signal it carries (PR_GET_PDEATHSIG), where it runs, its env,
# whether it leads its own session, and a descriptor handed down to it.
PROBE = """
import ctypes, json, os, sys
deathsig = ctypes.c_int(-1)
assert ctypes.CDLL(None).prctl(2, ctypes.byref(deathsig), 0, 0, 0) == 0
os.write(int(sys.argv[1]), b"through pass_fds")
print(json.dumps({"deathsig": deathsig.value, "cwd": os.getcwd(), "env": os.environ.get("PEERGRID_PROBE"),
                  "own_session": os.getsid(0) == os.getpid()}))
"""


def test_a_tied_child_runs_like_any_other_and_the_tie_is_not_overridden() -> None:
    child = tied_popen([sys.executable, "-c", "print(41 + 1)"], stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=10)
    assert (child.returncode, out) == (0, "42\n")
    with pytest.raises(TypeError, match="preexec_fn"):
        tied_popen(["true"], preexec_fn=lambda: None)


def test_what_the_callers_pass_reaches_the_child_and_the_tie_survives_exec(tmp_path: Path) -> None:
    """The arguments the tests and the testbed give it: cwd, env, a log file for stdout and stderr, its own
    session, a descriptor to inherit. The tie is still set in the program that was exec'd."""
    read_fd, write_fd = os.pipe()
    log = tmp_path / "probe.log"
    try:
        with log.open("w") as out:
            child = tied_popen(
                [sys.executable, "-c", PROBE, str(write_fd)],
                cwd=tmp_path,
                env={**os.environ, "PEERGRID_PROBE": "passed"},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(write_fd,),
            )
        assert child.wait(timeout=30) == 0, log.read_text()
        assert os.read(read_fd, 100) == b"through pass_fds"
    finally:
        os.close(read_fd)
        os.close(write_fd)
    seen = json.loads(log.read_text())
    assert seen == {
        "deathsig": signal.SIGKILL,
        "cwd": str(tmp_path),
        "env": "passed",
        "own_session": True,
    }


def test_a_start_that_fails_in_the_spawner_thread_raises_in_the_caller() -> None:
    raised: list[BaseException] = []

    def start() -> None:
        try:
            tied_popen(["/nonexistent/peergrid-program"])
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=start)
    worker.start()
    worker.join(timeout=30)
    assert len(raised) == 1 and isinstance(raised[0], FileNotFoundError)


def test_a_child_whose_parent_died_before_it_was_tied_never_runs(tmp_path: Path) -> None:
    """The parent can die between fork and the tie: the child finds another parent and kills itself before
    exec. Simulated by naming a parent the child does not have."""
    marker = tmp_path / "ran"
    not_my_parent = tie_to(os.getpid() + 1_000_000)
    child = subprocess.Popen([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], preexec_fn=not_my_parent)
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert not marker.exists()


def test_every_tied_child_of_a_killed_parent_dies(tmp_path: Path) -> None:
    parent = tied_popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "net")], stdout=subprocess.PIPE, text=True
    )
    with cleaned_up(parent) as pids:
        assert parent.stdout is not None
        pids |= json.loads(parent.stdout.readline())
        assert set(pids) == {"main-thread", "from-a-thread", "labnet-node", "forked"}
        # the one started from a worker thread outlived that thread; the lab node runs in its own session
        kill_and_find_no_survivor(parent, pids)
