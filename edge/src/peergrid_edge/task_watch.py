"""Watching the edge daemon's long-lived tasks (poll tasks, dispatch, commitments, health, the ledger status,
the trading agent).

Promises: `watch(tasks, stopping)` returns when `stopping` is set (None), or as soon as one of `tasks` ends
with an exception, or cancelled while the daemon is not stopping: then it logs that task's death as CRITICAL
with its traceback, sets `stopping` (the daemon shuts down cleanly) and returns it, for the daemon to exit
non-zero (`TaskDied`) so that systemd (`Restart=on-failure`) starts it again. A task that returns while the
daemon runs (the trading agent after its day's end) is let go with an info line. Never cancels a task itself:
the caller's shutdown does (`peergrid_ledger.consensus.shutdown.cancel_until_done`).
Why: a task that died was never looked at; the daemon polled and committed on without trading (review14 K4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("peergrid.edge")


class TaskDied(RuntimeError):
    """The daemon stopped because one of its long-lived tasks died; the cause is the task's own exception."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        super().__init__(f"the edge daemon's task {task.get_name()} died: {why(task)}")
        self.task = task


def why(task: asyncio.Task[Any]) -> str:
    """What ended a finished task: its exception, or that it was cancelled."""
    if task.cancelled():
        return "cancelled while the daemon was running"
    return repr(task.exception())


async def watch(tasks: Iterable[asyncio.Task[Any]], stopping: asyncio.Event) -> asyncio.Task[Any] | None:
    """Until `stopping` is set (None) or one of `tasks` dies (that task; `stopping` is set then)."""
    live = set(tasks)
    stop: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
    try:
        while not stopping.is_set():
            done, _ = await asyncio.wait({*live, stop}, return_when=asyncio.FIRST_COMPLETED)
            for task in live & done:
                live.discard(task)
                if stopping.is_set():  # ended by the shutdown itself (a stopping agent raises CancelledError)
                    continue
                if task.cancelled() or task.exception() is not None:
                    error = None if task.cancelled() else task.exception()
                    log.critical(
                        "task %s died (%s): the daemon stops so that its service manager restarts it",
                        task.get_name(), why(task), exc_info=error,
                    )  # fmt: skip
                    stopping.set()
                    return task
                log.info("task %s finished", task.get_name())
        return None
    finally:
        stop.cancel()
