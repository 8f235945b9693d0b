"""Pending transactions: deduplicated, per-sender nonce order, bounded in count, bytes and sender rate.

Promises: a transaction enters only if the application's `check` accepts it (signature, chain, known sender,
nonce not already used) and it is not a duplicate, within the pool's bounds and its sender's rate; `reap`
returns transactions in each sender's nonce order starting at the sender's next nonce, never skipping a gap,
taking senders round-robin so one busy sender cannot starve the rest. Rejections are typed results.
Assumes `now_ms` comes from the driver's clock. Must never hold an invalid transaction or grow unbounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .app import ACCEPTED, Accepted, Rejected


@dataclass(frozen=True, slots=True)
class TxMeta:
    """What the pool needs to know of a checked transaction."""

    tx_id: bytes
    sender: bytes
    nonce: int


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    max_txs: int = 20_000
    max_bytes: int = 32 * 1024 * 1024
    max_per_sender: int = 1024
    max_nonce_gap: int = 1024
    rate_per_sender: float = 2000.0
    """Transactions per second a sender may add (a token bucket)."""
    burst_per_sender: int = 2000


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
    ) -> None:
        self.check = check
        self.next_nonce = next_nonce
        self.limits = limits or MempoolLimits()
        self._by_sender: dict[bytes, dict[int, tuple[bytes, bytes]]] = {}
        self._ids: set[bytes] = set()
        self._bytes = 0
        self._buckets: dict[bytes, _Bucket] = {}

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

    def discard(self, sender: bytes, nonce: int) -> None:
        """Drop one transaction the application found invalid when building a block."""
        pending = self._by_sender.get(sender)
        if pending and nonce in pending:
            tx_id, tx = pending.pop(nonce)
            self._ids.discard(tx_id)
            self._bytes -= len(tx)
            if not pending:
                del self._by_sender[sender]
