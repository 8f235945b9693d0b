"""The DSO node's hands on its chain replicas: submit a transaction and wait until it is final
(`ChainAdapter`), wake on every final block (`Changed`), and the coordinated stop (`halt_heights`, `halt_at`).

Promises: `ChainAdapter.submit` signs with the key's next nonce on the node's event loop and says whether the
transaction reached a final block in time (`Submitted`, never an exception for a refusal); `sign_and_submit`
is the same from a worker thread. `halt_heights(path)` reads the testbed's halt file ({chain id: height});
a missing, unreadable or malformed file is {} (no stop), never an error: the file is written by another
process and may be read half-written. `halt_at(replicas, heights)` makes each replica's engine finalise
nothing above its chain's height (a chain not named runs on), as every MGMC does with the same file, so the
DSO's replicas head for that height at the block period instead of idling a heartbeat per block they propose.
Must be called on the node's event loop (the engines are not thread-safe).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from peergrid_ledger import keys
from peergrid_ledger.tx import sign_tx

log = logging.getLogger("peergrid_dso.node_chains")


@dataclass
class Submitted:
    ok: bool
    reason: str = ""
    detail: str = ""
    txid: bytes = b""


class ChainAdapter:
    """`sign_and_submit` for the DSO's ChainRecorder, callable from a worker thread: signs with the next nonce
    on the loop, waits for inclusion in a final block."""

    def __init__(self, node: Any, chain: str, loop: asyncio.AbstractEventLoop, changed: Any) -> None:
        self.node, self.chain, self.loop, self.changed = node, chain, loop, changed
        self._one_at_a_time = asyncio.Lock()  # the loop and operators share the key: one nonce in flight

    async def submit(
        self, keypair: keys.Keypair, kind: str, body: dict[str, Any], timeout: float = 8.0
    ) -> Submitted:
        async with self._one_at_a_time:
            return await self._submit(keypair, kind, body, timeout)

    async def _submit(
        self, keypair: keys.Keypair, kind: str, body: dict[str, Any], timeout: float
    ) -> Submitted:
        replica = self.node.replicas[self.chain]
        nonce = replica.app.next_nonce(keypair.public)
        tx = sign_tx(keypair, self.chain, kind, nonce, self.node.clock(), body)
        verdict = replica.submit(tx.raw, self.node.clock())
        replica.flush()
        if type(verdict).__name__ == "Rejected":
            return Submitted(False, "mempool", verdict.reason)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if replica.app.next_nonce(keypair.public) > nonce:
                return Submitted(True, txid=tx.txid)
            await self.changed.wait(0.5)
        return Submitted(False, "timeout", f"{kind} not final in {timeout} s")

    def sign_and_submit(self, keypair: keys.Keypair, kind: str, body: dict[str, Any]) -> Submitted:
        return asyncio.run_coroutine_threadsafe(self.submit(keypair, kind, body), self.loop).result(30)


class Changed:
    """Wakes waiters on every final block of one chain."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self, *_: object) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass


def halt_heights(path: Path | None) -> dict[str, int]:
    """The coordinated stop's heights from the halt file ({} when there is none or it cannot be read)."""
    if path is None:
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        heights = {str(chain): int(height) for chain, height in doc.items()}
    except (OSError, ValueError, AttributeError, TypeError):  # absent, half-written, not {chain: int}
        return {}
    return {chain: height for chain, height in heights.items() if height >= 0}


def halt_at(replicas: Mapping[str, Any], heights: Mapping[str, int]) -> None:
    """Finalise nothing above `heights[chain]` on each replica's chain (a chain not named runs on)."""
    for chain, replica in replicas.items():
        engine = replica.engine
        halt = heights.get(chain)
        if engine.config.halt_height != halt:
            log.warning("%s chain: halting above height %s", chain, halt)
            engine.config = replace(engine.config, halt_height=halt)
