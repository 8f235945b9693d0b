"""A small deterministic chain that the simulation runs consensus over (an `Application`).

Promises: blocks carry signed transactions of three kinds — payments (nonce order per sender), governance
(the admin adds or removes an authority, effective from the next height) and equivocation evidence — a
transaction root and a state root chained over history, and the proposer's signature; `validate` re-executes a
block before any vote, and `verify_chain` re-checks a whole store from genesis (links, roots, signatures,
certificates against the authorities of each height). Stores survive simulated crashes; state is rebuilt
from them. Replicas of one simulation may share a `SimMemo`: the parse of a transaction and the inspection and
decoding of a block are pure functions of their bytes (and of the genesis and `verify`, which the replicas
share), so each is computed once per simulation instead of once per replica. Signatures use the injected `sign`/`verify` pair: the simulation's cheap stand-in for Ed25519 or
real Ed25519 (`keys`). Pure; no I/O. The chain's keys, genesis, store and `make_tx` are `sim_chain`'s, re-exported
here as importers knew them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import codec, hashing, merkle
from ..codec import DecodeError
from .app import ACCEPTED, Accepted, BlockInfo, BlockRef, Rejected, Signer, VerifyFn
from .mempool import Mempool, MempoolLimits, TxMeta
from .messages import Certificate, MessageError, decode_evidence, evidence_ok, verify_certificate
from .sim_chain import SimGenesis, SimKey, SimKeys, SimStore, make_tx

MAX_BLOCK_BYTES = 1024 * 1024
MAX_BLOCK_TXS = 200
PAY, GOV, EVIDENCE = "pay", "gov", "evidence"
OUT_OF_ORDER = "out-of-order nonce"


@dataclass
class SimMemo:
    """Checks of bytes that every replica of one simulation would repeat, remembered once for all of them.

    Sound only among apps with the same genesis and `verify` (every replica of one `Simulation`). The values
    are never mutated by their readers. Bounded by `capacity` per table (emptied when full), so a long soak
    keeps a steady footprint. `executed` is keyed by (head hash, block): an app's state is a function of its
    chain, which its head's hash names (each header binds its parent and its transaction root)."""

    capacity: int = 65_536
    txs: dict[bytes, tuple[TxMeta, str, object] | Rejected] = field(default_factory=dict)
    infos: dict[bytes, BlockInfo | Rejected] = field(default_factory=dict)
    bodies: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    executed: dict[tuple[bytes, bytes], tuple[_State, list[bytes]]] = field(default_factory=dict)


@dataclass
class _State:
    nonces: dict[bytes, int]
    validators: tuple[bytes, ...]
    root: bytes
    history: list[tuple[int, tuple[bytes, ...]]]  # (from height, authorities)

    def copy(self) -> _State:
        return _State(dict(self.nonces), self.validators, self.root, list(self.history))


class SimApp:
    def __init__(
        self,
        genesis: SimGenesis,
        store: SimStore,
        signer: Signer | None,
        verify: VerifyFn,
        limits: MempoolLimits | None = None,
        memo: SimMemo | None = None,
    ) -> None:
        self.genesis = genesis
        self.store = store
        self.signer = signer
        self.verify = verify
        self.mempool = Mempool(self.check_tx, lambda s: self._state.nonces.get(s, 0), limits)
        memo = SimMemo(4096) if memo is None else memo
        self._memo_capacity = memo.capacity
        self._infos, self._txs, self._bodies = memo.infos, memo.txs, memo.bodies
        self._executed = memo.executed
        self._state = _State({}, genesis.validators, genesis.block_hash, [(1, genesis.validators)])
        self._head = BlockRef(0, genesis.block_hash, genesis.time_ms)
        for block in store.blocks:  # rebuild state from the store
            info = self.inspect(block)
            assert isinstance(info, BlockInfo), "own store holds an unreadable block"
            self._state = self._execute(block, info.height)[0]
            self._head = BlockRef(info.height, info.block_hash, info.timestamp_ms)

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def head(self) -> BlockRef:
        return self._head

    def validators(self, height: int) -> Sequence[bytes]:
        chosen = self.genesis.validators
        for start, authorities in self._state.history:
            if start <= height:
                chosen = authorities
        return chosen

    # --------------------------------------------------------------------------------------- transactions

    def pending(self) -> bool:
        return self.mempool.ready()

    def _judge(self, tx: bytes, is_next: bool) -> Rejected | None:
        """`Mempool.recheck`'s judge: would the next block refuse it for good (not for its nonce)?"""
        if not is_next:
            return None
        verdict = self._apply_tx(self._state.copy(), tx, self._head.height + 1)
        if isinstance(verdict, Rejected) and verdict.reason != OUT_OF_ORDER:
            return verdict
        return None

    def check_tx(self, tx: bytes) -> TxMeta | Rejected:
        parsed = self._parse_tx(tx)
        return parsed if isinstance(parsed, Rejected) else parsed[0]

    def _parse_tx(self, tx: bytes) -> tuple[TxMeta, str, object] | Rejected:
        """The checked transaction with its kind and body (memoised: every replica sees each tx often)."""
        known = self._txs.get(tx)
        if known is not None:
            return known
        result = self._parse_tx_uncached(tx)
        if len(self._txs) > self._memo_capacity:
            self._txs.clear()
        self._txs[tx] = result
        return result

    def _parse_tx_uncached(self, tx: bytes) -> tuple[TxMeta, str, object] | Rejected:
        try:
            items = codec.expect_list(codec.decode(tx, 8192), "tx", 5)
            if len(items) != 5:
                raise DecodeError("tx: expected 5 fields")
            kind = codec.expect_str(items[0], "tx kind", 16)
            sender = codec.expect_bytes(items[1], "sender", 32)
            nonce = codec.expect_int(items[2], "nonce")
            signature = codec.expect_bytes(items[4], "signature", 64)
        except DecodeError as exc:
            return Rejected(f"malformed transaction: {exc}")
        if kind not in (PAY, GOV, EVIDENCE):
            return Rejected(f"unknown transaction kind {kind!r}")
        if sender not in self.genesis.accounts and sender != self.genesis.admin:
            return Rejected("unknown sender")
        message = hashing.digest(hashing.TX, self.chain_id, codec.encode(items[:4]))
        if not self.verify(sender, message, signature):
            return Rejected("bad signature")
        return TxMeta(hashlib.sha256(tx).digest(), sender, nonce), kind, items[3]

    def _apply_tx(self, state: _State, tx: bytes, height: int) -> Accepted | Rejected:
        parsed = self._parse_tx(tx)
        if isinstance(parsed, Rejected):
            return parsed
        meta, kind, body = parsed
        if meta.nonce != state.nonces.get(meta.sender, 0):
            return Rejected(OUT_OF_ORDER)
        if kind == GOV:
            if meta.sender != self.genesis.admin or type(body) is not list or len(body) != 2:
                return Rejected("governance needs the admin and [op, key]")
            op, key = body
            current = list(state.validators)
            if op == "add" and type(key) is bytes and len(key) == 32 and key not in current:
                current.append(key)
            elif op == "remove" and key in current and len(current) > 1:
                current.remove(key)
            else:
                return Rejected("governance op does not apply")
            state.validators = tuple(current)
            state.history.append((height + 1, state.validators))
        elif kind == EVIDENCE:
            try:
                evidence = decode_evidence(body if type(body) is bytes else b"")
            except MessageError as exc:
                return Rejected(f"bad evidence: {exc}")
            if not evidence_ok(self.chain_id, evidence, self.verify):
                return Rejected("evidence does not prove equivocation")
        state.nonces[meta.sender] = meta.nonce + 1
        return ACCEPTED

    # --------------------------------------------------------------------------------------- blocks

    def _header_hash(
        self, h: int, parent: bytes, ts: int, proposer: bytes, tx_root: bytes, root: bytes, round_: int
    ) -> bytes:
        return hashing.digest(
            hashing.HEADER, self.chain_id, codec.encode([h, parent, ts, proposer, tx_root, root, round_])
        )

    def _body(self, block: bytes) -> dict[str, Any]:
        value = self._bodies.get(block)
        if value is None:
            if len(self._bodies) > self._memo_capacity:
                self._bodies.clear()
            value = self._bodies[block] = codec.decode(block)
        return value

    def _execute(self, block: bytes, height: int) -> tuple[_State, list[bytes]]:
        """The state after `block` on ours (never mutated afterwards: every change works on a copy)."""
        key = (self._head.block_hash, block)
        known = self._executed.get(key)
        if known is not None:
            return known
        value = self._body(block)
        state = self._state.copy()
        for tx in value["txs"]:
            if isinstance(self._apply_tx(state, tx, height), Rejected):
                raise ValueError("block holds an invalid transaction")
        state.root = hashing.digest(
            hashing.STATE, self.chain_id, codec.encode([state.root, value["tr"], list(state.validators)])
        )
        if len(self._executed) > self._memo_capacity:
            self._executed.clear()
        self._executed[key] = (state, value["txs"])
        return state, value["txs"]

    def build_block(
        self, height: int, round_: int, timestamp_ms: int, proposer: bytes, txs: list[bytes] | None = None
    ) -> bytes:
        state = self._state.copy()
        chosen = []
        for tx in self.mempool.reap(MAX_BLOCK_TXS, MAX_BLOCK_BYTES // 2) if txs is None else txs:
            if isinstance(self._apply_tx(state, tx, height), Rejected) and txs is None:
                meta = self.check_tx(tx)
                if isinstance(meta, TxMeta):
                    self.mempool.discard(meta.sender, meta.nonce, "refused when building a block")
                continue
            chosen.append(tx)
        tx_root = merkle.root(chosen)
        root = hashing.digest(
            hashing.STATE, self.chain_id, codec.encode([self._state.root, tx_root, list(state.validators)])
        )
        return self.seal(height, self._head.block_hash, timestamp_ms, proposer, chosen, tx_root, root, round_)

    def seal(
        self,
        h: int,
        parent: bytes,
        ts: int,
        proposer: bytes,
        txs: list[bytes],
        tx_root: bytes,
        root: bytes,
        round_: int = 0,
    ) -> bytes:
        assert self.signer is not None, "an observer does not build blocks"
        block_hash = self._header_hash(h, parent, ts, proposer, tx_root, root, round_)
        body = {
            "h": h,
            "p": parent,
            "t": ts,
            "x": proposer,
            "txs": txs,
            "tr": tx_root,
            "sr": root,
            "r": round_,
        }
        return codec.encode({**body, "sig": self.signer.sign(block_hash)})

    def inspect(self, block: bytes) -> BlockInfo | Rejected:
        known = self._infos.get(block)
        if known is not None:
            return known
        try:
            value = codec.expect_map(
                codec.decode(block, MAX_BLOCK_BYTES),
                "block",
                ["h", "p", "t", "x", "txs", "tr", "sr", "r", "sig"],
            )
            h = codec.expect_int(value["h"], "height", 1)
            parent = codec.expect_bytes(value["p"], "parent", 32)
            ts = codec.expect_int(value["t"], "timestamp")
            proposer = codec.expect_bytes(value["x"], "proposer", 32)
            txs = codec.expect_list(value["txs"], "txs", MAX_BLOCK_TXS)
            tx_root = codec.expect_bytes(value["tr"], "tx root", 32)
            root = codec.expect_bytes(value["sr"], "state root", 32)
            signature = codec.expect_bytes(value["sig"], "signature", 64)
            round_ = codec.expect_int(value["r"], "round")
            if any(type(tx) is not bytes for tx in txs) or merkle.root(txs) != tx_root:
                raise DecodeError("transaction root does not match")
            block_hash = self._header_hash(h, parent, ts, proposer, tx_root, root, round_)
            if not self.verify(proposer, block_hash, signature):
                raise DecodeError("bad proposer signature")
            result: BlockInfo | Rejected = BlockInfo(h, parent, ts, proposer, block_hash, round_)
        except DecodeError as exc:
            result = Rejected(str(exc))
        if len(self._infos) > self._memo_capacity:
            self._infos.clear()
        self._infos[block] = result
        return result

    def validate(self, block: bytes) -> Accepted | Rejected:
        info = self.inspect(block)
        if isinstance(info, Rejected):
            return info
        if info.height != self._head.height + 1 or info.parent_hash != self._head.block_hash:
            return Rejected("does not extend the head")
        try:
            state, _ = self._execute(block, info.height)
        except ValueError as exc:
            return Rejected(str(exc))
        if state.root != self._body(block)["sr"]:
            return Rejected("state root does not match")
        return ACCEPTED

    def commit(self, block: bytes, certificate: Certificate) -> None:
        info = self.inspect(block)
        assert isinstance(info, BlockInfo)
        self._state, txs = self._execute(block, info.height)  # validate's run, remembered
        self.store.blocks.append(block)
        self.store.certificates.append(certificate)
        self._head = BlockRef(info.height, info.block_hash, info.timestamp_ms)
        self.mempool.remove(
            {parsed[0].sender for tx in txs if not isinstance(parsed := self._parse_tx(tx), Rejected)}
        )
        self.mempool.recheck(self._judge, everything=False)

    def committed(self, height: int) -> tuple[bytes, Certificate] | None:
        if 1 <= height <= len(self.store.blocks):
            return self.store.blocks[height - 1], self.store.certificates[height - 1]
        return None


def verify_chain(
    genesis: SimGenesis, store: SimStore, verify: VerifyFn, memo: SimMemo | None = None
) -> str | None:
    """Re-execute a store from genesis; None when every block verifies, else what failed first. `memo` may be
    shared by the checks of several stores, never with the replicas being checked."""
    replica = SimApp(genesis, SimStore(), None, verify, memo=memo)
    for height, (block, certificate) in enumerate(
        zip(store.blocks, store.certificates, strict=True), start=1
    ):
        info = replica.inspect(block)
        if isinstance(info, Rejected):
            return f"height {height}: {info.reason}"
        verdict = replica.validate(block)
        if isinstance(verdict, Rejected):
            return f"height {height}: {verdict.reason}"
        if not verify_certificate(
            genesis.chain_id, height, info.block_hash, certificate, replica.validators(height), verify
        ):
            return f"height {height}: commit certificate does not verify"
        replica.commit(block, certificate)
    return None


SignFn = Callable[[bytes], bytes]

__all__ = [  # SimKeys, SimKey, SimGenesis, SimStore and make_tx moved to sim_chain; importers of sim_app still find them
    "EVIDENCE",
    "GOV",
    "MAX_BLOCK_BYTES",
    "MAX_BLOCK_TXS",
    "OUT_OF_ORDER",
    "PAY",
    "SignFn",
    "SimApp",
    "SimGenesis",
    "SimKey",
    "SimKeys",
    "SimMemo",
    "SimStore",
    "make_tx",
    "verify_chain",
]
