"""Single-authority sealing mode: a whole chain in one process, for tests, tools and market simulations.

`LocalChain` takes signed transactions (`submit`), applies each at once to a pending view so the caller gets
`Accepted | Rejected` immediately, and `seal`s the accepted ones into a block signed by its sealer key, with
a commit certificate from the sealer and any co-signers (so stores it writes verify like consensus-made ones).
Blocks are kept in memory or, given a `BlockStore`, in LevelDB (one synced batch per block).

Promises: sealing is deterministic given the transactions and block times. Without a clock, block time is
max(previous block time + 1, newest pending transaction time) - a logical clock, good for simulations;
pass `clock` (ms) to use real or simulated time. A pending transaction that is no longer valid at the block's
time (older than `tx_max_age_ms` by then) is left out and listed in `dropped`, never silently lost.
`Signer` tracks a key's nonce so callers need not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .block import Block, Certificate, Header, Tip, commit_vote, fitting, make_certificate, propose
from .codec import DecodeError
from .core import authorities_at
from .genesis import Genesis
from .keys import Keypair
from .keyspace import decode_int, nonce
from .machine import BlockContext, BlockOutcome, apply
from .results import Accepted, Reason, Rejected, Result
from .state import Overlay, StateReader, StateTree
from .store import BlockStore
from .tx import Tx, decode_tx, sign_tx


class Signer:
    """Signs transactions for one key on one chain, numbering nonces 1, 2, 3, ..."""

    def __init__(self, keypair: Keypair, chain: str, last_nonce: int = 0) -> None:
        self.keypair = keypair
        self.chain = chain
        self.last_nonce = last_nonce

    @property
    def public(self) -> bytes:
        return self.keypair.public

    def sign(self, kind: str, body: dict[str, Any], time_ms: int) -> Tx:
        self.last_nonce += 1
        return sign_tx(self.keypair, self.chain, kind, self.last_nonce, time_ms, body)


class LocalChain:
    def __init__(
        self,
        genesis: Genesis,
        sealer: Keypair,
        store: BlockStore | None = None,
        clock: Callable[[], int] | None = None,
        cosigners: Sequence[Keypair] = (),
    ) -> None:
        self.genesis = genesis
        self.sealer = sealer
        self.cosigners = list(cosigners)
        self.store = store
        self.clock = clock
        self._blocks: list[Block] = []  # in-memory mode only
        self._certs: list[Certificate] = []
        self._tx_index: dict[bytes, tuple[int, int]] = {}
        self.dropped: list[tuple[Tx, Rejected]] = []
        """Transactions the last `seal` left out although `submit` had accepted them, with the reason."""
        if store is not None:
            if store.genesis.hash != genesis.hash:
                raise ValueError("store holds another chain's genesis")
            self.state = store.load_state()
            self.tip = store.tip()
        else:
            self.state = genesis.initial_state()
            self.tip = Tip.of_genesis(genesis)
        self._reset_pending()

    @classmethod
    def open(cls, store: BlockStore, sealer: Keypair, **kwargs: Any) -> LocalChain:
        return cls(store.genesis, sealer, store, **kwargs)

    # -- pending transactions
    def _reset_pending(self) -> None:
        self._pending: list[Tx] = []
        self._pending_view = Overlay(self.state)
        self._verified: set[bytes] = set()

    @property
    def height(self) -> int:
        return self.tip.height

    @property
    def pending(self) -> list[Tx]:
        return list(self._pending)

    @property
    def view(self) -> StateReader:
        """State including accepted but not yet sealed transactions."""
        return self._pending_view

    def _next_time(self, at_least: int = 0) -> int:
        if self.clock is not None:
            return max(self.clock(), self.tip.time + 1)
        newest = max((tx.time for tx in self._pending), default=0)
        return max(self.tip.time + 1, newest, at_least)

    def submit(self, tx: Tx | bytes) -> Result:
        """Apply `tx` to the pending state now; accepted ones go into the next sealed block."""
        if isinstance(tx, bytes):
            try:
                tx = decode_tx(tx, self.genesis.params.max_tx_bytes)
            except DecodeError as exc:
                return Rejected(Reason.MALFORMED, str(exc))
        ctx = BlockContext(
            self.genesis, self.tip.height + 1, self._next_time(tx.time), self.sealer.public, self._verified
        )
        result = apply(self._pending_view, tx, ctx)
        if isinstance(result, Accepted):
            self._pending_view.merge(result.writes)
            self._pending.append(tx)
            self._verified.add(tx.raw)
        return result

    def sign_and_submit(
        self, keypair: Keypair, kind: str, body: dict[str, Any], time_ms: int | None = None
    ) -> Result:
        """Sign with the next nonce of `keypair` (from the pending state) and submit; a rejection uses no nonce.
        A transaction signed here is valid by construction, so its signature is not checked again (this halves
        the cost of a simulated market move)."""
        last = decode_int(self._pending_view.get(nonce(keypair.public)))
        when = self._next_time() if time_ms is None else time_ms
        tx = sign_tx(keypair, self.genesis.chain, kind, last + 1, when, body)
        self._verified.add(tx.raw)
        return self.submit(tx)

    def submit_all(self, txs: Iterable[Tx | bytes]) -> list[Result]:
        return [self.submit(tx) for tx in txs]

    # -- sealing
    def seal(self, time_ms: int | None = None) -> tuple[Block, BlockOutcome]:
        """Seal the pending transactions (possibly none) into the next block and commit it. Transactions
        beyond the block limits stay pending for the next block."""
        time_ms = self._next_time() if time_ms is None else max(time_ms, self.tip.time + 1)
        height = self.tip.height + 1
        if self.sealer.public not in authorities_at(self.state, height):
            raise RuntimeError("the sealer key is not an authority at this height")
        included = fitting(self._pending, self.genesis)
        leftover = self._pending[len(included) :]
        block, outcome = propose(
            self.state, self.tip, self.genesis, included, time_ms, self.sealer, verified=self._verified
        )
        # Accepted on submit but refused at the block's time (e.g. too old by then): say so, never silently.
        self.dropped = [
            (tx, r) for tx, r in zip(included, outcome.results, strict=True) if isinstance(r, Rejected)
        ]
        members = set(authorities_at(self.state, height))
        votes = [commit_vote(k, block.header) for k in [self.sealer, *self.cosigners] if k.public in members]
        cert = make_certificate(block.header, votes)
        if self.store is not None:
            self.store.append(block, cert, outcome.writes)
        else:
            self._blocks.append(block)
            self._certs.append(cert)
            for index, tx in enumerate(block.txs):
                self._tx_index[tx.txid] = (height, index)
        self.state.commit(outcome.writes)
        self.tip = Tip.of(block.header)
        self._reset_pending()
        for tx in leftover:
            self.submit(tx)
        return block, outcome

    # -- reading
    def signer(self, keypair: Keypair) -> Signer:
        """A signer for `keypair` whose next nonce follows the pending state."""
        return Signer(keypair, self.genesis.chain, decode_int(self._pending_view.get(nonce(keypair.public))))

    def block(self, height: int) -> Block:
        if self.store is not None:
            return self.store.block(height)
        return self._blocks[height - 1]

    def header(self, height: int) -> Header:
        return self.block(height).header

    def certificate(self, height: int) -> Certificate:
        if self.store is not None:
            return self.store.certificate(height)
        return self._certs[height - 1]

    def locate_tx(self, txid: bytes) -> tuple[int, int] | None:
        if self.store is not None:
            return self.store.locate_tx(txid)
        return self._tx_index.get(txid)

    def committed(self) -> StateTree:
        return self.state
