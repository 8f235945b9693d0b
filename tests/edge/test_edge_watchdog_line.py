"""The watchdog's budget for a poll task includes the wait for a shared serial line (`polling.line_wait_s`, X1's
4b1e542): since review25 F3 a neighbour that fails a request keeps the RS-485 line two timeouts, and each poll
attempt's bound adds the neighbours' turns, so a healthy device on a line with silent neighbours polls slower
than `4 x timeout x attempts`. `EdgeDaemon.progressing` judged it stuck within the bound its own poll was given
and withheld WATCHDOG=1 (systemd restarts a daemon whose watchdog stays silent), while it was polling as meant.
"""

from __future__ import annotations

from pathlib import Path

from peergrid_edge.clock import ManualClock
from peergrid_edge.config import EdgeSettings
from peergrid_edge.daemon import EdgeDaemon


class SharedLine:
    """A driver whose poll may wait `wait_s` for its line (as a Modbus RTU device with silent neighbours)."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s

    def line_wait_s(self) -> float:
        return self.wait_s

    def close(self) -> None:
        pass


def test_a_poll_waiting_for_its_shared_line_within_its_bound_is_not_stuck(tmp_path: Path) -> None:
    clock = ManualClock(start=100.0)
    settings = EdgeSettings.model_validate(
        {
            "node_id": "n1",
            "mg": "mg1",
            "data_dir": str(tmp_path),
            "devices": [
                {"name": "a", "nature": "pv", "poll_interval_s": 1, "timeout_s": 1, "retries": 1},
                {"name": "b", "nature": "pv", "poll_interval_s": 1, "timeout_s": 1, "retries": 1},
            ],
        }
    )
    daemon = EdgeDaemon(settings, clock=clock)
    try:
        daemon.drivers["b"] = SharedLine(4.0)  # type: ignore[assignment]  # two silent neighbours: 2 x 2 x 1 s
        a, b = daemon.states["a"], daemon.states["b"]
        for state in (a, b):
            state.polls, state.last_poll_mono = 1, 100.0
        assert daemon.progressing()
        # b's poll: two attempts of (4 x 1 s + 4 s for the line) = 16 s at most, after its 1-s period: its budget
        # 1 + 16 + 1 = 18 s (a's, on a line of its own: 1 + 8 + 1 = 10 s)
        clock.now = 115.0
        a.polls, a.last_poll_mono = 2, 115.0
        assert (
            daemon.progressing()
        )  # b 15 s into a poll it may take 17 s for: not stuck (before: 10 s budget)
        clock.now = 119.0
        a.polls, a.last_poll_mono = 3, 119.0
        assert not daemon.progressing()  # b silent past its bound: stuck, no WATCHDOG=1
        clock.now = 130.0  # a, silent past its own 10 s, is stuck too, whatever b's line
        b.polls, b.last_poll_mono = 2, 130.0
        assert not daemon.progressing()
    finally:
        daemon.store.close()
