"""A (re)started trading agent's guard budget through `MarketAgent.run` itself: on a real single-authority chain,
with a record file from an earlier run of the day, the agent joins at its first interval nobody traded and
goes on with the day's budget its records left (`resume_spend.recorded_spend`: the day's budget less the recorded
`cost_p2p`), read once at its start, one pass for the budget and what is unknown of it; a torn line makes what the day cost unknown, and it goes on with no
allowance left (review17 K-A: the conventional rest of the day). Its intervals are stubbed to start the budget as
`run_interval` does (`budget or _start_budget(t, resumed)`) and to record what they found. The file serves every
day: the lines of another day (or without a day: written before the stamp) start a fresh budget (review18 K-1)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from stubbed_day import run_stubbed

from peergrid_edge import interval_plan, resume_spend
from peergrid_edge.resume import initial_state, stamped
from peergrid_edge.trader import MarketAgent


def restarted_day(tmp_path: Path, records: Callable[[str], str]) -> tuple[MarketAgent, list[dict[str, Any]]]:
    """A MarketAgent run from interval 5 of 2 intervals (`stubbed_day`) over a record file holding `records(day)`
    (`day`: the agent's, `MarketAgent.day`): the agent and each interval's budget status, each interval charged
    10.0."""
    path = tmp_path / "market.jsonl"
    seen: list[dict[str, Any]] = []

    def stub(agent: MarketAgent) -> None:
        path.write_text(records(agent.day))  # the day's earlier run wrote them

        async def interval(t: int) -> None:
            budget = agent.budget or agent._start_budget(t, agent.resumed)  # as run_interval starts it
            budget.charge(10.0)
            seen.append({"interval": t, **budget.status()})

        agent.run_interval = interval  # type: ignore[method-assign]

    agent = run_stubbed(tmp_path, stub, intervals=2, record_file=path, rationality="strict", forecast="market",
                        risk_allowance=4.0)  # fmt: skip
    return agent, seen


EARLIER = [
    {"interval": 3, "cost_p2p": 1.5, "budget_day": 123.0, "budget_left": 121.5},
    {"interval": 4, "cost_p2p": 2.0, "budget_day": 123.0, "budget_left": 119.5},
]


def lines(records: list[dict[str, Any]], day: str) -> list[str]:
    """The records' lines as the agent writes them on `day` (`MarketAgent._record`)."""
    return [json.dumps(stamped(r, day)) for r in records]


def test_a_restarted_agent_goes_on_with_the_days_budget_its_records_left(tmp_path: Path) -> None:
    agent, seen = restarted_day(tmp_path, lambda day: "".join(line + "\n" for line in lines(EARLIER, day)))
    # the day's budget from its records, not a fresh one (the conventional day from interval 5 plus 4.0)
    assert seen == [
        {"interval": 5, "mode": "strict", "risk_allowance": 4.0, "budget_day": 123.0, "budget_left": 109.5},
        {"interval": 6, "mode": "strict", "risk_allowance": 4.0, "budget_day": 123.0, "budget_left": 99.5},
    ]
    assert agent.status()["rationality"]["budget_left"] == 99.5


def test_a_torn_line_resumes_the_day_with_no_allowance_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The crash tore interval 4's line (the last written): its cost is unknown, so the agent does not go on
    with the 119.5 the intact line leaves (interval 4's cost given back) but with the conventional rest of
    the day from where the MG stands, the day's budget unchanged; one warning names interval 4."""

    def records(day: str) -> str:
        first, second = lines(EARLIER, day)
        return (first + "\n" + second[:30]).replace("123.0", "9999.0")  # torn inside its day

    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        agent, seen = restarted_day(tmp_path, records)
    to_go = interval_plan.cost_to_go(agent.mg, agent.dt, agent.mg.intervals, 5, initial_state(agent.mg, {}))
    assert [s["budget_day"] for s in seen] == [9999.0, 9999.0]
    assert [s["budget_left"] for s in seen] == pytest.approx([to_go - 10.0, to_go - 20.0])
    (warning,) = [r.getMessage() for r in caplog.records
                  if r.name == "peergrid.edge.trader" and "no allowance left" in r.getMessage()]  # fmt: skip
    assert warning.startswith("interval 5: ") and "interval 4's record (line 2) cannot be read" in warning


@pytest.mark.parametrize("torn", [False, True])
def test_the_restarted_agent_parses_each_record_line_once_for_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torn: bool
) -> None:
    """One pass over the record file gives both the budget the records left and whether what the day cost is
    unknown (`resume_spend.recorded_spend`): each line's budget and cost parsed once. Before, `resumed_budget` at the
    agent's start and `unknown_spend` in `guard.start_budget` parsed every line twice."""
    parsed: list[str] = []
    budget_line = resume_spend._budget_line

    def counted(line: str, day: str | None) -> Any:
        parsed.append(line)
        return budget_line(line, day)

    monkeypatch.setattr(resume_spend, "_budget_line", counted)
    written: list[str] = []

    def records(day: str) -> str:
        written[:] = lines(EARLIER, day)
        if torn:
            written[1] = written[1][:30]
        return "\n".join(written) + "\n"

    _, seen = restarted_day(tmp_path, records)
    assert len(seen) == 2 and sorted(parsed) == sorted(written)  # interval 6 goes on with 5's budget: no read
    if torn:  # the one pass still finds the torn line: no allowance left, not what the intact line leaves
        assert seen[0]["budget_left"] != pytest.approx(123.0 - 1.5 - 10.0)
    else:
        assert seen[0]["budget_left"] == 109.5


@pytest.mark.parametrize("yesterday", ["another t0", "no stamp"])
def test_another_days_records_start_the_day_afresh(tmp_path: Path, yesterday: str) -> None:
    """The record file holds yesterday's intervals 3 and 4 (a new chain per day: the same numbers; or lines
    written before the stamp): today's first start goes on with today's conventional day plus the allowance,
    not yesterday's budget less its spend (review18 K-1: 123.0 - 3.5 - 10.0 before)."""

    def records(day: str) -> str:
        earlier = [json.dumps(r) for r in EARLIER] if yesterday == "no stamp" else lines(EARLIER, "1/5")
        return "".join(line + "\n" for line in earlier)

    agent, seen = restarted_day(tmp_path, records)
    fresh = (
        interval_plan.cost_to_go(agent.mg, agent.dt, agent.mg.intervals, 5, initial_state(agent.mg, {})) + 4.0
    )
    assert [s["budget_day"] for s in seen] == pytest.approx([fresh, fresh])
    assert [s["budget_left"] for s in seen] == pytest.approx([fresh - 10.0, fresh - 20.0])
