"""Pending transactions: deduplicated, per-sender nonce order, bounded in count, bytes and sender rate.

Promises: a transaction enters only if the application's `check` accepts it (signature, chain, known sender,
nonce not already used) and it is not a duplicate, within the pool's bounds and its sender's rate; `reap`
returns transactions in each sender's nonce order starting at the sender's next nonce, never skipping a gap,
taking senders round-robin so one busy sender cannot starve the rest. Rejections are typed results.
`recheck` (after every commit) evicts what the chain will never take — a sender's next transaction that the
state machine refuses twice running, or anything too old to land — and keeps the reason (`refusal(tx_id)`),
so a transaction that leaves the pool is either final or refused with a reason, never silently lost, also on
replicas that never propose (observers) and so never discard anything while building a block. A next
transaction the judge calls `Later` (refused at the tip's time, taken once block time reaches its own: its
sender's clock runs ahead of the chain's) takes no strike: it waits until it lands or grows too old, and
its eviction then names why it waited. That wait is bounded by the
transaction's own time: the pool refuses one dated more than `max_ahead_ms` ahead of the driver's clock, so
a flood of future-dated transactions cannot fill it.
Assumes `now_ms` comes from the driver's clock. Must never hold an invalid transaction or grow unbounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .app import ACCEPTED, Accepted, Rejected


@dataclass(frozen=True, slots=True)
class TxMeta:
    """What the pool needs to know of a checked transaction."""

    tx_id: bytes
    sender: bytes
    nonce: int
    time: int | None = None
    """The transaction's own time (ms), if it carries one: the pool bounds how far ahead it may be."""


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    max_txs: int = 20_000
    max_bytes: int = 32 * 1024 * 1024
    max_per_sender: int = 1024
    max_nonce_gap: int = 1024
    rate_per_sender: float = 2000.0
    """Transactions per second a sender may add (a token bucket)."""
    burst_per_sender: int = 2000
    refusals_kept: int = 4096
    """Reasons of evicted transactions remembered for their submitters (oldest forgotten first)."""


@dataclass(frozen=True, slots=True)
class Later:
    """A judge's verdict on a sender's next transaction: the chain refuses it at the tip's time (`reason`),
    and would take it once block time reaches the transaction's own time. It waits: no strike."""

    reason: str


Judge = Callable[[bytes, bool], Rejected | Later | None]
"""judge(tx, is_next) -> why the chain will never take `tx`, `Later` (see there), or None (it may land).
`is_next`: it carries its sender's next nonce (run the state machine on it); otherwise only what waiting
cannot cure (too old) may be said."""

STRIKES = 2
"""Consecutive rechecks that must refuse a sender's next transaction before it is evicted: once is not enough
when another sender's pending transaction, ordered before it in the next block, would make it valid."""


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: int) -> None:
        self.tokens = tokens
        self.at = at


class Mempool:
    def __init__(
        self,
        check: Callable[[bytes], TxMeta | Rejected],
        next_nonce: Callable[[bytes], int],
        limits: MempoolLimits | None = None,
        max_ahead_ms: int | None = None,
    ) -> None:
        """`max_ahead_ms`: how far ahead of `now_ms` a transaction's time may be on entry (None: no bound;
        the chain's own wait for a transaction's time, see `LedgerApp`)."""
        self.check = check
        self.next_nonce = next_nonce
        self.limits = limits or MempoolLimits()
        self.max_ahead_ms = max_ahead_ms
        self._by_sender: dict[bytes, dict[int, tuple[bytes, bytes]]] = {}
        self._ids: set[bytes] = set()
        self._bytes = 0
        self._buckets: dict[bytes, _Bucket] = {}
        self._strikes: dict[bytes, int] = {}
        self._later: dict[bytes, str] = {}  # next transactions that wait for a later block: why
        self._refused: dict[bytes, str] = {}

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._ids

    def add(self, tx: bytes, now_ms: int) -> Accepted | Rejected:
        limits = self.limits
        if len(self._ids) >= limits.max_txs or self._bytes + len(tx) > limits.max_bytes:
            return Rejected("mempool full")
        meta = self.check(tx)
        if isinstance(meta, Rejected):
            return meta
        if meta.tx_id in self._ids:
            return Rejected("duplicate transaction")
        if self.max_ahead_ms is not None and meta.time is not None and meta.time > now_ms + self.max_ahead_ms:
            return Rejected(
                f"time {meta.time} is {meta.time - now_ms} ms ahead of this node's clock: more than the "
                f"{self.max_ahead_ms} ms a transaction may wait in the pool for its time"
            )
        expected = self.next_nonce(meta.sender)
        if meta.nonce < expected:
            return Rejected(f"nonce {meta.nonce} already used (next is {expected})")
        if meta.nonce > expected + limits.max_nonce_gap:
            return Rejected(f"nonce {meta.nonce} too far ahead of {expected}")
        pending = self._by_sender.get(meta.sender)
        if pending is not None:
            if meta.nonce in pending:
                return Rejected(f"another transaction with nonce {meta.nonce} is pending")
            if len(pending) >= limits.max_per_sender:
                return Rejected("too many pending transactions from this sender")
        if not self._take_token(meta.sender, now_ms):
            return Rejected("sender over its rate")
        if pending is None:
            pending = self._by_sender[meta.sender] = {}
        pending[meta.nonce] = (meta.tx_id, tx)
        self._ids.add(meta.tx_id)
        self._bytes += len(tx)
        return ACCEPTED

    def _take_token(self, sender: bytes, now_ms: int) -> bool:
        limits = self.limits
        bucket = self._buckets.get(sender)
        if bucket is None:
            if len(self._buckets) > 4 * limits.max_txs:
                self._buckets.clear()  # forget idle senders rather than grow without bound
            bucket = self._buckets[sender] = _Bucket(float(limits.burst_per_sender), now_ms)
        elapsed = max(0, now_ms - bucket.at)
        bucket.tokens = min(
            float(limits.burst_per_sender), bucket.tokens + elapsed * limits.rate_per_sender / 1000
        )
        bucket.at = now_ms
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def ready(self) -> bool:
        """Some sender's next transaction is here: a proposer has something to put in a block."""
        return any(self.next_nonce(sender) in pending for sender, pending in self._by_sender.items())

    def holds(self, sender: bytes, nonce: int) -> bool:
        """Whether a transaction of `sender` at `nonce` is pending here (the key `add` refuses a second one by)."""
        return nonce in self._by_sender.get(sender, {})

    def raws(self) -> Iterator[bytes]:
        for pending in self._by_sender.values():
            for _tx_id, tx in pending.values():
                yield tx

    def refusal(self, tx_id: bytes) -> str | None:
        """Why the pool evicted `tx_id` (None: never evicted here, or forgotten)."""
        return self._refused.get(tx_id)

    def refuse(self, tx_id: bytes, reason: str) -> None:
        """Remember why a transaction left the pool without landing (for its submitter)."""
        self._refused[tx_id] = reason
        while len(self._refused) > self.limits.refusals_kept:
            del self._refused[next(iter(self._refused))]

    def waiting(self, tx_id: bytes) -> str | None:
        """Why `tx_id` last waited for a later block (a `Later` verdict, kept while it is refused), or None."""
        return self._later.get(tx_id)

    def recheck(self, judge: Judge, everything: bool = True) -> list[tuple[bytes, str]]:
        """After a commit: evict what can never land (see `Judge`, `STRIKES`, `Later`); returns (tx_id,
        reason). Without `everything` only each sender's next transaction is judged (the pool may be large)."""
        evicted: list[tuple[bytes, str]] = []
        strikes: dict[bytes, int] = {}
        later: dict[bytes, str] = {}
        for sender in list(self._by_sender):
            pending = self._by_sender[sender]
            expected = self.next_nonce(sender)
            for nonce in sorted(pending) if everything else [expected] if expected in pending else []:
                tx_id, tx = pending[nonce]
                verdict = judge(tx, nonce == expected)
                if verdict is None:
                    continue
                if isinstance(verdict, Later):
                    later[tx_id] = verdict.reason
                    continue
                waited = self._later.get(tx_id)
                if nonce == expected:
                    strikes[tx_id] = self._strikes.get(tx_id, 0) + 1
                    if strikes[tx_id] < STRIKES:
                        if waited is not None:
                            later[tx_id] = waited
                        continue
                reason = verdict.reason
                if waited is not None:  # its submitter learns what it waited for, not only that time ran out
                    reason = f"{reason}; it waited for a later block: {waited}"
                self._evict(sender, nonce, reason)
                evicted.append((tx_id, reason))
        self._strikes = strikes
        self._later = later  # only next transactions wait, and every pass judges each of them
        return evicted

    def _evict(self, sender: bytes, nonce: int, reason: str) -> None:
        pending = self._by_sender[sender]
        tx_id, tx = pending.pop(nonce)
        self._ids.discard(tx_id)
        self._bytes -= len(tx)
        self.refuse(tx_id, reason)
        if not pending:
            del self._by_sender[sender]

    def reap(self, max_txs: int, max_bytes: int) -> list[bytes]:
        """Up to `max_txs` transactions (about `max_bytes`), each sender's in nonce order without gaps."""
        runs: list[list[bytes]] = []
        for sender, pending in self._by_sender.items():
            nonce = self.next_nonce(sender)
            run: list[bytes] = []
            while nonce in pending and len(run) < max_txs:
                run.append(pending[nonce][1])
                nonce += 1
            if run:
                runs.append(run)
        out: list[bytes] = []
        size = 0
        depth = 0
        while runs and len(out) < max_txs:
            still = []
            for run in runs:
                if depth < len(run):
                    tx = run[depth]
                    if size + len(tx) > max_bytes or len(out) >= max_txs:
                        return out
                    out.append(tx)
                    size += len(tx)
                    still.append(run)
            runs = still
            depth += 1
        return out

    def remove(self, senders: Iterable[bytes] | None = None) -> int:
        """Drop transactions whose nonce is now used (after a commit); returns how many went."""
        dropped = 0
        for sender in list(self._by_sender if senders is None else senders):
            pending = self._by_sender.get(sender)
            if not pending:
                continue
            expected = self.next_nonce(sender)
            for nonce in [n for n in pending if n < expected]:
                tx_id, tx = pending.pop(nonce)
                self._ids.discard(tx_id)
                self._bytes -= len(tx)
                dropped += 1
            if not pending:
                del self._by_sender[sender]
        return dropped

    def discard(self, sender: bytes, nonce: int, reason: str = "refused when building a block") -> None:
        """Drop one transaction the application found invalid when building a block."""
        pending = self._by_sender.get(sender)
        if pending and nonce in pending:
            self._evict(sender, nonce, reason)
