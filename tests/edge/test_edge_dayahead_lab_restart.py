"""With real processes: MGMC daemons SIGKILLed during the lab's day-ahead stage and started again still
complete it, and everyone's session ends as it does without the restarts (review8 F3).

The day-ahead lab run of tests/conftest.py (`dayahead_lab`: `peergrid-testbed --dayahead --intervals 2`,
broker, devices, six MGMC daemons each on its own replica, the DSO; the session runs the genset phases): the
coordinator's daemon is killed 2 s after its first poll cycle (mid-session on this machine: the session takes
about 5 s) and restarted 3 s later through the testbed's control file; once it is up again (its first poll
cycle after the restart) a member's daemon is killed and restarted 3 s later in the same way. One daemon is
down at a time: the members wait for the dead coordinator, the restarted coordinator for the dead member.
Wherever the kills land, the stage must complete for all six (a restarted one resumes from its checkpoint,
or reads the closed session and accepts) and the two intervals trade forward. The two kills were two lab
runs (about 70 s each), one per case; the one run with both keeps every assertion for both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

MGS = [f"mg{i}" for i in range(1, 7)]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.system
@pytest.mark.xdist_group("system")
def test_the_coordinator_and_a_member_killed_during_the_lab_session_and_restarted_complete_it(
    dayahead_lab: Any,  # conftest.DayaheadLab
) -> None:
    lab = dayahead_lab
    for who, mg in (("coordinator", lab.coordinator), ("member", lab.member)):
        assert f"mgmc-{mg} restarted" in lab.output, lab.output[-3000:]
        log = (lab.workdir / "logs" / f"mgmc-{mg}.log").read_text().splitlines()
        restarted = [
            line for line in log if "peergrid.edge.dayahead" in line or "dayahead stage done" in line
        ]
        print(f"\n{who} {mg} killed at {lab.killed[mg]:.1f} and restarted: "
              + " | ".join(line[24:170] for line in restarted))  # fmt: skip
    sessions = {}
    for mg in MGS:
        lines = _records(lab.workdir / "records" / f"mgmc-{mg}.jsonl")
        session = [doc["dayahead"] for doc in lines if "dayahead" in doc][-1]  # the restarted one's last
        forward = [doc["forward"] for doc in lines if isinstance(doc.get("forward"), dict)]
        assert session["completed"], (mg, session["reason"])
        assert len(forward) == 1 and forward[0]["cleared"] and forward[0]["members_accepted"] == 6
        traded = [doc for doc in lines if "rounds" in doc]
        assert [doc["interval"] for doc in traded] == [36, 37] and all(doc["rounds"] == [] for doc in traded)
        sessions[mg] = (session["iterations"], session["stop"], session["prices"], session["positions"])
    assert len({(i, s, tuple(p)) for i, s, p, _ in sessions.values()}) == 1  # one session, seen alike
