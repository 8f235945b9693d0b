"""D6: what the console holds from its start. A console build that fails (the server's start ends there) closes
the console database it opened; before, the SQLite connection stayed open behind the refusal. The node's records
reader waits for a switching plan's result among the last `RESULTS_AWAITED` plans only (100; 3 here); before, a plan whose
result never came (the node stopped mid-plan) was held for as long as the server ran."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from peergrid_dso.auth.store import ConsoleDb
from peergrid_dso.auth.users import UserError
from peergrid_dso.console.node_records import NodeRecords
from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.console.state import build_console
from peergrid_dso.services.container import build_dso_services
from peergrid_dso.services.enrolment_file import EnrolmentFileError
from peergrid_dso.services.switching import RelayOperation, StepRecord, SwitchingPlan

FAILED_BUILDS = {
    "a damaged enrolment file": ("enrolments.json", b'{"type": "peergrid-enrol', EnrolmentFileError),
    "a user file that is not one": ("console-users.json", b"[1, 2", UserError),
}


@pytest.mark.parametrize("case", sorted(FAILED_BUILDS))
def test_a_console_build_that_fails_closes_the_console_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    name, body, raised = FAILED_BUILDS[case]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / name).write_bytes(body)
    opened: list[ConsoleDb] = []
    real_open = ConsoleDb.open

    def watched_open(path: Path) -> ConsoleDb:
        opened.append(real_open(path))
        return opened[-1]

    monkeypatch.setattr(ConsoleDb, "open", watched_open)
    settings = ConsoleSettings(users_file=tmp_path / "data" / "console-users.json", lab_market=False)
    with pytest.raises(raised):
        build_console(settings, build_dso_services({"mg1": 5}))
    assert len(opened) == 1
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):  # before: still open
        opened[0].session_count()


def plan(t: int) -> SwitchingPlan:
    return SwitchingPlan(
        f"interval-{t}", t, (33,), (7,), (RelayOperation(33, True), RelayOperation(7, False))
    )


STEPS = [StepRecord(33, True, True, status="closed"), StepRecord(7, False, True, status="open")]


def test_a_plan_whose_result_never_comes_is_given_up_once_enough_newer_plans_wait() -> None:
    dso = build_dso_services({"mg1": 5})
    records = NodeRecords(dso.chain, awaited=3)
    for t in range(5):  # results never recorded: the node stopped mid-plan, five times
        dso.recorder.plan(plan(t))
        dso.chain.seal()
    lines = records.scan()
    assert len(lines) == 5 and len(records._plans) == 3  # before: 5, and one more at every such plan
    for t in (0, 2):  # a result after all: 0 was given up, 2 is still awaited
        dso.recorder.result(plan(t), STEPS)
    dso.chain.seal()
    assert records.scan() == []  # results change lines in place
    said: dict[int, Any] = {t: line["action"] for t, line in enumerate(lines)}
    assert said[0].endswith("no result recorded yet") and said[1].endswith("no result recorded yet")
    assert "no result" not in said[2] and said[2].startswith("reconfigure for interval 2 (interval-2)")
    assert len(records._plans) == 2
