"""U6: a drill's `restart-dso` (a file in the lab's control folder) stops the running DSO server and starts it
again with the same `loop:` section, between two looks at the children, so the testbed never finds it dead.

On a stand-in testbed: the DSO a real process in its own session (as `Testbed.spawn` starts it), `start_dso`
recorded; no lab.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from peergrid_sim.closedloop_run import ClosedLoop, restart_dso
from peergrid_sim.processes import Child


class Bed:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.http_port = 41403
        self.started: list[dict[str, Any]] = []
        self.children = [self.child("dso"), self.child("mgmc-mg1")]

    def child(self, name: str) -> Child:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        return Child(name, proc, self.workdir / f"{name}.log")

    def start_dso(self, loop: dict[str, Any]) -> Child:
        self.started.append(loop)
        new = self.child("dso")
        self.children.append(new)
        return new


def test_restart_dso_stops_the_running_server_and_starts_it_with_its_loop_section(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    old, mgmc = bed.children
    try:
        said = restart_dso(bed, {"first_interval": 40})
        assert old.process.poll() is not None  # stopped (SIGTERM), never left behind
        assert mgmc.process.poll() is None  # the others go on
        assert bed.started == [{"first_interval": 40}]
        [new] = [c for c in bed.children if c.name == "dso"]
        assert new.process.poll() is None and new is not old
        assert said == f"dso restarted on port 41403 (PID {new.process.pid}; the old one exited -15)"
    finally:
        for c in bed.children:
            c.process.kill()
            c.process.wait()


def test_the_control_file_asks_for_it_and_is_taken(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    loop = ClosedLoop.__new__(ClosedLoop)  # only what handle_requests reads
    loop.argv, loop.dso_section = {}, {"first_interval": 40}
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "restart-dso").touch()
    try:
        [line] = loop.handle_requests(bed)
        assert line.startswith("dso restarted on port 41403")
        assert not (tmp_path / "control" / "restart-dso").exists()
    finally:
        for c in bed.children:
            c.process.kill()
            c.process.wait()
