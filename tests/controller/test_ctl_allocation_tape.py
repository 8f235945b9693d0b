"""helpers_ctl.AllocationTape, which the CLI tests use to solve one day once for several venues: a day played
onto a second venue leaves its chain where a real allocation leaves it, and a recorder that answers otherwise
fails the test instead of being trusted."""

from __future__ import annotations

from typing import Any

import pytest
from helpers_ctl import AllocationTape

from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.dayahead import allocate
from peergrid_controller.synth import synthetic_scenario

DAY = synthetic_scenario(3, 4, seed=1, interval_hours=6.0)


def test_a_played_day_is_the_allocation_and_the_chain_a_real_one_leaves() -> None:
    tape = AllocationTape()
    first, second, real = (
        ChainVenue(DAY),
        ChainVenue(DAY, silent=("mg001",)),
        ChainVenue(DAY, silent=("mg001",)),
    )
    allocation = tape(DAY, recorder=first.exchange)
    assert tape.played == 0 and allocation.iterations > 1
    assert tape(DAY, recorder=second.exchange) == allocation and tape.played == 1
    assert allocation == allocate(DAY, recorder=real.exchange)
    assert second.chain.tip == real.chain.tip  # the same blocks, to the byte
    assert "open" not in vars(first.exchange)  # the first recorder is left as it was
    assert tape(DAY) == allocate(DAY) and tape.played == 1  # no recorder: a day of its own


def test_a_recorder_that_answers_otherwise_fails() -> None:
    tape = AllocationTape()
    tape(DAY, recorder=ChainVenue(DAY).exchange)
    other = ChainVenue(DAY).exchange
    real_step = other.step

    def skewed(iteration: int, rho: int) -> Any:
        prices = real_step(iteration, rho)
        return prices if iteration < 2 else tuple(p + 1 for p in prices)

    other.step = skewed  # type: ignore[method-assign]
    with pytest.raises(AssertionError, match="step"):
        tape(DAY, recorder=other)
