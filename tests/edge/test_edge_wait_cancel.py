"""A task waiting for a chain to change is cancelled even when a block lands in the same loop turn.

Python 3.11's `asyncio.wait_for` returns the awaited result instead of raising when the cancellation and the
event come in one turn (cpython gh-86296), so a day-ahead agent cancelled while a final block landed ran its
session on (T10 saw it in tests/edge/test_edge_dayahead_restart.py's cancelled days: 1 in 6 runs at 50-ms
blocks, 2 in 6 at 20 ms). `EdgeLedger.wait_for` waits under `asyncio.timeout`, which keeps the cancellation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from peergrid_edge.replicas import EdgeLedger


def _ledger() -> Any:
    ledger = EdgeLedger.__new__(EdgeLedger)  # only what wait_for reads: the change event and the state
    ledger._changed = {"mgmc": asyncio.Event()}
    ledger.state = lambda role: None
    return ledger


def test_a_cancellation_in_the_turn_a_block_lands_cancels_the_wait() -> None:
    async def day() -> None:
        ledger = _ledger()
        waiting = asyncio.create_task(ledger.wait_for("mgmc", lambda state: False, 1.0))
        await asyncio.sleep(0.01)
        ledger._changed["mgmc"].set()  # a block landed ...
        waiting.cancel()  # ... and the agent is cancelled in the same turn
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(day())


def test_without_a_cancellation_the_wait_still_ends_at_its_timeout_with_the_predicate() -> None:
    async def day() -> bool:
        return await _ledger().wait_for("mgmc", lambda state: False, 0.05)

    assert asyncio.run(day()) is False
