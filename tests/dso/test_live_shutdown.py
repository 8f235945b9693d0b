"""The DSO node's shutdown (`DsoNode.run`): no task runs on after a lost cancellation, and the stores close.

Python 3.11's `asyncio.wait_for` swallows a cancellation that arrives in the loop turn its awaited event fires;
the DSO's interval loop waits on chain events through it (`node_chains.Changed.wait`). Before, `run` cancelled
its tasks once and then gathered them, so a loop that lost its cancellation kept the node from stopping (and
its stores open) for as long as it went on waiting. Here the loop loses it deterministically: it waits on the
very `stop` event whose firing ends `run`, so the cancel lands in the turn its wait completes.
"""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso.dso_node import DsoNode

LOSES_CANCELS = sys.version_info < (3, 12)  # 3.12's wait_for no longer swallows it


class StubbornLoop:
    """An interval loop that waits for `stop` through wait_for and, its cancellation lost, goes on waiting."""

    def __init__(self) -> None:
        self.ran_on = 0

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.wait_for(stop.wait(), 60)
        self.ran_on += 1
        await asyncio.wait_for(asyncio.Event().wait(), 60)


class LedgerNode:
    """The ledger node's part: runs until `stop`, as `consensus.node.Node.run` does."""

    def __init__(self, fails: bool = False) -> None:
        self.fails, self.ended = fails, False

    def attach_loop(self) -> None:
        pass

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await stop.wait()
            if self.fails:
                raise RuntimeError("the ledger node failed")
        finally:
            self.ended = True


class Closable:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def dso_node(loop: Any, ledger: LedgerNode) -> tuple[DsoNode, list[Closable]]:
    stores = [Closable(), Closable()]
    transport = SimpleNamespace(start=lambda: None, stop=lambda: None)
    switching = SimpleNamespace(executor=SimpleNamespace(driver=Closable()))
    node = DsoNode(settings=SimpleNamespace(halt_file=None), node=ledger, transport=transport, stores=stores,
                   replica=None, adapter=None, chain=None, feeder=None, recorder=None, switching=switching,
                   loop=loop)  # fmt: skip
    return node, stores


def test_the_dso_node_stops_although_its_loop_lost_its_cancellation() -> None:
    async def main() -> tuple[int, list[Closable], LedgerNode]:
        loop, ledger = StubbornLoop(), LedgerNode()
        node, stores = dso_node(loop, ledger)
        stop = asyncio.Event()
        run = asyncio.create_task(node.run(stop))
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(run, 5)  # the old single cancel: 60 s, the loop's own wait
        return loop.ran_on, stores, ledger

    ran_on, stores, ledger = asyncio.run(main())
    assert ran_on == (1 if LOSES_CANCELS else 0)  # the cancellation was lost, and the node stopped anyway
    assert ledger.ended and all(store.closed for store in stores)


def test_a_dso_node_cancelled_from_outside_ends_its_ledger_node_and_closes_its_stores() -> None:
    async def main() -> tuple[list[Closable], LedgerNode]:
        ledger = LedgerNode()
        node, stores = dso_node(StubbornLoop(), ledger)
        run = asyncio.create_task(node.run(asyncio.Event()))  # nobody will set this stop
        await asyncio.sleep(0.1)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(run, 5)  # before: waited on the ledger node for good
        return stores, ledger

    stores, ledger = asyncio.run(main())
    assert ledger.ended and all(store.closed for store in stores)


def test_a_failed_ledger_node_is_raised_and_the_stores_close_all_the_same() -> None:
    async def main() -> list[Closable]:
        node, stores = dso_node(StubbornLoop(), LedgerNode(fails=True))
        stop = asyncio.Event()
        run = asyncio.create_task(node.run(stop))
        await asyncio.sleep(0.1)
        stop.set()
        with pytest.raises(RuntimeError, match="the ledger node failed"):
            await asyncio.wait_for(run, 5)
        return stores

    assert all(store.closed for store in asyncio.run(main()))
