"""Which signed sync requests a replica serves (review21 F7): a bound on what one requester can make it send,
without needing the two clocks to agree (review23 F1).

Promises: `SyncGuard.admit` takes a request only if it came on this node's sync topic (where catch-up sends
them: `catchup.request_sync` -> `Send` -> `sync/<node>`; never the broadcast consensus topic, where every
replica would answer), names this node as the peer asked, is newer than the last request taken from its
requester (a replay of a captured request is refused however fresh it looks), is dated at most `unseen_ms`
ahead of this node's clock, and - for a requester not taken from within the last 2 x `unseen_ms` (never
seen, forgotten, or idle that long) - at most `unseen_ms` behind it. A requester already seen is not judged
by the clocks: one whose clock is seconds off catches up like any other. Its byte budget for the current
window must be unspent: each requester is served at most about `budget_bytes` per `window_ms` (one full
response's worth; a catch-up of small blocks pipelines many responses within it). No request is taken twice
while this node's clock runs forward: a record is forgotten only once every stamp it took lies more than
`unseen_ms` in the past, where the unseen test refuses it (or when `MAX_REQUESTERS` others came since). What a replay can still cost: a captured request
the replica never took (lost, or refused for the budget) is served once if replayed before a later one of
its requester is taken, within that requester's budget. Every refusal names its counter (`REFUSALS`). The
engine still decides what a taken request is answered with (`sync.serve_sync`).
Assumes the envelope's signature was checked: `requester` is the authenticated sender. Keeps at most
`MAX_REQUESTERS` requesters (the least recent go first). Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import SyncRequest

MAX_REQUESTERS = 4096
UNSEEN_MS = 600_000
"""How far a request's date may be from this node's clock (ahead always; behind for a requester not seen
lately): ten minutes, far beyond any skew under which a replica works at all (a transaction dated two minutes
off its block's time is refused by default), and short enough that an old capture is not served again after
a restart (the guard's memory is not kept)."""
REFUSALS = (
    "sync_refused_topic",  # a sync request on the broadcast consensus (or block) topic
    "sync_refused_undated",  # the format before `at_ms`/`to`: cannot be told from a replay
    "sync_refused_elsewhere",  # asked of another node: a capture replayed to us
    "sync_refused_stale",  # dated beyond `unseen_ms` ahead, or behind from a requester not seen lately
    "sync_refused_replay",  # not newer than the last request taken from this requester
    "sync_refused_rate",  # this requester's budget for the window is spent
)


@dataclass(slots=True)
class _Requester:
    last: tuple[int, int]  # (at_ms, from_height) of the last request taken
    taken_at: int  # our clock when it was taken
    window_start: int
    spent: int


@dataclass
class SyncGuard:
    me: bytes
    window_ms: int
    budget_bytes: int
    unseen_ms: int = UNSEEN_MS
    _requesters: dict[bytes, _Requester] = field(default_factory=dict)

    def admit(self, requester: bytes, request: SyncRequest, on_sync_topic: bool, now: int) -> str | None:
        """None if the request is to be served now, else the counter of why not (and nothing is recorded)."""
        if not on_sync_topic:
            return "sync_refused_topic"
        if request.at_ms is None or request.to is None:
            return "sync_refused_undated"
        if request.to != self.me:
            return "sync_refused_elsewhere"
        if request.at_ms > now + self.unseen_ms:
            return "sync_refused_stale"  # its stamp would hold back the requester's honest ones that long
        seen = self.recent(requester, now)
        if seen is None and request.at_ms < now - self.unseen_ms:
            return "sync_refused_stale"
        stamp = (request.at_ms, request.from_height)  # a pipelined request in the same ms asks for more
        if seen is not None:
            if stamp <= seen.last:
                return "sync_refused_replay"
            if now < seen.window_start + self.window_ms and seen.spent >= self.budget_bytes:
                return "sync_refused_rate"
        self._take(requester, seen, stamp, now)
        return None

    def recent(self, requester: bytes, now: int) -> _Requester | None:
        """The requester's record if one was taken from it within 2 x `unseen_ms`: every stamp taken is at
        most `unseen_ms` ahead of the clock when taken, so an older record's stamps are all refused as stale."""
        seen = self._requesters.get(requester)
        if seen is None or now - seen.taken_at > 2 * self.unseen_ms:
            return None
        return seen

    def _take(self, requester: bytes, seen: _Requester | None, stamp: tuple[int, int], now: int) -> None:
        self._requesters.pop(requester, None)  # re-inserted last: the dict's order is recency
        if seen is None:
            seen = _Requester(stamp, now, now, 0)
            if len(self._requesters) >= MAX_REQUESTERS:
                del self._requesters[next(iter(self._requesters))]
        else:
            seen.last, seen.taken_at = stamp, now
            if now >= seen.window_start + self.window_ms:
                seen.window_start, seen.spent = now, 0
        self._requesters[requester] = seen

    def served(self, requester: bytes, size: int) -> None:
        """`size` bytes went out to `requester` for the request just admitted."""
        seen = self._requesters.get(requester)
        if seen is not None:
            seen.spent += size
