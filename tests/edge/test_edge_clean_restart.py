"""A clean day-ahead session with the default clean_decisions 3 on the edge, a member restarted during a
re-decision run: its checkpoint says how many re-decision runs are done (`dayahead_state.Checkpoint.redecided`),
so the restarted process resumes at the run it was in, and the day is the venue's (`allocate` on the chain)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_edge_clean_dayahead import DEFAULT, SESSION, clean_day, reopened, stepped_books, venue_day
from test_edge_dayahead_restart import Died
from test_edge_dayahead_session import ledger_for, run_session, run_together, session_play

from peergrid_controller.cleanbook import clean_kind
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.dayahead_state import Checkpoint, CheckpointError, load, save
from peergrid_edge.exchange_io import SessionOutcome
from peergrid_ledger.contracts import exchange as contract


def dies_late(
    checkpoint: Path, run: int, died: list[int], processes: list[DayAheadAgent], tamper: int | None = None
) -> type[DayAheadAgent]:
    """An agent that dies after its first post of its `run`-th phase value (`final_from`: 1 at its first post,
    then set anew at the relaxed phase and after each decision: 4 is re-decision run 2 of clean_decisions 3, 5
    the final run) and restarts 0.2 s later with its checkpoint (its `redecided` set to `tamper` if given)."""

    class DiesLate(DayAheadAgent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("checkpoint", checkpoint)
            super().__init__(*args, **kwargs)
            self.args, self.kwargs = args, kwargs
            self.phases_seen: list[int] = []
            self.in_run = 0
            processes.append(self)

        async def _post(self, k: int, positions: tuple[int, ...], says_settled: bool = False) -> None:
            if not self.phases_seen or self.phases_seen[-1] != self.final_from:
                self.phases_seen.append(self.final_from)
                self.in_run = 0
            self.in_run += 1
            await super()._post(k, positions, says_settled)
            if not self.rejoined and len(self.phases_seen) == run and self.in_run == 1:
                died.append(k)
                raise Died

        async def run(self) -> SessionOutcome:
            try:
                return await super().run()
            except Died:
                if tamper is not None:
                    doc = json.loads(checkpoint.read_text())
                    checkpoint.write_text(json.dumps({**doc, "redecided": tamper}))
                await asyncio.sleep(0.2)
                return await DiesLate(*self.args, **self.kwargs).run()

    return DiesLate


LATE_RUNS = [(who, run) for run in (4, 5) for who in ("buyer", "seller")]


@pytest.fixture(scope="module")
def late_restarts(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], SimpleNamespace]:
    """The four days of test_a_member_restarted_in_a_late_run_resumes_there, run at once, each on its own chain
    (run_together: one after another they were 4 x 14.5 s in ci17c, mostly waiting for blocks): per (who, run)
    the day's directory, keys, agents' processes, where it died and the outcomes."""
    scenario = clean_day()
    runs, cases = [], {}
    for who, run in LATE_RUNS:
        where = tmp_path_factory.mktemp(f"{who}-{run}")
        ledger, keys_ = ledger_for(where, scenario)
        coordinator = min(keys_, key=lambda name: keys_[name].public)
        name = next(mg.name for mg in scenario.microgrids if clean_kind(mg) == who and mg.name != coordinator)
        case = SimpleNamespace(where=where, keys=keys_, processes=[], died=[], outcomes=None)
        make = {name: dies_late(where / "member.json", run, case.died, case.processes)}
        runs.append((ledger, session_play(ledger, keys_, scenario, config=DEFAULT, make=make)))
        cases[(who, run)] = case
    for case, outcomes in zip(cases.values(), run_together(runs), strict=True):
        case.outcomes = outcomes
    return cases


@pytest.mark.xdist_group("edge_clean_restart")  # one worker runs the shared days once
@pytest.mark.parametrize("run", [4, 5], ids=["second-redecision-run", "final-run"])
@pytest.mark.parametrize("who", ["buyer", "seller"])
def test_a_member_restarted_in_a_late_run_resumes_there(
    late_restarts: dict[tuple[str, int], SimpleNamespace], who: str, run: int
) -> None:
    # runs: relaxed, re-decision run 1, re-decision run 2, final (clean_decisions 3). The member dies after its
    # first post of re-decision run 2 or of the final run (told apart by `final_from`: 1 at its first post,
    # then set anew at the relaxed phase and after each decision, so re-decision run 2 is the fourth value it
    # posts with, the final run the fifth) and restarts with its checkpoint: it must run only what is left,
    # not both re-decision runs again, so every step and the close are the venue's
    assert DEFAULT.clean_decisions == 3
    scenario = clean_day()
    allocation, venue, record = venue_day(scenario, DEFAULT)
    case = late_restarts[(who, run)]
    processes, died, keys_, where = case.processes, case.died, case.keys, case.where
    assert len(died) == 1 and len(processes) == 2 and processes[1].rejoined
    for mg, outcome in case.outcomes.items():
        assert outcome.completed, (mg, outcome.reason)
        assert outcome.stop == allocation.stop
    ledger, _, state = reopened(where, scenario)
    try:
        edge_record = contract.session(state, SESSION)
        assert edge_record is not None and edge_record["closed"]
        venue_books = stepped_books(venue.chain.view, venue.exchange.session, venue.keys)
        edge_books = stepped_books(state, SESSION, keys_)
    finally:
        ledger.close()
    assert edge_record["iteration"] == record["iteration"]  # no run played twice
    edge_prices = (*edge_record["prices"], *edge_record["clean_prices"])
    venue_prices = (*record["prices"], *record["clean_prices"])
    gap = max(abs(a - b) for a, b in zip(edge_prices, venue_prices, strict=True))
    wh = max(abs(a - b) for n in edge_books for a, b in zip(edge_books[n], venue_books[n], strict=True))
    print(f"\nrestart in run {run} ({who}, died after its post of {died[0]}): {gap} nano/kWh, {wh} Wh")
    assert edge_prices == venue_prices and edge_books == venue_books
    saved = json.loads((where / "member.json").read_text())
    assert saved["redecided"] == 2  # the restarted process went on into the final run


def test_a_checkpoint_with_more_redecision_runs_done_than_the_session_has_is_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    # a checkpoint that says 3 of the 2 re-decision runs are done (damaged, or another configuration's) is not
    # followed: the restarted MGMC fails the stage naming it (never plays a run it cannot place)
    scenario = clean_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    name = next(mg.name for mg in scenario.microgrids if clean_kind(mg) == "buyer" and mg.name != coordinator)
    processes: list[DayAheadAgent] = []
    died: list[int] = []
    make = {name: dies_late(tmp_path / "member.json", 4, died, processes, tamper=3)}
    outcomes = run_session(ledger, keys_, scenario, config=DEFAULT, make=make, timeout_s=2.0)
    assert len(died) == 1 and len(processes) == 2
    assert not outcomes[name].completed
    assert "3 re-decision runs done" in outcomes[name].reason and "which has 2" in outcomes[name].reason
    assert not any(o.completed for o in outcomes.values())  # the stage fails safe: intraday for everyone


@pytest.mark.parametrize(
    ("value", "error"), [(-1, "redecided -1"), (1.5, "not an integer"), (True, "not an integer")]
)
def test_a_checkpoint_with_a_bad_redecided_is_malformed(tmp_path: Path, value: Any, error: str) -> None:
    path = tmp_path / "c.json"
    good = Checkpoint("s", 1, (0.5,), (500,), False, False, 3, None, (100,), 7, ((500,),), None, True, 2)
    save(path, good)
    assert load(path, "s") == good
    doc = json.loads(path.read_text())
    del doc["redecided"]  # a checkpoint from before the re-decisions: none done
    path.write_text(json.dumps(doc))
    assert load(path, "s") == dataclasses.replace(good, redecided=0)
    path.write_text(json.dumps({**doc, "redecided": value}))
    with pytest.raises(CheckpointError, match=error):
        load(path, "s")
