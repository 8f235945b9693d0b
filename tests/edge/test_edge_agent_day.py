"""The trading agent's day through `MarketAgent.run` (`agent_day.run_day`) on a real single-authority chain, its
intervals stubbed: it says which interval it works on from each interval's wait to its record and on none once
the loop ended (after a failed interval too, and on a stop while it waits), which the schedule holder bridges a
plan past its slots by (`agent_dispatch.set_plan`, test_agent_schedule.py); a failed interval is recorded and
the day goes on; a stop while waiting for an interval ends the day there, with no settle_day."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from stubbed_day import DAY, run_stubbed

from peergrid_edge import agent_settlement
from peergrid_edge.trader import MarketAgent

FIRST = DAY["first_interval"]


def day(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fails: int | None = None,
    stop_at: int | None = None,
    seen: dict[str, list[Any]] | None = None,
) -> tuple[MarketAgent, dict[str, list[Any]]]:
    """A MarketAgent run over intervals 5-7 (0.3-s slots) with stubbed intervals (`stubbed_day`): the agent, what
    `working_on` was at each interval's wait for the DSO (`_previous_cleared`) and inside it, whether settle_day
    ran and what it saw (into `seen` where given). `fails`: that interval raises; `stop_at`: the daemon stops
    while the agent waits for that interval."""
    seen = {"agent": [], "waiting": [], "running": [], "settle_day": []} if seen is None else seen

    async def settle_day(agent: MarketAgent) -> None:
        seen["settle_day"].append(agent.working_on)

    monkeypatch.setattr(agent_settlement, "settle_day", settle_day)

    def stub(agent: MarketAgent) -> None:
        async def cleared(t: int) -> None:
            seen["waiting"].append((t, agent.working_on))
            if t == stop_at:
                agent.d.stopping.set()

        async def interval(t: int) -> None:
            seen["running"].append((t, agent.working_on))
            if t == fails:
                raise RuntimeError("a bug mid-interval")

        agent._previous_cleared = cleared  # type: ignore[method-assign]
        agent.run_interval = interval  # type: ignore[method-assign]
        seen["agent"].append(agent)

    return run_stubbed(tmp_path, stub), seen


def test_the_agent_says_which_interval_it_works_on_and_none_after_its_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MarketAgent.working_on is None  # before its first interval (the day-ahead stage too)
    agent, seen = day(tmp_path, monkeypatch)
    assert seen["waiting"] == [(5, 5), (6, 6), (7, 7)]
    assert seen["running"] == [(5, 5), (6, 6), (7, 7)]
    assert seen["settle_day"] == [None]  # its last plan no longer bridged while it settles the day
    assert agent.working_on is None and agent.done == 3


def test_a_failed_interval_is_recorded_and_the_next_one_is_worked_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, seen = day(tmp_path, monkeypatch, fails=6)
    assert seen["running"] == [(5, 5), (6, 6), (7, 7)]  # on 7 after 6 failed: 5's plan is not bridged there
    records = [json.loads(line) for line in (tmp_path / "market.jsonl").read_text().splitlines()]
    assert records == [{"interval": 6, "day": agent.day, "error": "failed; see the log"}]
    assert agent.working_on is None and seen["settle_day"] == [None]


def test_a_stop_while_waiting_for_an_interval_ends_the_day_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, seen = day(tmp_path, monkeypatch, stop_at=6)
    assert seen["waiting"] == [(5, 5), (6, 6)] and seen["running"] == [(5, 5)]
    assert seen["settle_day"] == []  # as before the split: no settle_day after a stop mid-wait
    assert agent.working_on is None


def test_a_raise_out_of_the_loop_leaves_the_agent_on_no_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ends the day's loop by raising (the task then dies and the daemon stops) leaves `working_on` None
    too, so no plan is bridged by a word the agent can no longer take back."""

    seen: dict[str, list[Any]] = {"agent": [], "waiting": [], "running": [], "settle_day": [], "idle": []}

    async def broken(agent: MarketAgent, until: float) -> None:
        seen["idle"].append(agent.working_on)
        raise KeyError("the settler broke")

    monkeypatch.setattr(agent_settlement, "work_settler", broken)
    with pytest.raises(KeyError):
        day(tmp_path, monkeypatch, seen=seen)
    (agent,) = seen["agent"]
    assert seen["idle"] == [FIRST] and agent.working_on is None
