"""The day-ahead stage's deadline before the first interval it trades (review7 F7): the coordinator closes the
session at it and every agent's outcome says why; the session is opened with the exchange contract's
`deadline` (block time), so that after it any member clears when the coordinator is gone, the coordinator
clears at it unless every member accepted before, and the clear is posted again until it is complete (a
session past the contract's bound clears in parts)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from test_edge_dayahead_session import CONFIG, SESSION, free_day, ledger_for, run_on

from peergrid_controller.dayahead import starting_prices
from peergrid_controller.model import Scenario
from peergrid_edge.day_stages import dayahead_deadline
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.exchange_io import Deadline, SessionOutcome
from peergrid_edge.forward_agent import DEADLINE_MARGIN_S, ForwardAgent, ForwardOutcome
from peergrid_edge.replicas import EdgeLedger, Submission
from peergrid_ledger.contracts import exchange_clearing
from peergrid_ledger.contracts.exchange_clearing import cleared
from peergrid_ledger.keys import Keypair


def test_the_deadline_leaves_the_clear_and_the_accepts_their_time_before_the_first_interval() -> None:
    deadline = dayahead_deadline(1000.0, 2.0)
    clear_s = deadline.clear_ms / 1000
    # a member whose coordinator is gone clears one phase timeout after the clear deadline: still before
    assert clear_s + DEADLINE_MARGIN_S + 2 * 2.0 <= 1000.0
    assert deadline.close_s == pytest.approx(clear_s - 2 * 2.0, abs=0.001)


def agents(
    tmp_path: Path, scenario: Scenario, deadline: Deadline
) -> tuple[EdgeLedger, dict[str, DayAheadAgent], dict[str, Keypair]]:
    ledger, keys_ = ledger_for(tmp_path, scenario)
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    opening = starting_prices(scenario)
    made = {
        mg.name: DayAheadAgent(
            ledger,
            keys_[mg.name],
            mg,
            scenario.interval_hours,
            members,
            SESSION,
            0,
            opening,
            CONFIG,
            10.0,
            deadline=deadline,
        )
        for mg in scenario.microgrids
    }
    return ledger, made, keys_


def test_the_coordinator_closes_the_session_at_the_deadline_and_every_agent_says_why(tmp_path: Path) -> None:
    scenario = free_day()  # 16 iterations, well over a second
    now = time.time()
    deadline = Deadline(close_s=now + 0.6, clear_ms=int((now + 30) * 1000))
    ledger, made, _ = agents(tmp_path, scenario, deadline)

    async def play() -> list[SessionOutcome]:
        return await asyncio.gather(*(a.run() for a in made.values()))

    outcomes = dict(zip(made, run_on(ledger, play), strict=True))
    coordinator = next(name for name, agent in made.items() if agent.is_coordinator)
    assert not any(o.completed for o in outcomes.values())
    assert "the day-ahead deadline" in outcomes[coordinator].reason
    assert "the coordinator closed the session" in outcomes[coordinator].reason
    for name, outcome in outcomes.items():
        if name != coordinator:
            assert "the day-ahead deadline" in outcome.reason and "has passed" in outcome.reason, (
                outcome.reason
            )
    assert 0 < max(o.iterations for o in outcomes.values()) < 16


def starts_late(delay: float) -> type[DayAheadAgent]:
    class Late(DayAheadAgent):
        async def run(self) -> SessionOutcome:
            await asyncio.sleep(delay)  # its trader came up `delay` s after the others'
            return await super().run()

    return Late


@pytest.mark.parametrize("late", ["coordinator", "member"])
def test_mgmcs_that_start_the_stage_apart_still_meet_before_the_deadline(tmp_path: Path, late: str) -> None:
    # each trader starts the stage when its own daemon is up; 2.5 s apart against 1-s phase timeouts failed
    # the stage for every MGMC (review8 F1): with a deadline the opening and the first responses wait for it
    scenario = free_day(3, 4)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    slow = coordinator if late == "coordinator" else next(n for n in keys_ if n != coordinator)
    now = time.time()
    deadline = Deadline(close_s=now + 20, clear_ms=int((now + 40) * 1000))
    opening = starting_prices(scenario)
    made = {}
    for mg in scenario.microgrids:
        factory = starts_late(2.5) if mg.name == slow else DayAheadAgent
        made[mg.name] = factory(ledger, keys_[mg.name], mg, scenario.interval_hours, members, SESSION, 0,
                                opening, CONFIG, 1.0, deadline=deadline)  # fmt: skip

    async def play() -> list[SessionOutcome]:
        return await asyncio.gather(*(a.run() for a in made.values()))

    outcomes = run_on(ledger, play)
    assert all(o.completed for o in outcomes), [o.reason for o in outcomes]
    assert len({(tuple(o.prices), o.iterations) for o in outcomes}) == 1  # one session, seen alike


def test_a_stage_that_starts_past_its_deadline_is_refused_up_front(tmp_path: Path) -> None:
    scenario = free_day(2, 4)
    ledger, made, _ = agents(tmp_path, scenario, Deadline(close_s=time.time() - 1, clear_ms=0))

    async def play() -> list[SessionOutcome]:
        return await asyncio.gather(*(a.run() for a in made.values()))

    for outcome in run_on(ledger, play):
        assert not outcome.completed and outcome.reason.startswith("refused up front: the day-ahead deadline")


def session_then_forward(
    tmp_path: Path, absent: str, clear_in_s: float
) -> tuple[dict[str, ForwardOutcome], dict[str, Any], int, float]:
    """A completed session opened with a clear deadline `clear_in_s` from now, then the forward stage
    without `absent` ("coordinator" or a member's role): each outcome, the clear record, the deadline (ms)
    and when the clear was seen."""
    scenario = free_day(3, 4)
    now = time.time()
    deadline = Deadline(close_s=now + 60, clear_ms=int((now + clear_in_s) * 1000))
    ledger, made, keys_ = agents(tmp_path, scenario, deadline)
    coordinator = next(name for name, agent in made.items() if agent.is_coordinator)
    gone = coordinator if absent == "coordinator" else next(n for n in made if n != coordinator)
    seen: dict[str, float] = {}

    async def play() -> list[ForwardOutcome]:
        sessions = await asyncio.gather(*(a.run() for a in made.values()))
        assert all(o.completed for o in sessions), [o.reason for o in sessions]
        forward = [
            ForwardAgent(
                ledger,
                keys_[mg.name],
                mg,
                scenario.interval_hours,
                SESSION,
                timeout_s=5.0,
                clear_wait_s=0.5,
            )
            for mg in scenario.microgrids
            if mg.name != gone
        ]
        outcomes = await asyncio.gather(*(f.run() for f in forward))
        seen["at"] = time.time()
        return outcomes

    outcomes = run_on(ledger, play)
    names = [mg.name for mg in scenario.microgrids if mg.name != gone]
    summary = read_cleared(tmp_path, scenario)
    return dict(zip(names, outcomes, strict=True)), summary, deadline.clear_ms, seen["at"]


def read_cleared(tmp_path: Path, scenario: Scenario) -> dict[str, Any]:
    """The clear record, plus `clears`: the block time (ms) of every exchange.clear that landed."""
    ledger, _ = ledger_for(tmp_path, scenario)
    try:
        summary = cleared(ledger.state("mgmc"), SESSION)
        store = ledger.stores[0]
        clears = [
            block.header.time
            for block in (store.block(h) for h in range(1, store.head_height() + 1))
            for tx in block.txs
            if tx.kind == "exchange.clear"
        ]
    finally:
        ledger.close()
    assert summary is not None
    return {**summary, "clears": clears}


def test_with_the_coordinator_gone_a_member_clears_after_the_deadline(tmp_path: Path) -> None:
    outcomes, summary, deadline_ms, at = session_then_forward(tmp_path, "coordinator", 6.0)
    assert all(o.cleared for o in outcomes.values()), [o.reason for o in outcomes.values()]
    assert summary["accepted"] == 2  # the coordinator never accepted: it trades nothing
    assert at > deadline_ms / 1000 and min(summary["clears"]) > deadline_ms  # the contract's rule


def test_the_coordinator_clears_at_the_deadline_without_a_silent_members_accept_in_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the contract's bound per clear made small: 2 accepts x 4 intervals clear one interval per transaction
    monkeypatch.setattr(exchange_clearing, "MAX_CLEAR_CELLS", 2)
    outcomes, summary, deadline_ms, at = session_then_forward(tmp_path, "member", 6.0)
    assert all(o.cleared for o in outcomes.values()), [o.reason for o in outcomes.values()]
    assert summary["accepted"] == 2
    # cleared at the deadline (not before: a member's accept was missing), in parts: one interval each
    assert at > deadline_ms / 1000 and min(summary["clears"]) > deadline_ms
    assert len(summary["clears"]) == 4


class SlowToFinalise:
    """The replica as the lab's first seconds show it: the coordinator's open is not final within its phase
    timeout (it lands a little later)."""

    def __init__(self, ledger: EdgeLedger) -> None:
        self.ledger = ledger
        self.landing: list[asyncio.Task[Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)

    async def submit(self, role: str, raw: bytes, timeout_s: float) -> Any:
        from peergrid_ledger.tx import decode_tx

        if decode_tx(raw).kind == "exchange.open":  # sent; it lands after the timeout gave up
            self.landing.append(asyncio.create_task(self.ledger.submit(role, raw, 30.0)))
            return Submission(False, f"not final within {timeout_s:g} s", final=False)
        return await self.ledger.submit(role, raw, timeout_s)


def test_an_open_not_final_within_the_phase_timeout_is_waited_for_and_the_session_completes(
    tmp_path: Path,
) -> None:
    # seen in the lab with a restart test: the coordinator's open was "not final within 2 s", its stage
    # failed, and the open landed anyway: a session nobody stepped, every member failed at the deadline
    scenario = free_day(3, 4)
    now = time.time()
    deadline = Deadline(close_s=now + 20, clear_ms=int((now + 40) * 1000))
    ledger, made, _ = agents(tmp_path, scenario, deadline)
    lead = next(agent for agent in made.values() if agent.is_coordinator)
    lead.ledger = SlowToFinalise(ledger)  # type: ignore[assignment]

    async def play() -> list[SessionOutcome]:
        return await asyncio.gather(*(a.run() for a in made.values()))

    outcomes = run_on(ledger, play)
    assert all(o.completed for o in outcomes), [o.reason for o in outcomes]
    assert lead.opened_here  # its own open: it would close the session if it failed later
