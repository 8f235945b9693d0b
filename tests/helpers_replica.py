"""A single consensus replica driven by hand in a test: `Wire` is its transport (a lone authority has no one
to gossip to, so nothing is sent) and its scheduler (the timers it sets are kept, not run), and `pump` fires
its proposal timers, at each of which the lone authority proposes and finalises a block. Shared by the tests
that run a real `ChainReplica` (LevelDB store, real engine) without a network."""

from __future__ import annotations

import time
from typing import Any

from peergrid_ledger.consensus.actions import Timer
from peergrid_ledger.consensus.node import ChainReplica


def wall_ms() -> int:
    return int(time.time() * 1000)


class Wire:
    """The replica's transport (nothing to gossip to) and its timers, fired by `pump`."""

    def __init__(self) -> None:
        self.timers: list[tuple[Timer, int]] = []

    def publish(self, *_: Any, **__: Any) -> None:
        pass

    def schedule(self, timer: Timer, at_ms: int) -> None:
        self.timers.append((timer, at_ms))


def pump(replica: ChainReplica, wire: Wire, due_only: bool = True) -> None:
    """One pass over the proposal timers set so far (due ones, or all: the single authority proposes and
    finalises a block at each; an idle chain asks for an empty block every period, so never loop on them)."""
    now = wall_ms()
    due = [(t, at) for t, at in wire.timers if t.kind == "propose" and (at <= now or not due_only)]
    wire.timers = [entry for entry in wire.timers if entry not in due]
    for timer, at in sorted(due, key=lambda d: d[1]):
        replica.fire(timer, max(at, now))
