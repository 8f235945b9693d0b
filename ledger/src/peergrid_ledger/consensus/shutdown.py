"""Ending a daemon's tasks for good, so that nothing runs on once the daemon closes what they use (the edge
daemon's and the DSO node's shutdown; here because both depend on the ledger and the tasks they end wait on
its replicas' blocks).

Promises: `cancel_until_done(tasks, grace_s)` returns once every task has ended, cancelling each one still
running again every `every_s`: in Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives in the
loop turn its awaited future completes (it returns the result instead), so a single `cancel()` can leave a task
running on (the MGMC's trading agent and the DSO's interval loop wait on a chain event every block); a
repeated one lands at the task's next await. A task that still runs after `grace_s` is named in an error and in the returned list: the caller goes
on shutting down rather than hang (systemd's stop timeout would kill it anyway). A task's own exception is
retrieved and logged, never raised. Assumes it runs on the tasks' loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("peergrid_ledger.shutdown")


async def cancel_until_done(
    tasks: Iterable[asyncio.Task[object]], grace_s: float = 10.0, every_s: float = 0.05
) -> list[str]:
    """Cancel `tasks` until each has ended or `grace_s` passed; returns the names of those still running."""
    tasks = list(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    pending = {task for task in tasks if not task.done()}
    rounds = 0
    while pending:
        for task in pending:
            task.cancel()
        rounds += 1
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(every_s, left))
    if rounds > 1 and not pending:
        log.info("shutdown: a task ignored a cancellation; cancelled %d times", rounds)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("task %s had failed: %r", task.get_name(), task.exception())
    stuck = sorted(task.get_name() for task in pending)
    if stuck:
        log.error("shutdown: tasks still running after %.1f s of cancelling: %s", grace_s, ", ".join(stuck))
    return stuck
