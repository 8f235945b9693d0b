"""Polling for a condition, shared by the tests that wait on a real broker, a listener or a log."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(done: Callable[[], bool], timeout_s: float = 30.0, step_s: float = 0.05) -> bool:
    """Whether `done()` held within `timeout_s` (checked every `step_s`, and once more at the end)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(step_s)
    return done()
