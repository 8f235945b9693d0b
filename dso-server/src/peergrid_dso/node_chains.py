"""The DSO node's hands on its chain replicas: submit a transaction and wait until it is final
(`ChainAdapter`), and wake on every final block (`Changed`). The coordinated stop (the halt file) is the
ledger's `peergrid_ledger.consensus.halt`, which the MGMCs use too.

Promises: `ChainAdapter.submit` signs with the key's next nonce on the node's event loop and says whether the
transaction reached a final block in time (`Submitted`, never an exception for a refusal); a transaction the
chain refused is reported as refused with the chain's reason (`reason` "refused"), not as a timeout: at once
when asked to `precheck` it (the state machine on the replica's committed state refuses it for a reason
waiting cannot cure: nothing is sent, the nonce stays free), else as soon as the replica's pool evicts it with
its reason. A nonce that one of the key's transactions still holds in the pool (one whose submit timed out,
or one this process did not send: gossiped back after a restart) is never signed again: the same
transaction asked again waits for the pending one (same body: it is adopted, not re-signed), another waits
for it to land or leave, block by block, within its own timeout; the adapter never spins. `sign_and_submit`
is the same from a worker thread. Must be called on the node's event loop (the engines are not thread-safe).
`Throttled` says a repeated failure once per few seconds, with how often it repeated (never a line per retry).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peergrid_ledger import keys
from peergrid_ledger.codec import encode
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
        # per key, its transaction whose submit returned before it was final (it may still be in the pool)
        self._unfinished: dict[bytes, Tx] = {}
        self._said = Throttled(log)

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
        deadline = time.monotonic() + timeout
        while True:
            nonce = replica.app.next_nonce(keypair.public)
            earlier = self._holding(keypair.public, nonce)
            if earlier is not None and earlier.kind == kind and encode(earlier.body) == encode(body):
                tx = earlier  # asked again while it is pending: wait for that one, never sign its nonce again
            elif earlier is not None:  # another of ours holds the nonce: sign ours once it landed or left
                self._said.warning("%s: the %s waits for the pending %s (nonce %d)", self.chain, kind,
                                   earlier.kind, nonce)  # fmt: skip
                if not await self._next_block(deadline):
                    return Submitted(
                        False, "timeout", f"{kind} not sent in {timeout} s: nonce {nonce} pending"
                    )
                continue
            else:
                tx = sign_tx(keypair, self.chain, kind, nonce, self.node.clock(), body)
                refused = self.judge(tx) if precheck else None
                if refused is not None:
                    log.warning("%s: the chain refuses the %s: %s", self.chain, kind, refused)
                    return Submitted(False, "refused", refused, tx.txid)
                verdict = replica.submit(tx.raw, self.node.clock())
                replica.flush()
                if type(verdict).__name__ == "Rejected":
                    if "is pending" not in verdict.reason:
                        return Submitted(False, "mempool", verdict.reason)
                    # a transaction of this key that this adapter did not send holds the nonce (gossiped
                    # back after a restart): it lands or leaves at a block; sign again after that, not now
                    self._said.warning("%s: the %s waits: %s", self.chain, kind, verdict.reason)
                    if not await self._next_block(deadline):
                        return Submitted(False, "mempool", verdict.reason)
                    continue
            outcome = await self._outcome(tx, deadline)
            if outcome is not None and outcome.reason == "refused" and tx is earlier:
                continue  # the one pending since an earlier submit left the pool (e.g. too old): sign anew
            if outcome is not None:
                return outcome
            self._unfinished[keypair.public] = tx
            return Submitted(False, "timeout", f"{kind} not final in {timeout} s", tx.txid)

    def _holding(self, sender: bytes, nonce: int) -> Tx | None:
        """The sender's transaction from an earlier submit that still holds `nonce` in the pool, if any."""
        tx = self._unfinished.get(sender)
        if tx is None:
            return None
        if tx.nonce == nonce and tx.txid in self.node.replicas[self.chain].app.mempool:
            return tx
        del self._unfinished[sender]  # it landed, left, or a later nonce is due: forgotten
        return None

    async def _outcome(self, tx: Tx, deadline: float) -> Submitted | None:
        """Wait, block by block, until `tx`'s nonce is used (landed) or the pool evicted it (refused, with
        the reason); None at the deadline."""
        replica = self.node.replicas[self.chain]
        while True:
            if replica.app.next_nonce(tx.sender) > tx.nonce:
                return Submitted(True, txid=tx.txid)
            evicted = replica.refusal(tx.txid)  # the pool let it go without it landing: refused for good
            if evicted is not None:
                log.warning("%s: the chain refused the %s: %s", self.chain, tx.kind, evicted)
                return Submitted(False, "refused", evicted, tx.txid)
            if not await self._next_block(deadline):
                return None

    async def _next_block(self, deadline: float) -> bool:
        """Wait for the next final block (at most 0.5 s, never past `deadline`); False once it has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await self.changed.wait(min(0.5, left))
        return True

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


class Throttled:
    """Logs each distinct message at most once per `every_s` seconds, then with how many times it repeated
    meanwhile: a retry that fails the same way for minutes leaves a line every few seconds, not one per try."""

    KEPT = 256  # distinct messages remembered (the oldest forgotten first)

    def __init__(
        self, logger: logging.Logger, every_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger, self.every_s, self.clock = logger, every_s, clock
        self._last: dict[str, tuple[float, int]] = {}  # message -> (when last logged, repeats since)

    def warning(self, msg: str, *args: object) -> None:
        text = msg % args if args else msg
        now = self.clock()
        at, repeats = self._last.get(text, (float("-inf"), 0))
        if now - at < self.every_s:
            self._last[text] = (at, repeats + 1)
            return
        more = f" (and {repeats} more times in {now - at:.0f} s)" if repeats else ""
        self._last.pop(text, None)
        self._last[text] = (now, 0)
        while len(self._last) > self.KEPT:
            del self._last[next(iter(self._last))]
        self.logger.warning("%s%s", text, more)
