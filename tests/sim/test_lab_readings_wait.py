"""A settle-by-both lab's wait is one its DSO node starts with (D12's `check_settle_wait`), at any interval.

Why: D12 made the DSO refuse a settle wait whose deadline rules come before an interval's last sealed readings
can be posted; the lab's wait was 3 intervals, which that rule refuses at 4 s or less, so such a lab's DSO
would not start. The lab states the DSO's margin itself (`lab_params.READINGS_POST_MARGIN_MS`) and restates
its own disputes section's sealing time (`closedloop.disputes_section`): this holds each pair together, the
DSO checking the wait against the section the lab writes.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from peergrid_dso import dispute_time
from peergrid_sim.closedloop import LoopTiming, disputes_section
from peergrid_sim.lab_params import READINGS_POST_MARGIN_MS, SettleByBoth


def test_the_lab_states_the_dso_s_margin() -> None:
    assert READINGS_POST_MARGIN_MS == dispute_time.POST_MARGIN_MS


def lab_disputes(interval_s: float) -> SimpleNamespace:
    """The DSO node's `loop.disputes` section as a lab of `interval_s` writes it (`closedloop.disputes_section`)."""
    return SimpleNamespace(**disputes_section(LoopTiming(1_000.0, interval_s, 0, 3), Path("records")))


@pytest.mark.parametrize("interval_s", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 30.0])
def test_the_dso_starts_with_the_lab_s_wait(interval_s: float) -> None:
    wait_ms = SettleByBoth.for_lab(interval_s, 0, 1_000.0).wait_ms
    # raises ConfigError where the DSO would refuse it
    dispute_time.check_settle_wait(lab_disputes(interval_s), wait_ms)


@pytest.mark.parametrize("interval_s", [5.0, 6.0, 8.0, 30.0])
def test_labs_of_five_seconds_and_more_keep_three_intervals(interval_s: float) -> None:
    assert SettleByBoth.for_lab(interval_s, 0, 1_000.0).wait_ms == max(3_000, round(3 * interval_s * 1000))


def test_the_old_wait_of_a_four_second_lab_is_refused() -> None:
    """The case the lab's own rule now lifts: 3 intervals of 4 s (12 s) against 4 s + 3 s sealed + 2 s."""
    with pytest.raises(Exception, match="settle_wait_ms 12000"):
        dispute_time.check_settle_wait(lab_disputes(4.0), 12_000)
