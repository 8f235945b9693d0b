"""The day's stages say when they ran: each stage's record carries `stage_times` (wall s, from the clock it is
given) beside its outcome, the outcome stays the record's first key (what the readers look for), and the end
is logged with the time taken and, for a failed stage, why. The session and the forward agent are stand-ins
here (their own tests run them on a chain); what is tested is what day_stages records around them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_edge import day_stages
from peergrid_edge.exchange_io import SessionOutcome
from peergrid_edge.forward_chain import ForwardOutcome
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.keys import Keypair


def _session(completed: bool) -> SessionOutcome:
    reason = "" if completed else "the coordinator never opened it"
    return SessionOutcome("s1", completed, reason, False, 7 if completed else 0, "kwh", (5, 6), (1, -1))


def _forward(cleared: bool, reason: str = "") -> ForwardOutcome:
    return ForwardOutcome("s1", cleared, reason, "whole", (1, -1), -3.0, -2.0, 3, (36,), (1, 0), 2)


class _Stage:
    """A stage agent that only returns its outcome; the clock ticks by `took` s while it runs."""

    outcome: Any = None
    took = 0.0
    clock: Any = None
    unpriced: dict[bytes, tuple[int, ...]] = {}  # the class is the fake's configuration
    made: dict[str, Any] = {}  # what the last one was made with

    def __init__(self, *_args: Any, **kwargs: Any) -> None:
        type(self).made = kwargs

    async def run(self) -> Any:
        self.clock.advance(self.took)
        return self.outcome


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _agent(tmp_path: Path) -> MarketAgent:
    """A MarketAgent with what the stages use: its settings, the genesis' anonyms, its record file."""
    agent = object.__new__(MarketAgent)
    members = [SimpleNamespace(key=Keypair.generate().public, roles=("anonym",)) for _ in range(3)]
    genesis = SimpleNamespace(accounts=members, params=SimpleNamespace(block_max_future_ms=0))
    ledger = SimpleNamespace(replicas={"mgmc": SimpleNamespace(app=SimpleNamespace(genesis=genesis))})
    agent.s = SimpleNamespace(  # type: ignore[assignment]
        t0=1_700_000_000.0, first_interval=36, intervals=2, interval_s=6.0, phase_timeout_s=2.0,
        dayahead_gensets=False, dayahead_clean=False, record_file=tmp_path / "mgmc.jsonl",
        dayahead_tariff_wait_s=20.0,
    )  # fmt: skip
    agent.d = SimpleNamespace(  # type: ignore[assignment]
        ledger=ledger, stopping=asyncio.Event(), settings=SimpleNamespace(data_dir=tmp_path)
    )
    agent.scenario = SimpleNamespace(intervals=96, microgrids=())  # type: ignore[assignment]
    agent.mg, agent.dt, agent.anonym = SimpleNamespace(name="mg1"), 0.25, Keypair.generate()  # type: ignore[assignment]
    agent.phase, agent.dayahead, agent.forward = "starting", None, None
    return agent


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[type[_Stage], type[_Stage], _Clock]]:
    clock = _Clock(1_700_000_100.0)

    class Session(_Stage):
        pass

    class Forward(_Stage):
        pass

    Session.clock = Forward.clock = clock
    monkeypatch.setattr(day_stages, "DayAheadAgent", Session)
    monkeypatch.setattr(day_stages, "ForwardAgent", Forward)
    monkeypatch.setattr(day_stages, "starting_prices", lambda _scenario: [0.1])
    yield Session, Forward, clock


def _lines(agent: MarketAgent) -> list[dict[str, Any]]:
    """The agent's record lines without the day each is stamped with (`resume.stamped`, review18 K-1)."""
    path = agent.s.record_file
    assert path is not None
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(line.pop("day") == agent.day for line in lines)
    return lines


def test_both_stages_record_when_they_started_and_ended(
    tmp_path: Path, stages: tuple[type[_Stage], type[_Stage], _Clock], caplog: pytest.LogCaptureFixture
) -> None:
    session, forward, clock = stages
    session.outcome, session.took = _session(True), 4.5
    forward.outcome, forward.took = _forward(True), 2.25
    agent = _agent(tmp_path)
    caplog.set_level(logging.INFO, logger="peergrid.edge.stages")

    async def day() -> None:
        await day_stages.run_dayahead(agent, clock)
        clock.advance(0.5)  # the trader's own work between the stages is in neither
        await day_stages.run_forward(agent, clock)

    asyncio.run(day())
    first, second = _lines(agent)
    assert (
        next(iter(first)) == "dayahead"
        and first["dayahead"]["completed"]
        and first["dayahead"]["iterations"] == 7
    )
    assert first["stage_times"] == {"start": 1_700_000_100.0, "end": 1_700_000_104.5}
    assert next(iter(second)) == "forward" and second["forward"]["cleared"]
    assert second["stage_times"] == {"start": 1_700_000_105.0, "end": 1_700_000_107.25}
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "peergrid.edge.stages"]
    assert logged == [
        (logging.INFO, "dayahead stage done in 4.50 s (started 1700000100.000, ended 1700000104.500)"),
        (logging.INFO, "forward stage done in 2.25 s (started 1700000105.000, ended 1700000107.250)"),
    ]


def test_a_failed_stage_records_its_times_and_logs_why(
    tmp_path: Path, stages: tuple[type[_Stage], type[_Stage], _Clock], caplog: pytest.LogCaptureFixture
) -> None:
    session, _forward_stage, clock = stages
    session.outcome, session.took = _session(False), 30.0
    agent = _agent(tmp_path)
    caplog.set_level(logging.INFO, logger="peergrid.edge.stages")
    outcome = asyncio.run(day_stages.run_dayahead(agent, clock))
    assert not outcome.completed and agent.dayahead is outcome
    (line,) = _lines(agent)
    assert line["dayahead"]["reason"] == "the coordinator never opened it"
    assert line["stage_times"] == {"start": 1_700_000_100.0, "end": 1_700_000_130.0}
    (record,) = [r for r in caplog.records if r.name == "peergrid.edge.stages"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().endswith("failed in 30.00 s (started 1700000100.000, ended 1700000130.000)"
                                        ": the coordinator never opened it")  # fmt: skip


def test_a_forward_stage_cleared_without_this_mgs_accept_is_done_and_says_why(
    tmp_path: Path, stages: tuple[type[_Stage], type[_Stage], _Clock], caplog: pytest.LogCaptureFixture
) -> None:
    _session_stage, forward, clock = stages
    forward.outcome = _forward(True, "its accept failed: refused")
    agent = _agent(tmp_path)
    agent.dayahead = _session(True)
    caplog.set_level(logging.INFO, logger="peergrid.edge.stages")
    asyncio.run(day_stages.run_forward(agent, clock))
    (line,) = _lines(agent)
    assert line["stage_times"]["start"] == line["stage_times"]["end"] == 1_700_000_100.0
    (record,) = [r for r in caplog.records if r.name == "peergrid.edge.stages"]
    assert record.levelno == logging.INFO and record.getMessage().endswith(": its accept failed: refused")


def test_the_stage_waits_for_the_dsos_tariffs_of_the_traded_intervals_and_records_what_stayed_unpriced(
    tmp_path: Path, stages: tuple[type[_Stage], type[_Stage], _Clock]
) -> None:
    """The daemon hands the coordinator its tariff wait and the intervals this run trades (not the scenario's
    whole day: the DSO prices only the loop's), and a day opened without every member's tariffs is recorded
    with what stayed unpriced (review12 F6)."""
    session, _forward_stage, clock = stages
    member = Keypair.generate().public
    session.outcome, session.unpriced = _session(True), {member: (37,)}
    agent = _agent(tmp_path)
    asyncio.run(day_stages.run_dayahead(agent, clock))
    assert session.made["tariff_wait_s"] == 20.0 and session.made["priced"] == range(36, 38)
    first, unpriced = _lines(agent)
    assert next(iter(first)) == "dayahead"
    assert unpriced == {"dayahead_unpriced": {member.hex(): [37]}}
