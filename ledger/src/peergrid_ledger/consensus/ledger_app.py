"""The ledger's blocks, state machine and LevelDB store as a consensus `Application`.

Promises: blocks are built with `block.propose` from the mempool and checked with `block.validate_block`
(every transaction, the state root, the proposer's seal, the authority set of that height); a final block is
appended with its commit certificate in the store's one synced batch, so `peergrid-ledger verify --db` accepts
the store. A transaction's signature is checked once, when it enters the mempool, and never again by this
replica (the state machine's `verified` cache). Mempool entry runs the checks that do not depend on the next
block (decoding, chain, known and unrevoked sender, signature, nonce not used); the rest happen when a block is
built. After each commit the pool is rechecked against the new state (`Mempool.recheck`): a transaction the
state machine refuses (twice running) or that grew too old leaves every replica's pool with its reason, which
`refusal(txid)` gives its submitter. A transaction is judged no earlier than its own time: one the state
machine refuses at the tip's time but takes at block time max(tip + 1, tx.time) — sent by a node whose clock
runs ahead of the proposer's as its round or window opened by that clock, or dated ahead of the chain — is
neither a strike nor discarded when a block is built: it waits (`Later`) until it lands or is too old.
One refused at its own time too (true duplicates, spent nonces, bad signatures, rule violations, a window
not open yet by the sender's own clock) goes as before. The proposer judges so only a refused transaction that
carries its sender's next nonce (`refused_in_time` runs on the committed state); one refused behind its
sender's own earlier transactions in the block is left to the recheck after the block commits, which judges
it on the state they made (on the committed state alone it was a nonce gap, discarded with that reason also
when it only waited for its time). A body holding more array items and map entries than any kind's shape allows, or a received batch's
transactions holding more than their budget together, are refused by the pool's decode before they are built
(`decode_received`). The pool takes no transaction dated more than
`tx_max_future_ms + tx_max_age_ms` ahead of the node's clock, so a flood of future-dated ones cannot fill it.
The authority set of height h is read from the state after h − 1 (`core.authorities_at`). A block's seal
is checked with the `verify` this app is given: `ChainReplica` gives it the engine's signature cache, so a
seal the engine checked as the proposal's vote (the same signed triple) costs no second Ed25519 check, and a
forged seal, never remembered, is still refused.
Assumes one process owns the store. Must never commit a block `validate` did not accept.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import codec, keys
from .. import keyspace as ks
from ..block import Block, Header, InvalidBlock, Tip, propose, validate_block
from ..block import Certificate as LedgerCertificate
from ..codec import DecodeError, item_budget
from ..core import authorities_at, is_revoked
from ..keys import Keypair
from ..machine import BlockContext, BlockOutcome, apply, kinds
from ..results import Accepted as LedgerAccepted
from ..results import Reason
from ..results import Rejected as LedgerRejected
from ..schema import max_items
from ..store import BlockStore
from ..tx import Tx, decode_tx
from .app import ACCEPTED, Accepted, BlockInfo, BlockRef, Rejected, VerifyFn
from .mempool import Later, Mempool, MempoolLimits, TxMeta
from .messages import Certificate, Evidence, vote_block_field

CACHE = 64
REVOKED_SENDER = "sender revoked"
MAX_VERIFIED = 200_000
"""The most transactions whose signature checks are remembered: those of the pool and of blocks not final yet
(a committed block's are forgotten at its commit); the bound is for what never commits (refused, evicted)."""
WAITING_CURES = (Reason.NONCE_GAP.value,)
"""Refusals that a later block may not repeat whatever its time: an earlier nonce still to land."""


class LedgerApp:
    def __init__(
        self,
        store: BlockStore,
        keypair: Keypair | None,
        limits: MempoolLimits | None = None,
        verify: VerifyFn = keys.verify,
    ) -> None:
        self.store = store
        self.genesis = store.genesis
        self.params = store.genesis.params
        self.keypair = keypair
        self.verify = verify
        """Checks block seals (`validate_block`): the node's signature cache, shared with its engine."""
        self.state = store.load_state()
        self.tip = store.tip()
        self.mempool = Mempool(
            self.check_tx,
            self.next_nonce,
            limits,
            max_ahead_ms=self.params.tx_max_future_ms + self.params.tx_max_age_ms,
        )
        self.body_items = max(max_items(spec.shape) for spec in kinds().values())
        """No valid transaction body holds more array items and map entries (4,042 today)."""
        self.intake: list[int] | None = None
        """While a received batch is taken in (`ChainReplica.receive`): the items its transactions may still
        hold together (`codec.item_budget`)."""
        self._txs: dict[bytes, Tx] = {}  # decoded pending transactions by wire bytes
        self._verified: set[bytes] = set()
        self._blocks: dict[bytes, Block] = {}
        self._outcomes: dict[bytes, BlockOutcome] = {}
        self._authorities: tuple[int, list[bytes]] | None = None
        self.committed_txs = 0
        self.evicted = 0
        self._aged_at = 0

    @property
    def chain_id(self) -> str:
        return self.genesis.chain

    def head(self) -> BlockRef:
        return BlockRef(self.tip.height, self.tip.hash, self.tip.time)

    def validators(self, height: int) -> Sequence[bytes]:
        if self._authorities is None or self._authorities[0] != height:
            self._authorities = (height, authorities_at(self.state, height))
        return self._authorities[1]

    # --------------------------------------------------------------------------------------- mempool

    def next_nonce(self, sender: bytes) -> int:
        return ks.decode_int(self.state.get(ks.nonce(sender))) + 1

    def check_tx(self, raw: bytes) -> TxMeta | Rejected:
        try:
            tx = self.decode_received(raw)
        except DecodeError as exc:
            return Rejected(f"malformed transaction: {exc}")
        if tx.chain != self.chain_id:
            return Rejected(f"transaction for chain {tx.chain!r}")
        if self.state.get(ks.account(tx.sender)) is None:
            return Rejected("unknown sender")
        if is_revoked(self.state, tx.sender):
            return Rejected(REVOKED_SENDER)
        if raw not in self._verified:
            if not tx.signature_ok():
                return Rejected("bad signature")
            if len(self._verified) > MAX_VERIFIED:
                self._verified.clear()
            self._verified.add(raw)
        if tx.nonce < self.next_nonce(tx.sender):
            return Rejected(f"nonce {tx.nonce} already used")
        self._txs[raw] = tx
        return TxMeta(tx.txid, tx.sender, tx.nonce, tx.time)

    def decode_received(self, raw: bytes) -> Tx:
        """`raw` decoded within the item bounds: any valid body's (`body_items`) and, while a received batch
        is taken in, what is left of its budget (`intake`). So neither one transaction of one-byte items nor
        a batch of thousands of them is built whole (8 MiB from one member cost 10-14 s: review21 F1, S1);
        `DecodeError` otherwise."""
        intake = self.intake
        left = self.body_items if intake is None else min(self.body_items, intake[0])
        room = item_budget(left)
        try:
            return decode_tx(raw, self.params.max_tx_bytes, room)
        finally:
            if intake is not None:
                intake[0] -= left - room[0]

    def pending(self) -> bool:
        """Something to propose: some sender's next transaction is in the pool."""
        return self.mempool.ready()

    def refusal(self, txid: bytes) -> str | None:
        """Why this replica's pool evicted `txid` without it landing (None: it did not, or forgot)."""
        return self.mempool.refusal(txid)

    def _judge(self, raw: bytes, is_next: bool) -> Rejected | Later | None:
        """`Mempool.recheck`'s judge: the state machine on the committed state, as the next block would,
        and, if it refuses, once block time reaches the transaction's own time (`refused_in_time`)."""
        tx = self._txs.get(raw) or self._decode(raw)
        if tx is None:  # pragma: no cover - it entered the pool decoded
            return Rejected("malformed transaction")
        if tx.time < self.tip.time - self.params.tx_max_age_ms:
            return Rejected(f"{Reason.TIME_OUT_OF_BOUNDS.value}: too old to land (time {tx.time})")
        if not is_next:
            return None
        ctx = BlockContext(self.genesis, self.tip.height + 1, self.tip.time, b"", self._verified)
        result = apply(self.state, tx, ctx)
        if not isinstance(result, LedgerRejected) or result.reason.value in WAITING_CURES:
            return None
        later = self.refused_in_time(tx)
        if later is None:
            return Later(f"{result.reason.value}: {result.detail}")
        return Rejected(f"{later.reason.value}: {later.detail}")

    def refused_in_time(self, tx: Tx) -> LedgerRejected | None:
        """None if a block after the tip would take `tx` once block time reaches the transaction's own time
        (at block time max(tip + 1, tx.time)), else why that block refuses it. A transaction is judged no
        earlier than its own time: one from a node whose clock runs ahead of the proposer's (an accept sent
        as its round opens by that clock, a settle once its interval ended by it) waits for the chain's
        clock instead of being refused as not open yet; one its sender sent before its own clock said so
        is refused as before (the edge's agents count on that refusal to move on to their next nonce)."""
        when = max(self.tip.time + 1, tx.time)
        ctx = BlockContext(self.genesis, self.tip.height + 1, when, b"", self._verified)
        result = apply(self.state, tx, ctx)
        return None if isinstance(result, LedgerAccepted) else result

    def known_sender(self, key: bytes) -> bool:
        return self.state.get(ks.account(key)) is not None

    def revoked(self, key: bytes) -> bool:
        """Revoked by `gov.revoke` in a committed block: nothing it signs is taken any more."""
        return is_revoked(self.state, key)

    # --------------------------------------------------------------------------------------- blocks

    def build_block(self, height: int, round_: int, timestamp_ms: int, proposer: bytes) -> bytes:
        assert self.keypair is not None and self.keypair.public == proposer, "only our own key proposes"
        raws = self.mempool.reap(self.params.max_block_txs, self.params.max_block_bytes)
        txs = [tx for raw in raws if (tx := self._txs.get(raw) or self._decode(raw)) is not None]
        block, outcome = propose(
            self.state, self.tip, self.genesis, txs, timestamp_ms, self.keypair, round_, self._verified
        )
        for tx, result in zip(txs, outcome.results, strict=False):
            if not isinstance(result, LedgerRejected) or result.reason.value in WAITING_CURES:
                continue
            if tx.nonce != self.next_nonce(tx.sender):
                continue  # behind its sender's own earlier ones in this block: the recheck judges it after them
            never = self.refused_in_time(tx)  # None: taken once block time reaches its time: it waits
            if never is not None:
                self.mempool.discard(tx.sender, tx.nonce, f"{never.reason.value}: {never.detail}")
        raw = block.encode()
        self._remember(raw, block, outcome)
        return raw

    def _decode(self, raw: bytes) -> Tx | None:
        try:
            return decode_tx(raw, self.params.max_tx_bytes)
        except DecodeError:
            return None

    def _remember(self, raw: bytes, block: Block, outcome: BlockOutcome | None) -> None:
        if len(self._blocks) > CACHE:
            self._blocks.clear()
            self._outcomes.clear()
        self._blocks[raw] = block
        if outcome is not None:
            self._outcomes[block.hash] = outcome

    def _block(self, raw: bytes) -> Block | Rejected:
        block = self._blocks.get(raw)
        if block is None:
            try:
                block = self._decode_block(raw)
            except DecodeError as exc:
                return Rejected(f"malformed block: {exc}")
            self._remember(raw, block, None)
        return block

    def _decode_block(self, raw: bytes) -> Block:
        """`block.decode_block`, reusing the transactions this replica already decoded from gossip."""
        outer = codec.expect_list(codec.decode(raw, self.params.max_block_bytes + 64 * 1024), "block", 3)
        if len(outer) != 3:
            raise DecodeError("block: expected [header, seal, txs]")
        header = Header.decode(codec.expect_bytes(outer[0], "header"))
        seal = codec.expect_bytes(outer[1], "seal", 64)
        txs = []
        for item in codec.expect_list(outer[2], "block body", self.params.max_block_txs):
            tx_raw = codec.expect_bytes(item, "transaction")
            txs.append(self._txs.get(tx_raw) or decode_tx(tx_raw, self.params.max_tx_bytes))
        return Block(header, seal, tuple(txs))

    def inspect(self, raw: bytes) -> BlockInfo | Rejected:
        block = self._block(raw)
        if isinstance(block, Rejected):
            return block
        h = block.header
        if h.chain != self.chain_id:
            return Rejected(f"block for chain {h.chain!r}")
        return BlockInfo(h.height, h.prev, h.time, h.proposer, block.hash, h.round)

    def validate(self, raw: bytes) -> Accepted | Rejected:
        block = self._block(raw)
        if isinstance(block, Rejected):
            return block
        if block.hash in self._outcomes and block.header.prev == self.tip.hash:
            return ACCEPTED
        try:
            outcome = validate_block(
                self.state, self.tip, self.genesis, block, None, self._verified, self.verify
            )
        except InvalidBlock as exc:
            return Rejected(exc.reason)
        self._outcomes[block.hash] = outcome
        return ACCEPTED

    def commit(self, raw: bytes, certificate: Certificate) -> None:
        block = self._block(raw)
        assert not isinstance(block, Rejected), "the engine commits only blocks it inspected"
        outcome = self._outcomes.get(block.hash)
        if outcome is None or block.header.prev != self.tip.hash:
            outcome = validate_block(
                self.state, self.tip, self.genesis, block, None, self._verified, self.verify
            )
        cert = LedgerCertificate(block.height, certificate.round, block.hash, certificate.seals)
        self.store.append(block, cert, outcome.writes)
        self.state.commit(outcome.writes)
        self.tip = Tip.of(block.header)
        self.committed_txs += len(block.txs)
        self._authorities = None
        self._blocks.clear()
        self._outcomes.clear()
        for tx in block.txs:
            self._txs.pop(tx.raw, None)
            # final now: no block to come holds it again, so its checked signature is never asked for again (P6:
            # kept until MAX_VERIFIED, up to ~60 MB: 200,000 x ~310 B, raw and set slot)
            self._verified.discard(tx.raw)
        self.mempool.remove({tx.sender for tx in block.txs})
        everything = self.tip.time >= self._aged_at  # the age of every pending tx, now and then
        if everything:
            self._aged_at = self.tip.time + min(10_000, self.params.tx_max_age_ms // 4)
        self.evicted += len(self.mempool.recheck(self._judge, everything))
        if len(self._txs) > 2 * len(self.mempool) + 1024:  # decoded txs the pool refused or evicted
            self._txs = {raw: k for raw in self.mempool.raws() if (k := self._txs.get(raw)) is not None}

    def committed(self, height: int) -> tuple[bytes, Certificate] | None:
        if not 1 <= height <= self.tip.height:
            return None
        cert = self.store.certificate(height)
        return self.store.block(height).encode(), Certificate(cert.round, cert.votes)

    # --------------------------------------------------------------------------------------- evidence

    def evidence_body(self, evidence: Evidence) -> dict[str, object]:
        """The ledger's `evidence` transaction body for an equivocation the engine found."""
        first, second = evidence.first, evidence.second
        return {
            "signer": first.author,
            "height": first.height,
            "round": first.round,
            "step": first.kind,
            "first": {"block": vote_block_field(first), "sig": first.signature},
            "second": {"block": vote_block_field(second), "sig": second.signature},
        }
