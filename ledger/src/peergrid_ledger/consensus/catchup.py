"""Catch-up sync, the engine's side: ask a peer that is ahead for blocks, serve ours, commit what checks out.

Promises: a synced block is committed only for the height being decided, with a certificate of a quorum of
that height's authorities and a block `admission.check_block` accepts; the first block that fails either
stops the batch (counted as `sync_bad_certificate` / `sync_invalid_block`). One request is in flight at a
time (`sync.SyncPeers`); a full batch from a good peer pipelines the next request to it. A request is sent to
the peer's sync topic only, carrying the time it was asked (`Send.request`: a driver with a clock stamps it
again as it goes out, after the commits of the batch that asked it) and the peer asked, so the replica serving
it (`ChainReplica` with `sync_guard`) can refuse a captured copy replayed to it again or to another node.
Assumes the engine (`engine.Engine`) owns the height's state and commits; these functions act on it and
append to its actions. Must never commit a block whose certificate or contents it did not check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import admission
from .actions import SYNC_TIMER, Send, SetTimer, Timer
from .app import Rejected
from .messages import SyncRequest, SyncResponse, encode_wire, verify_certificate
from .sync import serve_sync

if TYPE_CHECKING:
    from .engine import Engine


def request_sync(engine: Engine, peer: bytes) -> None:
    if peer != engine.me:
        engine.sync.add(peer)
    target = engine.sync.next(engine.now)
    if target is None:
        return
    engine.stats["sync_requests"] += 1
    request = SyncRequest(engine.s.height, engine.config.sync_batch, engine.now, target)
    engine._out.append(Send(target, encode_wire(engine.chain_id, request), request))
    engine._out.append(SetTimer(Timer(SYNC_TIMER, engine.s.height, 0), engine.sync.busy_until))


def reply_sync(engine: Engine, request: SyncRequest, sender: bytes) -> None:
    cfg = engine.config
    response = serve_sync(engine.app, request, cfg.sync_batch, cfg.max_sync_response_bytes)
    if response.blocks:
        engine.stats["sync_served"] += 1
        engine._out.append(Send(sender, encode_wire(engine.chain_id, response)))


def take_blocks(engine: Engine, response: SyncResponse, sender: bytes | None) -> None:
    progressed = False
    for block, certificate in response.blocks:
        info = engine.app.inspect(block)
        if isinstance(info, Rejected) or info.height < engine.s.height:
            continue
        if info.height > engine.s.height:
            break
        if not verify_certificate(
            engine.chain_id, info.height, info.block_hash, certificate, engine.s.validators, engine.verify
        ):
            engine.stats["sync_bad_certificate"] += 1
            break
        if admission.check_block(engine.app, engine.s, block, info.block_hash) is None:
            engine.stats["sync_invalid_block"] += 1
            break
        engine._commit(block, certificate, via_sync=True)
        progressed = True
    if progressed and sender is not None and len(response.blocks) >= engine.config.sync_batch:
        engine.sync.prefer(sender)  # a full batch from a good peer: pipeline the next one from it
        request_sync(engine, sender)
