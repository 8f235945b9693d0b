"""A make-whole claim the chain does not finalise never delays an interval's start (review18 C-1): the agent's day
(`agent_day.intervals`) retries it inside the idle before each slot, only where the idle left holds an attempt
(`claim_in_idle`: what the last one took), and cuts one that overruns at the slot's start. Before, the retry ran
after the idle had ended at the slot's start, so each interval began its MILPs and a phase timeout late.

On a fake clock: the agent's intervals, the Settler's idle and the claim's retry are stubs that move it (the
retry: 0.8 s of MILPs and a 1-s phase timeout waiting for a final block that never comes, R18's replica), so
each interval's start is read exactly. The cut itself (an attempt that never returns) on the real clock."""

from __future__ import annotations

import asyncio
import time as real_time
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_edge import agent_day, agent_settlement, day_stages

FIRST, LAST, SLOT, PHASE = 4, 7, 10.0, 1.0
MILPS = 0.8  # the claim's own solves, then a phase timeout waiting for a final block


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def stub_day(
    monkeypatch: pytest.MonkeyPatch, works_s: float, retry: Any = None
) -> tuple[Any, dict[str, list[Any]], FakeClock]:
    """An agent whose interval t's slot starts at 1000 + (t - 4) x 10 s and whose interval takes `works_s`,
    the claim missing all day (never final); what happened, on the fake clock."""
    clock = FakeClock()
    seen: dict[str, list[Any]] = {"starts": [], "claims": [], "cleared": []}
    monkeypatch.setattr(agent_day, "time", clock)

    async def work_settler(agent: Any, until: float, while_pending: bool = False) -> None:
        clock.now = max(clock.now, until)  # the Settler idles until the slot
        await asyncio.sleep(0)

    async def never_final(agent: Any, clock_: Any = None) -> Any:
        seen["claims"].append(clock.now)
        clock.now += MILPS + PHASE
        await asyncio.sleep(0)
        return SimpleNamespace(reason="not final: not final within 1.0 s", posted=False)

    monkeypatch.setattr(agent_settlement, "work_settler", work_settler)
    monkeypatch.setattr(day_stages, "claim_missing", lambda agent: True)
    monkeypatch.setattr(day_stages, "retry_uplift_claim", retry or never_final)

    async def run_interval(t: int) -> None:
        seen["starts"].append((t, clock.now))
        clock.now += works_s

    async def cleared(t: int) -> None:
        seen["cleared"].append(t)

    agent = SimpleNamespace(
        s=SimpleNamespace(phase_timeout_s=PHASE), d=SimpleNamespace(stopping=asyncio.Event()),
        _start_of=lambda t: 1000.0 + (t - FIRST) * SLOT, _last_interval=lambda: LAST, state=object(),
        _previous_cleared=cleared, run_interval=run_interval, claim_needs_s=None, working_on=None,
        interval=None, done=0, ledger=None, anonym=SimpleNamespace(public=bytes(32)),  # no pool to wait on
    )  # fmt: skip
    return agent, seen, clock


def slots() -> list[tuple[int, float]]:
    return [(t, 1000.0 + (t - FIRST) * SLOT) for t in range(FIRST, LAST + 1)]


def test_a_claim_never_final_is_retried_in_the_idle_and_every_interval_starts_at_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Intervals take 6 s of their 10: each idle (4 s) holds an attempt (1.8 s), which runs at the idle's
    start; the interval starts at its slot (before: 1.8 s after it, every interval)."""
    agent, seen, _ = stub_day(monkeypatch, works_s=6.0)
    assert asyncio.run(agent_day.intervals(agent, FIRST)) is False
    assert seen["starts"] == slots()
    # the first idle is the whole wait before interval 4 (the clock starts at its slot): no room
    assert seen["claims"] == [1006.0, 1016.0, 1026.0]
    assert agent.claim_needs_s == pytest.approx(MILPS + PHASE) and agent.done == 4


def test_an_idle_too_short_for_an_attempt_leaves_the_claim_to_a_later_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Intervals take 9 s: 1 s of idle holds no attempt (the last took 1.8 s; before any, two phase
    timeouts): none is started, every interval starts at its slot, and the after-day stage posts it."""
    agent, seen, _ = stub_day(monkeypatch, works_s=9.0)
    agent.claim_needs_s = MILPS + PHASE
    asyncio.run(agent_day.intervals(agent, FIRST))
    assert seen["starts"] == slots() and seen["claims"] == []
    agent, seen, _ = stub_day(monkeypatch, works_s=8.5)  # 1.5 s of idle, none timed yet: 2 x 1 s needed
    asyncio.run(agent_day.intervals(agent, FIRST))
    assert seen["starts"] == slots() and seen["claims"] == []


def test_an_attempt_that_never_returns_is_cut_at_the_slots_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry stuck for good (on the real clock: asyncio.wait_for is the backstop) is cut where the slot
    starts and the interval runs; the next attempt needs twice the idle the cut one had."""
    stuck: list[str] = []

    async def forever(agent: Any, clock_: Any = None) -> Any:
        stuck.append("started")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stuck.append("cut")
            raise

    agent, seen, _ = stub_day(monkeypatch, works_s=0.0, retry=forever)
    monkeypatch.setattr(agent_day, "time", real_time)
    agent.s.phase_timeout_s = 0.05  # before any attempt: 0.1 s of idle needed

    async def settler(agent_: Any, until: float, while_pending: bool = False) -> None:
        await asyncio.sleep(max(0.0, until - real_time.time()))

    monkeypatch.setattr(agent_settlement, "work_settler", settler)

    async def run() -> None:
        now = real_time.time()
        agent._start_of = lambda t: now + 0.3 + (t - FIRST) * 0.3
        agent._last_interval = lambda: FIRST + 1
        await asyncio.wait_for(agent_day.intervals(agent, FIRST), 20)

    asyncio.run(run())
    assert [t for t, _ in seen["starts"]] == [FIRST, FIRST + 1]
    assert stuck[:2] == ["started", "cut"] and stuck.count("started") == stuck.count("cut")
    assert agent.claim_needs_s is not None and agent.claim_needs_s > 0
