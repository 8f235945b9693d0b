"""Which signed sync requests a replica serves (review21 F7): a bound on what one requester can make it send.

Promises: `SyncGuard.admit` takes a request only if it came on this node's sync topic (where catch-up sends
them: `catchup.request_sync` -> `Send` -> `sync/<node>`; never the broadcast consensus topic, where every
replica would answer), names this node as the peer asked, was asked within `max_age_ms` before now (and not
beyond the clock drift after), is newer than the last request taken from its requester (a replay of a
captured request is refused even inside that time), and finds the requester's byte budget for the current
window unspent: each requester is served at most about `budget_bytes` per `window_ms` (one full response's
worth; a catch-up of small blocks pipelines many responses within it). Every refusal names its counter
(`REFUSALS`). The engine still decides what a taken request is answered with (`sync.serve_sync`).
Assumes the envelope's signature was checked: `requester` is the authenticated sender. Keeps at most
`MAX_REQUESTERS` requesters (the least recent go first). Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import SyncRequest

MAX_REQUESTERS = 4096
REFUSALS = (
    "sync_refused_topic",  # a sync request on the broadcast consensus (or block) topic
    "sync_refused_undated",  # the format before `at_ms`/`to`: cannot be told from a replay
    "sync_refused_elsewhere",  # asked of another node: a capture replayed to us
    "sync_refused_stale",  # asked too long ago (or in the future beyond the drift): a capture replayed later
    "sync_refused_replay",  # not newer than the last request taken from this requester
    "sync_refused_rate",  # this requester's budget for the window is spent
)


@dataclass(slots=True)
class _Requester:
    last: tuple[int, int]  # (at_ms, from_height) of the last request taken
    window_start: int
    spent: int


@dataclass
class SyncGuard:
    me: bytes
    window_ms: int
    budget_bytes: int
    max_age_ms: int
    max_drift_ms: int
    _requesters: dict[bytes, _Requester] = field(default_factory=dict)

    def admit(self, requester: bytes, request: SyncRequest, on_sync_topic: bool, now: int) -> str | None:
        """None if the request is to be served now, else the counter of why not (and nothing is recorded)."""
        if not on_sync_topic:
            return "sync_refused_topic"
        if request.at_ms is None or request.to is None:
            return "sync_refused_undated"
        if request.to != self.me:
            return "sync_refused_elsewhere"
        if not now - self.max_age_ms <= request.at_ms <= now + self.max_drift_ms:
            return "sync_refused_stale"
        seen = self._requesters.get(requester)
        stamp = (request.at_ms, request.from_height)  # a pipelined request in the same ms asks for more
        if seen is not None:
            if stamp <= seen.last:
                return "sync_refused_replay"
            if now < seen.window_start + self.window_ms and seen.spent >= self.budget_bytes:
                return "sync_refused_rate"
        self._take(requester, seen, stamp, now)
        return None

    def _take(self, requester: bytes, seen: _Requester | None, stamp: tuple[int, int], now: int) -> None:
        if seen is None:
            seen = _Requester(stamp, now, 0)
            if len(self._requesters) >= MAX_REQUESTERS:
                del self._requesters[next(iter(self._requesters))]
        else:
            del self._requesters[requester]  # re-inserted last: the dict's order is recency
            seen.last = stamp
            if now >= seen.window_start + self.window_ms:
                seen.window_start, seen.spent = now, 0
        self._requesters[requester] = seen

    def served(self, requester: bytes, size: int) -> None:
        """`size` bytes went out to `requester` for the request just admitted."""
        seen = self._requesters.get(requester)
        if seen is not None:
            seen.spent += size
