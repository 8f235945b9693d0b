"""The DSO node's hands on its chain replicas: submit a transaction and wait until it is final
(`ChainAdapter`), and wake on every final block (`Changed`). The coordinated stop (the halt file) is the
ledger's `peergrid_ledger.consensus.halt`, which the MGMCs use too.

Promises: `ChainAdapter.submit` signs with the key's lowest nonce that none of its transactions holds in the
pool, on the node's event loop, and says whether the transaction reached a final block in time (`Submitted`,
never an exception for a refusal). It learns that from the chain, never by assuming: landed means the
replica's store holds the transaction; a nonce used by another transaction of the key is a refusal, said so.
A transaction the chain refused is reported as refused with the chain's reason (`reason` "refused"), not as a
timeout: at once when asked to `precheck` it (the state machine on the replica's committed state refuses its
body for a reason waiting cannot cure, judged as if it were the key's next: nothing is sent, the nonce stays
free), else as soon as the replica's pool evicts it with its reason.
Pipelined: up to `max_in_flight` transactions of one key may be in flight together, on consecutive nonces,
each submit waiting only for its own; the pool takes each sender's in nonce order and never skips a gap
(`Mempool.reap`), so a refused nonce below others in flight would strand them until they are too old: the
adapter fills such a gap at once with an `operator_action` naming the refused transaction (a `dso` key's
record; a key without that role cannot fill, and that is logged), and checks for such gaps every
`FILL_EVERY_S` while any of its transactions is in flight. A transaction sent and not yet in a block is
gossiped again until it leaves the pool by the replica it was submitted to (`ChainReplica.submit` tracks it:
`consensus.regossip`, 2 s doubling to 16 s), so a proposer that was not subscribed at the first publish (a
broker blip, a replica starting late) still gets it; the adapter keeps no second schedule of its own (it
did until every replica re-gossiped: each copy was only counted as a `tx_duplicate`). The same transaction
asked again while it is
in flight (same kind and body) is that one, adopted and waited for, never signed again; a nonce that a
transaction this process did not send still holds (gossiped back after a restart) is waited for, block by
block, within the submit's own timeout; the adapter never spins. Choosing a nonce, signing and handing the
transaction to the pool is one step with no await in it, so two submits never pick one nonce and nothing
that waits (a submit at the key's bound) holds up another (a gap being filled). `sign_and_submit` is the same
from a worker thread. Must be called on the node's event loop (the engines are not thread-safe).
`Throttled` says a repeated failure once per few seconds, with how often it repeated (never a line per retry).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peergrid_dso.node_name import NODE_NAME
from peergrid_ledger import keys
from peergrid_ledger.codec import encode
from peergrid_ledger.consensus.ledger_app import WAITING_CURES
from peergrid_ledger.machine import BlockContext, apply
from peergrid_ledger.results import Rejected
from peergrid_ledger.tx import Tx, sign_tx

log = logging.getLogger("peergrid_dso.node_chains")
MAX_IN_FLIGHT = 64
"""A key's transactions sent and not yet in a block, at most: a pass of the cover pricer (one per MG) goes
out together and lands in a block or two, not one block each (the pool takes up to 1,024 per sender)."""
FILL_EVERY_S = 1.0
"""While any of the adapter's transactions is in flight, how often it looks for a gap below them to fill."""
FILLER_OPERATOR = NODE_NAME  # the gap fillers are the node's own records


@dataclass
class Submitted:
    ok: bool
    reason: str = ""
    detail: str = ""
    txid: bytes = b""


@dataclass
class _Wait:
    """Not sent now: wait for a block and try again; `answer` if the submit's time runs out first."""

    answer: Submitted


class ChainAdapter:
    """`sign_and_submit` for the DSO's ChainRecorder, callable from a worker thread: signs with a free nonce
    on the loop, waits for inclusion in a final block (see the module docstring)."""

    def __init__(
        self,
        node: Any,
        chain: str,
        loop: asyncio.AbstractEventLoop,
        changed: Any,
        max_in_flight: int = MAX_IN_FLIGHT,
        fill_every_s: float = FILL_EVERY_S,
    ) -> None:
        self.node, self.chain, self.loop, self.changed = node, chain, loop, changed
        self.max_in_flight, self.fill_every_s = max_in_flight, fill_every_s
        self._flights: dict[bytes, dict[int, Tx]] = {}  # per key, by nonce: ours in the pool
        self._keys: dict[bytes, keys.Keypair] = {}  # to fill a gap under the key that left it
        self._filler: asyncio.Task[None] | None = None
        self.filled = 0  # gaps filled
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
        a transaction that no other sender's pending one, nor one of this key's in flight, can make valid
        (the DSO's own `market.reopen`, `market.tariff`, `settle`): the pool's eviction waits two commits
        for that reason (`mempool.STRIKES`)."""
        deadline = time.monotonic() + timeout
        while True:
            sent = self._send(keypair, kind, body, timeout, precheck)
            if isinstance(sent, _Wait):  # the key's bound, or a nonce held: after the next block
                if not await self._next_block(deadline):
                    return sent.answer
                continue
            if isinstance(sent, Submitted):
                return sent
            tx, adopted = sent
            outcome = await self._outcome(tx, deadline)
            if outcome is None:
                return Submitted(False, "timeout", f"{kind} not final in {timeout} s", tx.txid)
            if not outcome.ok:
                self.fill_gaps(keypair.public, tx)
                if adopted:
                    continue  # the one pending since an earlier submit left the pool (e.g. too old): sign anew
            return outcome

    def _send(
        self, keypair: keys.Keypair, kind: str, body: dict[str, Any], timeout: float, precheck: bool
    ) -> Submitted | _Wait | tuple[Tx, bool]:
        """The transaction to wait for and whether it was adopted (already in flight), or why none was sent,
        or what to answer if waiting for a block does not help in time. No await in here: choosing a nonce,
        signing and handing it to the pool is one step on the loop, so two submits never pick one nonce."""
        replica = self.node.replicas[self.chain]
        self._keys[keypair.public] = keypair
        live = self._live(keypair.public)
        wanted = encode(body)
        for flying in live.values():
            if flying.kind == kind and encode(flying.body) == wanted:
                return flying, True  # asked again while it is in flight: never signed again
        if len(live) >= self.max_in_flight:
            self._said.warning("%s: the %s waits: %d transactions of the key in flight", self.chain, kind,
                               len(live))  # fmt: skip
            return _Wait(
                Submitted(False, "timeout", f"{kind} not sent in {timeout} s: {len(live)} in flight")
            )
        nonce = replica.app.next_nonce(keypair.public)
        while nonce in live:
            nonce += 1
        tx = sign_tx(keypair, self.chain, kind, nonce, self.node.clock(), body)
        refused = self.judge(tx, keypair) if precheck else None
        if refused is not None:
            log.warning("%s: the chain refuses the %s: %s", self.chain, kind, refused)
            return Submitted(False, "refused", refused, tx.txid)
        verdict = replica.submit(tx.raw, self.node.clock())
        replica.flush()
        if type(verdict).__name__ == "Rejected":
            if "is pending" not in verdict.reason:
                return Submitted(False, "mempool", verdict.reason)
            # a transaction of this key that this adapter did not send holds the nonce (gossiped back
            # after a restart): it lands or leaves at a block; sign again after that, not now
            self._said.warning("%s: the %s waits: %s", self.chain, kind, verdict.reason)
            return _Wait(Submitted(False, "mempool", verdict.reason))
        self._track(tx)
        return tx, False

    def _live(self, sender: bytes) -> dict[int, Tx]:
        """The key's transactions from this adapter still in the pool (those that landed or left forgotten)."""
        pool = self.node.replicas[self.chain].app.mempool
        flights = self._flights.setdefault(sender, {})
        for nonce in [n for n, tx in flights.items() if tx.txid not in pool]:
            del flights[nonce]
        return flights

    def _track(self, tx: Tx) -> None:
        """`tx` is in flight (the replica it was submitted to gossips it again until it leaves the pool)."""
        self._flights.setdefault(tx.sender, {})[tx.nonce] = tx
        if self._filler is None or self._filler.done():
            self._filler = self.loop.create_task(self._keep_filling())

    async def _outcome(self, tx: Tx, deadline: float) -> Submitted | None:
        """Wait, block by block, until `tx` is in a final block (landed), its nonce was used by another
        transaction, or the pool evicted it (refused, with the reason); None at the deadline."""
        replica = self.node.replicas[self.chain]
        while True:
            if replica.store.locate_tx(tx.txid) is not None:
                return Submitted(True, txid=tx.txid)
            if replica.app.next_nonce(tx.sender) > tx.nonce:
                reason = f"nonce {tx.nonce} was used by another transaction of the key"
                log.warning("%s: the %s did not land: %s", self.chain, tx.kind, reason)
                return Submitted(False, "refused", reason, tx.txid)
            evicted = replica.refusal(tx.txid)  # the pool let it go without it landing: refused for good
            if evicted is not None:
                log.warning("%s: the chain refused the %s: %s", self.chain, tx.kind, evicted)
                return Submitted(False, "refused", evicted, tx.txid)
            if not await self._next_block(deadline):
                return None

    def _gaps(self, sender: bytes) -> list[int]:
        """Nonces below some of the key's transactions in flight that none of ours holds any more."""
        live = self._live(sender)
        if not live:
            return []
        start = self.node.replicas[self.chain].app.next_nonce(sender)
        return [n for n in range(start, max(live)) if n not in live]

    def fill_gaps(self, sender: bytes, refused: Tx | None = None) -> int:
        """Fill each gap below the key's transactions in flight with an `operator_action` (naming `refused`
        where it held that nonce), so that they can land; returns how many were sent. A nonce that a
        transaction this process did not send holds is no gap (the pool says so: nothing is sent)."""
        keypair, replica, sent = self._keys.get(sender), self.node.replicas[self.chain], 0
        for nonce in self._gaps(sender):
            if keypair is None:  # pragma: no cover - a key is remembered before its first send
                return sent
            named = [refused.txid] if refused is not None and refused.nonce == nonce else []
            body = {"operator": FILLER_OPERATOR, "txs": named,
                    "action": f"fills nonce {nonce}: its transaction was refused; later ones wait on it"}  # fmt: skip
            filler = sign_tx(keypair, self.chain, "operator_action", nonce, self.node.clock(), body)
            why = self.judge(filler, keypair)
            if why is not None:
                self._said.warning("%s: nonce %d cannot be filled (%s): the key's later transactions wait "
                                   "for it until they are too old", self.chain, nonce, why)  # fmt: skip
                return sent
            verdict = replica.submit(filler.raw, self.node.clock())
            replica.flush()
            if type(verdict).__name__ == "Rejected":
                continue  # held by a transaction we did not send: no gap in the pool
            self._track(filler)
            self.filled += 1
            sent += 1
            log.warning(
                "%s: nonce %d filled (operator_action): its transaction was refused", self.chain, nonce
            )
        return sent

    async def _keep_filling(self) -> None:
        """While any of our transactions is in flight: fill any gap below them (one whose submit already
        returned, e.g. timed out, and that the pool then refused leaves one nobody else fills)."""
        while True:
            try:
                senders = [s for s in list(self._flights) if self._live(s)]
                if not senders:
                    return
                for sender in senders:
                    self.fill_gaps(sender)
            except Exception:  # it must outlive a bad moment (a replica closing): said, and tried again
                log.exception("%s: filling nonce gaps failed", self.chain)
            await asyncio.sleep(self.fill_every_s)

    async def _next_block(self, deadline: float) -> bool:
        """Wait for the next final block (at most 0.5 s, never past `deadline`); False once it has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await self.changed.wait(min(0.5, left))
        return True

    def judge(self, tx: Tx, keypair: keys.Keypair | None = None) -> str | None:
        """Why the state machine refuses `tx` on the replica's committed state as the next block, now (the
        contract's reason), or None: it would land, or only waiting can cure it (`WAITING_CURES`). With
        `keypair` (its signer's) a `tx` that is not the key's next is judged as if it were (its body, its
        time; a copy signed with the next nonce, never sent): the nonces in flight below it say nothing."""
        app = self.node.replicas[self.chain].app
        nonce = app.next_nonce(tx.sender)
        if keypair is not None and tx.nonce != nonce:
            tx = sign_tx(keypair, self.chain, tx.kind, nonce, tx.time, tx.body)
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
