"""A simulated clock: simulated epoch seconds advancing at `speed` times a monotonic source.

Promises: `now()` never goes backwards; changing the speed keeps the time continuous; speed 0 freezes the
clock so that tests can step it with `advance`. `stop_at(x)` has it stand still once it reads `x`, and
`resume_at(r)` has it read `x` at the monotonic time `r` and run on from there (the lab moved its first
interval later: the devices' day stood still as long, exactly; never read past the stop meanwhile). Assumes
the monotonic source is injected (tests pass a fake). Never reads wall-clock time itself: the start is given.
"""

from __future__ import annotations

import math
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
        self._stop: float | None = None  # simulated time it stands still at once it reads it (`stop_at`)
        self._resume: float | None = None  # monotonic time it runs on from `_stop` (`resume_at`)

    def now(self) -> float:
        mono = self._monotonic()
        if self._stop is not None and self._resume is not None and mono >= self._resume:
            return self._stop + (mono - self._resume) * self.speed
        raw = self._anchor_sim + (mono - self._anchor_real) * self.speed
        return raw if self._stop is None else min(raw, self._stop)

    def _settle(self) -> None:
        """A resume whose time came becomes the plain anchor it is."""
        if self._stop is not None and self._resume is not None and self._monotonic() >= self._resume:
            self._anchor_sim, self._anchor_real = self._stop, self._resume
            self._stop = self._resume = None

    def set_speed(self, speed: float) -> None:
        """From now on `speed`; a stop set still holds."""
        if not 0 <= speed <= MAX_SPEED:
            raise ValueError(f"clock speed must be within 0..{MAX_SPEED:g}, got {speed}")
        self._settle()
        self._anchor_sim, self._anchor_real = self.now(), self._monotonic()
        self.speed = float(speed)

    @property
    def stop(self) -> float | None:
        """The simulated time it stands still at (`stop_at`), None without a stop."""
        self._settle()
        return self._stop

    def stop_at(self, at: float | None) -> None:
        """Stand still once the clock reads `at` (at once if it is past it already) until `resume_at`;
        None: no stop (a resume set goes with it), the clock runs on as it would have."""
        self._settle()
        if at is None:
            if self._stop is not None:  # it may stand still at the stop: it runs on from where it is
                self._anchor_sim, self._anchor_real = self.now(), self._monotonic()
            self._stop = self._resume = None
            return
        if not math.isfinite(at):
            raise ValueError(f"stop_at must be a finite simulated time, got {at}")
        self._stop = max(float(at), self.now())
        self._resume = None

    def resume_at(self, real: float) -> None:
        """The clock, stopped (`stop_at`) or on its way to the stop, reads the stop at monotonic time `real`
        and runs on from there at its speed: it stands still at the stop until then (a `real` already past
        moves it forward at once, to where it would be by now)."""
        self._settle()
        if self._stop is None:
            raise ValueError("resume_at without a stop_at: the clock is not stopped")
        if not math.isfinite(real):
            raise ValueError(f"resume_at must be a finite time, got {real}")
        self._resume = float(real)

    def advance(self, seconds: float) -> None:
        """Jump forward (for a frozen clock in tests, or to skip ahead); never past a stop set."""
        if not 0 <= seconds <= 366 * 86400:
            raise ValueError(f"advance must be within 0..{366 * 86400} s, got {seconds}")
        self._settle()
        self._anchor_sim += seconds
