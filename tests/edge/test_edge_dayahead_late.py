"""A member whose task resumes late after every wake-up (a busy Pi, a replica applying several blocks at once
in catch-up) finds faster members' posts of the next iteration already final; it must still read iteration
k's positions as the step priced them (review7 F1: it used to fail the stage for everyone). The session
completes with the result of the run where nobody is late, which is the simulation's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_edge_dayahead_session import free_day, ledger_for, run_session, simulated


class LateWaker:
    """The EdgeLedger as a member sees it when its task runs `delay_s` late after each wake-up."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.late_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def wait_for(self, role: str, predicate: Any, timeout_s: float) -> bool:
        ok: bool = await self.inner.wait_for(role, predicate, timeout_s)
        await asyncio.sleep(self.delay_s)
        self.late_reads += 1
        return ok


def test_a_member_that_resumes_late_after_each_step_still_completes_the_session(tmp_path: Path) -> None:
    scenario = free_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    late = next(name for name in keys_ if name != coordinator)
    waker = LateWaker(ledger, 0.3)  # six 50-ms blocks: the others post the next iteration meanwhile
    outcomes = run_session(ledger, keys_, scenario, replicas={late: waker})
    allocation, record, positions = simulated(scenario)
    assert waker.late_reads > 5
    for name, outcome in outcomes.items():
        assert outcome.completed, (name, outcome.reason)
        assert outcome.iterations == allocation.iterations
        assert outcome.prices == record["prices"]
        assert list(outcome.positions) == positions[name]
