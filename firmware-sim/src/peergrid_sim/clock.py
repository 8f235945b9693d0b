"""A simulated clock: simulated epoch seconds advancing at `speed` times a monotonic source.

Promises: `now()` never goes backwards; changing the speed keeps the time continuous; speed 0 freezes
the clock so that tests can step it with `advance`. Assumes the monotonic source is injected (tests pass a
fake). Never reads wall-clock time itself: the start is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_SPEED = 100_000.0  # simulated seconds per real second


def start_at(start: float, speed: float, start_wall: float | None, wall_now: float) -> float:
    """The simulated time to start a clock at, at wall time `wall_now`: `start` itself (no `start_wall`), or
    `start` as of the wall time `start_wall`, run on at `speed` since (a process that started late does not
    carry its start-up time into the simulated day: at speed 150, one second late is 2.5 simulated minutes)."""
    if start_wall is None:
        return float(start)
    return float(start) + (wall_now - start_wall) * speed


class SimClock:
    def __init__(self, start: float, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic):
        if not 0 <= speed <= MAX_SPEED:
            raise ValueError(f"clock speed must be within 0..{MAX_SPEED:g}, got {speed}")
        self._monotonic = monotonic
        self._anchor_real = monotonic()
        self._anchor_sim = float(start)
        self.speed = float(speed)

    def now(self) -> float:
        return self._anchor_sim + (self._monotonic() - self._anchor_real) * self.speed

    def set_speed(self, speed: float) -> None:
        if not 0 <= speed <= MAX_SPEED:
            raise ValueError(f"clock speed must be within 0..{MAX_SPEED:g}, got {speed}")
        self._anchor_sim, self._anchor_real = self.now(), self._monotonic()
        self.speed = float(speed)

    def advance(self, seconds: float) -> None:
        """Jump forward (for a frozen clock in tests, or to skip ahead)."""
        if not 0 <= seconds <= 366 * 86400:
            raise ValueError(f"advance must be within 0..{366 * 86400} s, got {seconds}")
        self._anchor_sim += seconds
