"""A (re)started trading agent's guard budget through `MarketAgent.run` itself: on a real single-authority chain,
with a record file from an earlier run of the day, the agent joins at its first interval nobody traded and
goes on with the day's budget its records left (`resume.recorded_spend`: the day's budget less the recorded
`cost_p2p`), read once at its start, one pass for the budget and what is unknown of it; a torn line makes what the day cost unknown, and it goes on with no
allowance left (review17 K-A: the conventional rest of the day). Its intervals are stubbed to start the budget as
`run_interval` does (`budget or _start_budget(t, resumed)`) and to record what they found."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_edge_settle_both import both_chain, run_chain
from test_settlement import Node

from peergrid_edge import interval_plan, resume
from peergrid_edge.config import MarketSettings
from peergrid_edge.resume import initial_state
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.keys import Keypair, write_keyfile

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def restarted_day(tmp_path: Path, records: str) -> tuple[MarketAgent, list[dict[str, Any]]]:
    """A MarketAgent run from interval 5 of 2 intervals over a record file holding `records`: the agent and
    each interval's budget status, each interval charged 10.0."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    write_keyfile(tmp_path / "anonym.key", seller)
    path = tmp_path / "market.jsonl"
    path.write_text(records)
    seen: list[dict[str, Any]] = []

    async def day(node: Node) -> MarketAgent:
        settings = MarketSettings(scenario=SCENARIO, anonym_key_file=tmp_path / "anonym.key",
                                  t0=time.time() + 0.3, interval_s=0.3, first_interval=5, intervals=2,
                                  phase_timeout_s=0.1, record_file=path, rationality="strict",
                                  forecast="market", risk_allowance=4.0)  # fmt: skip
        daemon = SimpleNamespace(
            settings=SimpleNamespace(mg="mg4", topic=lambda *parts: "/".join(parts)),
            link=SimpleNamespace(subscribe=lambda topic, handler: None), states={},
            stopping=asyncio.Event(), _sleep=asyncio.sleep, ledger=node.ledger,
        )  # fmt: skip
        agent = MarketAgent(daemon, settings)  # type: ignore[arg-type]

        async def interval(t: int) -> None:
            budget = agent.budget or agent._start_budget(t, agent.resumed)  # as run_interval starts it
            budget.charge(10.0)
            seen.append({"interval": t, **budget.status()})

        async def cleared(t: int) -> None:
            return None

        agent.run_interval = interval  # type: ignore[method-assign]
        agent._previous_cleared = cleared  # type: ignore[method-assign]
        await asyncio.wait_for(agent.run(), 20)
        return agent

    return run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day), seen


EARLIER = [
    {"interval": 3, "cost_p2p": 1.5, "budget_day": 123.0, "budget_left": 121.5},
    {"interval": 4, "cost_p2p": 2.0, "budget_day": 123.0, "budget_left": 119.5},
]


def test_a_restarted_agent_goes_on_with_the_days_budget_its_records_left(tmp_path: Path) -> None:
    agent, seen = restarted_day(tmp_path, "".join(json.dumps(r) + "\n" for r in EARLIER))
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
    records = json.dumps(EARLIER[0]) + "\n" + json.dumps(EARLIER[1])[:30]
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        agent, seen = restarted_day(tmp_path, records.replace("123.0", "9999.0"))
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
    unknown (`resume.recorded_spend`): each line's budget and cost parsed once. Before, `resumed_budget` at the
    agent's start and `unknown_spend` in `guard.start_budget` parsed every line twice."""
    parsed: list[str] = []
    budget_line = resume._budget_line

    def counted(line: str) -> Any:
        parsed.append(line)
        return budget_line(line)

    monkeypatch.setattr(resume, "_budget_line", counted)
    lines = [json.dumps(r) for r in EARLIER]
    if torn:
        lines[1] = lines[1][:30]
    _, seen = restarted_day(tmp_path, "\n".join(lines) + "\n")
    assert len(seen) == 2 and sorted(parsed) == sorted(lines)  # interval 6 goes on with 5's budget: no read
    if torn:  # the one pass still finds the torn line: no allowance left, not what the intact line leaves
        assert seen[0]["budget_left"] != pytest.approx(123.0 - 1.5 - 10.0)
    else:
        assert seen[0]["budget_left"] == 109.5
