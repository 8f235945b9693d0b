"""E14: the trades whose readings the metering posts for the DSO (`MgMetering.counterparty_disputes`) are kept
for the new day and the day before only, and while their follower runs (`MgMetering.forget`, at each day's end
from `agent_settlement.end_days_before`, as P6 bounded the rest); before, one entry per such trade for as long as
the MGMC ran. What the set is for holds: a trade kept is never followed twice, a follower still running is
never forgotten under its watcher, and a restart follows the day's and the day before's trades again.

The metering is the real one; which trades need this MG's readings (`readings_needed`, tested on its own) is
stubbed to every trade of the interval, and a follower (`MgMetering.follow`, which posts to the DSO) to a task
that ends at once, or one that runs until the test ends it.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_edge import agent_settlement, pcc_readings
from peergrid_edge.pcc_readings import MgMetering
from peergrid_edge.settle_book import Settlements

N = 24  # intervals a day
DAYS = 30


def trade(t: int, k: int = 0) -> bytes:
    return t.to_bytes(4, "big") + bytes([k])


class Run:
    """The metering of one run, its followers stubbed; `live`: the intervals whose followers keep running."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, live: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        monkeypatch.setattr(
            pcc_readings, "readings_needed", lambda trades, me, now_ms, priced: [t for t, _ in trades]
        )
        self.metering = MgMetering(
            SimpleNamespace(), 1.0, 1.0, lambda t: (0, 1), lambda t: [(trade(t), {}), (trade(t, 1), {})],
            b"me", b"node", "http://127.0.0.1:9",
        )  # fmt: skip
        self.started: list[tuple[int, bytes]] = []
        self.running: list[asyncio.Future[bool]] = []
        metering, started, running = self.metering, self.started, self.running

        def follow(interval: int, tid: bytes, *rest: Any) -> asyncio.Future[bool]:
            started.append((interval, tid))
            task: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            if interval in live:
                running.append(task)
            else:
                task.set_result(True)  # the DSO decided it
            return task

        monkeypatch.setattr(metering, "follow", follow)
        book = Settlements(0.1, 1.0)
        settler = SimpleNamespace(
            book=book, end_of_day=lambda first: book.give_up("the day ended", 0.0, first)
        )
        self.agent: Any = SimpleNamespace(settler=settler, metering=metering, sealed=None)

    def watch(self, t: int) -> int:
        """Interval t's watcher wakes (`agent_settlement.counterparty_readings`): the followers it started."""
        return len(self.metering.counterparty_disputes(t, 1.0, time.time() + 60, time.time, asyncio.sleep))

    def day_ends(self, first: int | None) -> None:
        agent_settlement.end_days_before(self.agent, first)


def intervals_kept(metering: MgMetering) -> set[int]:
    return {int.from_bytes(tid[:4], "big") for tid in metering.counterparty_followed}


def test_after_a_month_only_the_day_s_and_the_day_before_s_trades_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def month() -> None:
        run = Run(monkeypatch)
        for day in range(DAYS):
            if day:
                run.day_ends(day * N)
            for t in range(day * N, (day + 1) * N):
                assert run.watch(t) == 2
                assert run.watch(t) == 0  # woken again: never a second follower
            kept = intervals_kept(run.metering)
            assert kept <= set(range((day - 1) * N, (day + 1) * N))  # before: every interval since day 0
            assert len(run.metering.counterparty_followed) <= 2 * 2 * N
        assert len(run.started) == 2 * N * DAYS
        # the day before's last interval's watcher still wakes after the day's end: no second follower
        assert run.watch(DAYS * N - 1) == 0
        run.day_ends(None)  # the run's end: nothing is kept but what still runs
        assert run.metering.counterparty_followed == set()

    asyncio.run(month())


def test_a_follower_still_running_is_kept_past_the_days(monkeypatch: pytest.MonkeyPatch) -> None:
    """A watcher of an old interval (a long settle wait) wakes after two days' ends: its follower still runs, so
    it is kept and not started again; once it ended it goes at the next day's end."""

    async def days() -> None:
        run = Run(monkeypatch, live={5})
        for t in range(0, N):
            run.watch(t)
        run.day_ends(N)
        run.day_ends(2 * N)
        assert intervals_kept(run.metering) == {5}
        assert run.watch(5) == 0
        for task in run.running:  # the DSO never decided them: their `until` came
            task.set_result(False)
        run.day_ends(3 * N)
        assert run.metering.counterparty_followed == set()

    asyncio.run(days())


def test_the_run_s_end_keeps_only_what_still_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    async def ends() -> None:
        run = Run(monkeypatch, live={N + 3})
        for t in range(N, N + 6):
            run.watch(t)
        run.day_ends(None)
        assert intervals_kept(run.metering) == {N + 3}

    asyncio.run(ends())


def test_a_restart_follows_the_day_s_and_the_day_before_s_trades_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restart on day 3 (`agent_settlement.pick_up` watches the day's and the day before's unsettled
    intervals): the new run's metering follows them afresh, and its first day's end keeps them all (it knows no
    day before yet), the next one only the two days'."""

    async def restarted() -> None:
        run = Run(monkeypatch)
        for t in (2 * N + 20, 3 * N + 1, 3 * N + 2):  # the day before's and the day's, picked up
            assert run.watch(t) == 2
        run.day_ends(4 * N)
        assert intervals_kept(run.metering) == {2 * N + 20, 3 * N + 1, 3 * N + 2}
        run.watch(4 * N)
        run.day_ends(5 * N)
        assert intervals_kept(run.metering) == {4 * N}

    asyncio.run(restarted())
