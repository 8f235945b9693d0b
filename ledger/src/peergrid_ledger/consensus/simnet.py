"""A seeded in-memory network and event loop for deterministic simulation of consensus replicas.

Promises: given the same seed and the same calls, the same messages arrive in the same order at the same
virtual times. Links delay, lose, duplicate and reorder messages; partitions cut groups apart until healed;
a crashed node loses everything but its store and WAL, and its pending timers die with it. Assumes callers
schedule everything through `at`. Must never read the wall clock or use unseeded randomness.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

CONSENSUS, TX = "consensus", "tx"


@dataclass
class LinkModel:
    min_delay_ms: int = 5
    max_delay_ms: int = 50
    loss: float = 0.0
    duplicate: float = 0.0


class SimNetwork:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = 0
        self.link = LinkModel()
        self.groups: dict[str, int] | None = None
        self.receivers: dict[str, Callable[[str, str, bytes], None]] = {}
        self.up: dict[str, bool] = {}
        self.delivered = 0
        self.dropped = 0
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, when: int, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(when, self.now), self._seq, action))

    def attach(self, name: str, receive: Callable[[str, str, bytes], None]) -> None:
        """`receive(source, channel, data)` is called for each message delivered to `name`."""
        self.receivers[name] = receive
        self.up[name] = True

    def partition(self, groups: list[list[str]]) -> None:
        self.groups = {name: i for i, group in enumerate(groups) for name in group}

    def heal(self) -> None:
        self.groups = None

    def connected(self, a: str, b: str) -> bool:
        return self.groups is None or self.groups.get(a, -1) == self.groups.get(b, -2)

    def send(self, source: str, destination: str, channel: str, data: bytes) -> None:
        # The hottest path of a seed (every copy of every message): the same draws in the same order as
        # ever (duplication, then per copy loss and delay), `connected` and `at` inlined.
        link, rng = self.link, self.rng
        copies = 1 + (rng.random() < link.duplicate)
        groups = self.groups
        connected = groups is None or groups.get(source, -1) == groups.get(destination, -2)
        for _ in range(copies):
            if rng.random() < link.loss or not connected:
                self.dropped += 1
                continue
            self._seq += 1
            event: tuple[int, int, Callable[[], None]] = (
                self.now + rng.randint(link.min_delay_ms, link.max_delay_ms),
                self._seq,
                partial(self._deliver, source, destination, channel, data),
            )
            heapq.heappush(self._queue, event)

    def broadcast(self, source: str, channel: str, data: bytes) -> None:
        for name in self.receivers:
            if name != source:
                self.send(source, name, channel, data)

    def _deliver(self, source: str, destination: str, channel: str, data: bytes) -> None:
        if not self.up.get(destination) or not self.connected(source, destination):
            self.dropped += 1
            return
        self.delivered += 1
        self.receivers[destination](source, channel, data)

    def run_until(self, end: int) -> None:
        queue = self._queue
        pop = heapq.heappop
        while queue and queue[0][0] <= end:
            self.now, _, action = pop(queue)
            action()
        self.now = end
