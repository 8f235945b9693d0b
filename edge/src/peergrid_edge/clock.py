"""Injected time: the daemon asks a `Clock`, tests give it a `ManualClock` they advance by hand.

Promises: `monotonic()` never goes backwards; `wall()` is for timestamps that leave the process (ledger,
health), never for measuring intervals; `sleep` returns once the clock has moved on by at least `seconds`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when `advance` is called; sleepers wake in deadline order."""

    def __init__(self, start: float = 1_000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self.now = start
        self.wall_offset = wall_offset
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    async def advance(self, seconds: float, step: float = 0.05) -> None:
        """Move time forward in small steps, letting woken tasks run between steps."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            due = [s for s in self._sleepers if s[0] <= self.now]
            self._sleepers = [s for s in self._sleepers if s[0] > self.now]
            for _, future in due:
                if not future.done():
                    future.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
