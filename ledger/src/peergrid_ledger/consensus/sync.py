"""Catch-up sync, serving side: committed blocks with their certificates, in bounded batches.

Promises: `serve_sync` answers a `SyncRequest` with consecutive committed blocks from the requested height,
at most `batch` of them and about `max_bytes` in all (always at least one when any exists), so a node any
number of blocks behind catches up in pipelined batches. The requesting side lives in the engine: it checks
each block's certificate against the authorities of that height before committing it.
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
