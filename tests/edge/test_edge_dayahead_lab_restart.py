"""With real processes: an MGMC daemon SIGKILLed during the lab's day-ahead stage and started again still
completes it, and everyone's session ends as it does without the restart (review8 F3).

`peergrid-testbed --dayahead --intervals 2` (broker, devices, six MGMC daemons each on its own replica, the
DSO; the session runs the genset phases): the coordinator's or a member's daemon is killed 2 s after its
first poll cycle (mid-session on this machine: the session takes about 5 s) and restarted 3 s later through
the testbed's control file. Wherever the kill lands, the stage must complete for all six (the restarted one
resumes from its checkpoint, or reads the closed session and accepts) and the two intervals trade forward.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from peergrid_ledger.keys import read_keyfile
from peergrid_ledger.tied import tied_popen

BIN = Path(sys.executable).parent
SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
MGS = [f"mg{i}" for i in range(1, 7)]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait(what: str, condition: Any, bed: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bed.poll() is not None:
            raise AssertionError(f"the testbed ended while waiting for {what}")
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.system
@pytest.mark.xdist_group("system")
@pytest.mark.parametrize("who", ["coordinator", "member"])
def test_an_mgmc_killed_during_the_lab_session_and_restarted_completes_it(tmp_path: Path, who: str) -> None:
    workdir = tmp_path / "bed"
    argv = [
        str(BIN / "peergrid-testbed"), "--scenario", str(SCENARIO), "--intervals", "2", "--workdir",
        str(workdir), "--http-port", "0", "--report", str(tmp_path / "report"), "--dayahead",
    ]  # fmt: skip
    bed = tied_popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        keys = workdir / "keys"
        _wait("the anonym keys", lambda: all((keys / f"anonym-{mg}.key").exists() for mg in MGS), bed)
        time.sleep(0.2)
        anonym = {mg: read_keyfile(keys / f"anonym-{mg}.key").public for mg in MGS}
        coordinator = min(MGS, key=lambda mg: anonym[mg])
        target = coordinator if who == "coordinator" else next(mg for mg in MGS if mg != coordinator)
        log = workdir / "logs" / f"mgmc-{target}.log"
        _wait(
            "its first poll cycle", lambda: log.exists() and "first poll cycle done" in log.read_text(), bed
        )
        time.sleep(2.0)
        os.kill(json.loads((workdir / "pids.json").read_text())[f"mgmc-{target}"], signal.SIGKILL)
        time.sleep(3.0)
        (workdir / "control").mkdir(exist_ok=True)
        (workdir / "control" / f"restart-mgmc-{target}").touch()
        output, _ = bed.communicate(timeout=300)
    finally:
        if bed.poll() is None:
            bed.kill()
            bed.communicate()
    assert bed.returncode == 0, output[-3000:]
    restarted = [line for line in log.read_text().splitlines() if "peergrid.edge.dayahead" in line]
    print(f"\n{who} {target} killed and restarted: " + " | ".join(line[24:170] for line in restarted))
    sessions = {}
    for mg in MGS:
        lines = _records(workdir / "records" / f"mgmc-{mg}.jsonl")
        session = [doc["dayahead"] for doc in lines if "dayahead" in doc][-1]  # the restarted one's last
        forward = [doc["forward"] for doc in lines if isinstance(doc.get("forward"), dict)]
        assert session["completed"], (mg, session["reason"])
        assert len(forward) == 1 and forward[0]["cleared"] and forward[0]["members_accepted"] == 6
        traded = [doc for doc in lines if "rounds" in doc]
        assert [doc["interval"] for doc in traded] == [36, 37] and all(doc["rounds"] == [] for doc in traded)
        sessions[mg] = (session["iterations"], session["stop"], session["prices"], session["positions"])
    assert len({(i, s, tuple(p)) for i, s, p, _ in sessions.values()}) == 1  # one session, seen alike
