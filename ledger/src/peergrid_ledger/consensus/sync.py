"""Catch-up sync, serving side: committed blocks with their certificates, in bounded batches.

Promises: `serve_sync` answers a `SyncRequest` with consecutive committed blocks from the requested height,
at most `batch` of them and about `max_bytes` in all (always at least one when any exists), so a node any
number of blocks behind catches up in pipelined batches; which requests a replica serves at all (topic, date,
replays, a byte budget per requester) is `sync_guard`'s. The requesting side lives in `catchup.py`: it checks
each block's certificate against the authorities of that height before committing it.
`SyncPeers` picks whom to ask: the peers that showed they are ahead, in turn, one request in flight at a
time (retried after `retry_ms`), so no single (possibly Byzantine) peer can keep a replica waiting.
Must never serve a block it has not committed.
"""

from __future__ import annotations

from .app import Application
from .messages import Certificate, SyncRequest, SyncResponse

SEAL_BYTES = 100
"""Rough encoded size of one commit seal, for the response size bound."""


def serve_sync(app: Application, request: SyncRequest, batch: int, max_bytes: int) -> SyncResponse:
    head = app.head().height
    last = min(head, request.from_height + min(request.count, batch) - 1)
    blocks: list[tuple[bytes, Certificate]] = []
    size = 0
    for height in range(request.from_height, last + 1):
        item = app.committed(height)
        if item is None:
            break
        size += len(item[0]) + SEAL_BYTES * len(item[1].seals)
        if blocks and size > max_bytes:
            break
        blocks.append(item)
    return SyncResponse(tuple(blocks))


class SyncPeers:
    MAX_PEERS = 32

    def __init__(self, retry_ms: int) -> None:
        self.retry_ms = retry_ms
        self.peers: list[bytes] = []
        self.busy_until = -1
        self._turn = -1

    def add(self, peer: bytes) -> None:
        if peer not in self.peers:
            self.peers.append(peer)
            del self.peers[: -self.MAX_PEERS]

    def next(self, now: int) -> bytes | None:
        """The peer to ask now, or None while a request is in flight or nobody is known to be ahead."""
        if now < self.busy_until or not self.peers:
            return None
        self._turn = (self._turn + 1) % len(self.peers)
        self.busy_until = now + self.retry_ms
        return self.peers[self._turn]

    def ready(self) -> None:
        """The request in flight timed out (or was answered): another may go."""
        self.busy_until = -1

    def prefer(self, peer: bytes) -> None:
        """Ask `peer` next, at once."""
        self.busy_until = -1
        if peer in self.peers:
            self._turn = self.peers.index(peer) - 1
