"""With real processes: MGMC daemons SIGKILLed during the lab's day-ahead stage and started again still
complete it, and everyone's session ends as it does without the restarts (review8 F3).

`peergrid-testbed --dayahead --intervals 2` (broker, devices, six MGMC daemons each on its own replica, the
DSO; the session runs the genset phases): the coordinator's daemon is killed 2 s after its first poll cycle
(mid-session on this machine: the session takes about 5 s) and restarted 3 s later through the testbed's
control file; once it is up again (its first poll cycle after the restart) a member's daemon is killed and
restarted 3 s later in the same way. One daemon is down at a time: the members wait for the dead
coordinator, the restarted coordinator for the dead member. Wherever the kills land, the stage must
complete for all six (a restarted one resumes from its checkpoint, or reads the closed session and accepts)
and the two intervals trade forward. The two kills were two lab runs (about 70 s each), one per case; one
run with both (a longer lead for the second restart) keeps every assertion for both.
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


# the lab's lead to its first interval: the day-ahead default (55 s) and 10 s for the second kill and
# restart, which follow the first: the stage (its session closes 12.5 s before t0) must take in two daemons'
# start-ups after the MGMCs' own
LEAD_S = 65.0


def _kill_and_restart(workdir: Path, mg: str) -> float:
    """SIGKILL `mg`'s daemon, then ask the testbed to start it again 3 s later; the wall time of the kill."""
    killed = time.time()
    os.kill(json.loads((workdir / "pids.json").read_text())[f"mgmc-{mg}"], signal.SIGKILL)
    time.sleep(3.0)
    (workdir / "control").mkdir(exist_ok=True)
    (workdir / "control" / f"restart-mgmc-{mg}").touch()
    return killed


def _polled(log: Path) -> int:
    """How many times the daemon logging to `log` finished its first poll cycle (once per start)."""
    return log.read_text().count("first poll cycle done") if log.exists() else 0


@pytest.mark.system
@pytest.mark.xdist_group("system")
def test_the_coordinator_and_a_member_killed_during_the_lab_session_and_restarted_complete_it(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "bed"
    argv = [
        str(BIN / "peergrid-testbed"), "--scenario", str(SCENARIO), "--intervals", "2", "--workdir",
        str(workdir), "--http-port", "0", "--report", str(tmp_path / "report"), "--dayahead",
        "--lead-s", str(LEAD_S),
    ]  # fmt: skip
    bed = tied_popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        keys = workdir / "keys"
        _wait("the anonym keys", lambda: all((keys / f"anonym-{mg}.key").exists() for mg in MGS), bed)
        time.sleep(0.2)
        anonym = {mg: read_keyfile(keys / f"anonym-{mg}.key").public for mg in MGS}
        coordinator = min(MGS, key=lambda mg: anonym[mg])
        member = next(mg for mg in MGS if mg != coordinator)
        logs = {mg: workdir / "logs" / f"mgmc-{mg}.log" for mg in (coordinator, member)}
        _wait("the coordinator's first poll cycle", lambda: _polled(logs[coordinator]) >= 1, bed)
        time.sleep(2.0)
        killed = {coordinator: _kill_and_restart(workdir, coordinator)}
        # the member goes down only once the coordinator's daemon is up again, not while it is down
        _wait("the restarted coordinator's first poll cycle", lambda: _polled(logs[coordinator]) >= 2, bed)
        killed[member] = _kill_and_restart(workdir, member)
        output, _ = bed.communicate(timeout=300)
    finally:
        if bed.poll() is None:
            bed.kill()
            bed.communicate()
    assert bed.returncode == 0, output[-3000:]
    for who, mg in (("coordinator", coordinator), ("member", member)):
        assert f"mgmc-{mg} restarted" in output, output[-3000:]
        restarted = [line for line in logs[mg].read_text().splitlines() if "peergrid.edge.dayahead" in line]
        stage = [line for line in logs[mg].read_text().splitlines() if "dayahead stage done" in line]
        print(f"\n{who} {mg} killed at {killed[mg]:.1f} and restarted: "
              + " | ".join(line[24:170] for line in restarted + stage))  # fmt: skip
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
