"""The DSO node's hands on its chain replicas: submit a transaction and wait until it is final
(`ChainAdapter`), and wake on every final block (`Changed`). The coordinated stop (the halt file) is the
ledger's `peergrid_ledger.consensus.halt`, which the MGMCs use too.

Promises: `ChainAdapter.submit` signs with the key's next nonce on the node's event loop and says whether the
transaction reached a final block in time (`Submitted`, never an exception for a refusal); a transaction the
chain refused is reported as refused with the chain's reason (`reason` "refused"), not as a timeout: at once
when asked to `precheck` it (the state machine on the replica's committed state refuses it for a reason
waiting cannot cure: nothing is sent, the nonce stays free), else as soon as the replica's pool evicts it with
its reason. `sign_and_submit` is the same from a worker thread. Must be called on the node's event loop (the
engines are not thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from peergrid_ledger import keys
from peergrid_ledger.consensus.ledger_app import WAITING_CURES
from peergrid_ledger.machine import BlockContext, apply
from peergrid_ledger.results import Rejected
from peergrid_ledger.tx import Tx, sign_tx

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
        self,
        keypair: keys.Keypair,
        kind: str,
        body: dict[str, Any],
        timeout: float = 8.0,
        precheck: bool = False,
    ) -> Submitted:
        """`precheck`: judge it on the committed state first and send nothing the chain refuses now. Only for
        a transaction that no other sender's pending one can make valid (the DSO's own `market.reopen`):
        the pool's eviction waits two commits for that reason (`mempool.STRIKES`)."""
        async with self._one_at_a_time:
            return await self._submit(keypair, kind, body, timeout, precheck)

    async def _submit(
        self, keypair: keys.Keypair, kind: str, body: dict[str, Any], timeout: float, precheck: bool
    ) -> Submitted:
        replica = self.node.replicas[self.chain]
        nonce = replica.app.next_nonce(keypair.public)
        tx = sign_tx(keypair, self.chain, kind, nonce, self.node.clock(), body)
        refused = self.judge(tx) if precheck else None
        if refused is not None:
            log.warning("%s: the chain refuses the %s: %s", self.chain, kind, refused)
            return Submitted(False, "refused", refused, tx.txid)
        verdict = replica.submit(tx.raw, self.node.clock())
        replica.flush()
        if type(verdict).__name__ == "Rejected":
            return Submitted(False, "mempool", verdict.reason)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if replica.app.next_nonce(keypair.public) > nonce:
                return Submitted(True, txid=tx.txid)
            evicted = replica.refusal(tx.txid)  # the pool let it go without it landing: refused for good
            if evicted is not None:
                log.warning("%s: the chain refused the %s: %s", self.chain, kind, evicted)
                return Submitted(False, "refused", evicted, tx.txid)
            await self.changed.wait(0.5)
        return Submitted(False, "timeout", f"{kind} not final in {timeout} s", tx.txid)

    def judge(self, tx: Tx) -> str | None:
        """Why the state machine refuses `tx` on the replica's committed state as the next block, now (the
        contract's reason), or None: it would land, or only waiting can cure it (`WAITING_CURES`)."""
        app = self.node.replicas[self.chain].app
        ctx = BlockContext(app.genesis, app.head().height + 1, self.node.clock())
        result = apply(app.state, tx, ctx)
        if isinstance(result, Rejected) and result.reason.value not in WAITING_CURES:
            return f"{result.reason.value}: {result.detail}"
        return None

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
