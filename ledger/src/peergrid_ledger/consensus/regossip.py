"""When a replica gossips its own pending transactions again: a pure schedule, no clock and no I/O (the
replica's timer is set through the `arm` callback it is given, and `fire` is called when it goes off).

Promises: a transaction `track`ed at `now` is due again at `now + first_ms`, then after twice as long each
time, at most `most_ms`; `due` forgets every tracked transaction no longer pooled (landed, refused, too old)
and hands out at most `batch` due ones per call, oldest due first, the rest staying due for the next call;
the timer is never set sooner than `spacing_ms` after the last call that handed any out, and is set while
anything is tracked (a superseded timer that still goes off is ignored by its generation). So whatever
the pool holds, a replica re-publishes at most `batch` transactions per `spacing_ms` (the defaults: 256 per
250 ms, 1,024 a second), and each one at most once per `first_ms` .. `most_ms`; memory is bounded by what
the pool holds (only pooled transactions stay tracked). Why: a replica gossips a transaction once, and a
publish lost before the proposer subscribed (or in a broker blip) would otherwise leave it pending until
`tx_max_age`, with every later transaction of its sender waiting behind it.
Assumes `now` comes from the driver's clock (ms). Must never hand out a transaction that left the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Arm = Callable[[int, int], None]
"""arm(generation, at_ms): call `Regossip.fire(generation, ...)` at `at_ms`."""

REGOSSIP_MS = (2_000, 16_000)
"""A transaction not in a block this long after it was submitted is gossiped again, then after twice as long
each time, at most the second figure (a block is due every period: normally it never is)."""
REGOSSIP_BATCH = 256
"""Transactions gossiped again at once, at most (one envelope)."""
REGOSSIP_SPACING_MS = 250
"""Between two re-gossips that sent anything, at least this long."""


@dataclass(slots=True)
class _Pending:
    raw: bytes
    due: int
    every: int


class Regossip:
    def __init__(
        self,
        arm: Arm,
        first_ms: int = REGOSSIP_MS[0],
        most_ms: int = REGOSSIP_MS[1],
        batch: int = REGOSSIP_BATCH,
        spacing_ms: int = REGOSSIP_SPACING_MS,
    ) -> None:
        if not 0 < first_ms <= most_ms or batch < 1 or spacing_ms < 0:
            raise ValueError(
                f"re-gossip needs 0 < first {first_ms} <= most {most_ms}, batch >= 1, spacing >= 0"
            )
        self.first_ms, self.most_ms, self.batch, self.spacing_ms = first_ms, most_ms, batch, spacing_ms
        self._pending: dict[bytes, _Pending] = {}  # by txid
        self._last_sent: int | None = None
        self.arm = arm
        self._timer: tuple[int, int] | None = None  # (generation, at_ms) of the timer that counts
        self._generations = 0

    def __len__(self) -> int:
        return len(self._pending)

    def track(self, txid: bytes, raw: bytes, now: int) -> None:
        """`raw` was just gossiped for the first time (a second `track` of one txid changes nothing)."""
        if txid not in self._pending:
            self._pending[txid] = _Pending(raw, now + self.first_ms, self.first_ms)
            self._arm()

    def fire(self, generation: int, now: int, pooled: Callable[[bytes], bool]) -> list[bytes]:
        """The timer `generation` went off: what to gossip again now (nothing if a later timer superseded it)."""
        if self._timer is None or generation != self._timer[0]:
            return []
        self._timer = None
        again = self.due(now, pooled)
        self._arm()
        return again

    def due(self, now: int, pooled: Callable[[bytes], bool]) -> list[bytes]:
        """The transactions to gossip again now (at most `batch`), each then due after twice as long."""
        for txid in [t for t in self._pending if not pooled(t)]:
            del self._pending[txid]
        ready = sorted((p for p in self._pending.values() if p.due <= now), key=lambda p: p.due)[: self.batch]
        for pending in ready:
            pending.every = min(2 * pending.every, self.most_ms)
            pending.due = now + pending.every
        if ready:
            self._last_sent = now
        return [p.raw for p in ready]

    def next_at(self) -> int | None:
        """When `due` should be called next (None: nothing tracked)."""
        if not self._pending:
            return None
        soonest = min(p.due for p in self._pending.values())
        if self._last_sent is None:
            return soonest
        return max(soonest, self._last_sent + self.spacing_ms)

    def rearm(self) -> None:
        """Set the timer afresh (the driver could not run timers before, e.g. before it started)."""
        self._timer = None
        self._arm()

    def _arm(self) -> None:
        at = self.next_at()
        if at is not None and (self._timer is None or at < self._timer[1]):
            self._generations += 1
            self._timer = (self._generations, at)
            self.arm(self._generations, at)
