"""Several chain replicas over one transport on one asyncio event loop (the DSO's, `peergrid-ledger node`).

Promises: `Node.run` feeds each delivered message to its chain's `ChainReplica.receive` and fires the
replicas' timers on the loop until told to stop; a message whose `receive` raises costs that message only
(logged with its traceback, counted as `receive_errors` in `stats` and the status file), never the loop.
The status file is replaced atomically. Assumes `deliver` is called from the transport's thread and
everything else on the loop. Must never block the loop on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import keys
from .actions import Timer

if TYPE_CHECKING:
    from .node import ChainReplica, Schedule

log = logging.getLogger("peergrid_ledger.node")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    """Several chain replicas sharing one transport and one event loop."""

    def __init__(
        self, keypair: keys.Keypair, status_file: Path | None = None, clock: Callable[[], int] = wall_ms
    ) -> None:
        self.keypair = keypair
        self.status_file = status_file
        self.clock = clock
        self.replicas: dict[str, ChainReplica] = {}
        self.stats: Counter[str] = Counter()
        """The node's own counters (`receive_errors`), beside each replica's in `status()`."""
        self._inbox: asyncio.Queue[tuple[str, str, bytes]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def deliver(self, chain: str, kind: str, payload: bytes) -> None:
        """Called from the transport's thread."""
        if self._loop is not None and self._inbox is not None:
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, (chain, kind, payload))

    def schedule_for(self, chain: str) -> Schedule:
        def schedule(timer: Timer, at_ms: int) -> None:
            assert self._loop is not None
            delay = max(0.0, (at_ms - self.clock()) / 1000)
            self._loop.call_later(delay, self._fire, chain, timer)

        return schedule

    def _fire(self, chain: str, timer: Timer) -> None:
        self.replicas[chain].fire(timer, self.clock())

    def attach_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()

    async def run(self, stop: asyncio.Event) -> None:
        assert self._inbox is not None, "call attach_loop() first"
        for replica in self.replicas.values():
            replica.start(self.clock())
        ticker = asyncio.create_task(self._tick(stop))
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(self._inbox.get())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if getter not in done:
                    getter.cancel()
                    break
                item = getter.result()
                while True:
                    self._receive(*item)
                    try:
                        item = self._inbox.get_nowait()
                    except asyncio.QueueEmpty:
                        break
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self.write_status()

    def _receive(self, chain: str, kind: str, payload: bytes) -> None:
        """One message into its replica. `receive` counts every refusal itself and raises nothing it knows of;
        anything it does raise (a bug in a codec or contract) costs that message only: logged with its
        traceback (the 1st, 2nd, 4th ... time) and counted as `receive_errors`, and the node goes on."""
        replica = self.replicas.get(chain)
        if replica is None:
            return
        try:
            replica.receive(kind, payload, self.clock())
        except Exception:
            self.stats["receive_errors"] += 1
            count = self.stats["receive_errors"]
            if count & (count - 1) == 0:
                log.exception("%s: a %s message raised in receive; dropped (%d so far)", chain, kind, count)

    async def _tick(self, stop: asyncio.Event) -> None:
        beat = 0
        while not stop.is_set():
            await asyncio.sleep(0.02)
            for replica in self.replicas.values():
                replica.flush()
            beat += 1
            if beat % 10 == 0:
                self.write_status()

    def write_status(self) -> None:
        if self.status_file is None:
            return
        doc = {
            "node": self.keypair.public.hex(),
            "stats": dict(self.stats),
            "chains": {c: r.status() for c, r in self.replicas.items()},
        }
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, self.status_file)
