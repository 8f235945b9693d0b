"""The trading agent's loop survives its Settler (review14 K4): `MarketAgent.run` works the Settler while idle
through `agent_settlement.work_settler`, so a raise there is logged with its traceback and the time waited
out; every interval is still traded, each not before its start, and the day ends `finished`. Before, the
first raise ended the agent's task (and the daemon, which never looked at it, polled on without trading).
The agent is real (its replica on a real single-authority chain); its intervals are stubbed to be recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from stubbed_day import run_stubbed

from peergrid_edge.trader import MarketAgent


def test_the_agent_trades_every_interval_although_its_settler_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started: list[tuple[int, float]] = []
    calls: list[float] = []

    def stub(agent: MarketAgent) -> None:
        async def broken(until: float, while_pending: bool = False) -> None:
            calls.append(until)
            raise RuntimeError("a bug in the Settler")

        async def traded(t: int) -> None:
            started.append((t, time.time()))

        agent.settler.work_until = broken  # type: ignore[method-assign]
        agent.run_interval = traded  # type: ignore[method-assign]

    with caplog.at_level(logging.ERROR, logger="peergrid.edge.trader"):
        agent = run_stubbed(tmp_path, stub, start_in_s=0.5, interval_s=0.4)
    assert [t for t, _ in started] == [5, 6, 7] and agent.done == 3 and agent.phase == "finished"
    starts = [agent._start_of(t) for t in (5, 6, 7)]
    assert all(
        at >= start for (_, at), start in zip(started, starts, strict=True)
    )  # the idle time waited out
    assert calls[:3] == starts and len(calls) >= 4  # and the day's end tried it too
    failures = [r for r in caplog.records if "the Settler failed" in r.getMessage()]
    assert len(failures) == len(calls) and all(
        r.exc_info and "a bug in the Settler" in str(r.exc_info[1]) for r in failures
    )


def test_work_settler_returns_when_the_settler_does(tmp_path: Path) -> None:
    """The guard is transparent: a Settler that works returns at once, nothing waited for or logged."""
    from peergrid_edge.agent_settlement import work_settler

    worked: list[tuple[float, bool]] = []

    async def work_until(until: float, while_pending: bool = False) -> None:
        worked.append((until, while_pending))

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    agent: Any = SimpleNamespace(
        settler=SimpleNamespace(work_until=work_until), d=SimpleNamespace(_sleep=sleep)
    )
    asyncio.run(work_settler(agent, time.time() + 60, while_pending=True))
    assert len(worked) == 1 and worked[0][1] is True and slept == []
