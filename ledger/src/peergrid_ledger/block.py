"""Blocks: header, seal, body, commit certificate; proposing and validating them.

Header (canonical map): chain, height, prev (hash of the previous header, or the genesis hash at height 1),
proposer, round, state_root, time (ms), tx_root (RFC 6962 root over the transactions' wire bytes), version.
The block hash is `digest("header", chain, header_bytes)`. The proposer seals it by signing
`vote_digest(chain, height, round, "propose", hash)`; finality is a `Certificate` of "commit" votes from more
than two thirds of the authorities for that height, stored beside the block (the single-authority sealing
mode is the case n = 1). Consensus adds its own messages but signs only `vote_digest`s.

Promises: `validate_block` accepts a block only if every check holds (chain, height, link, time bounds,
proposer in the authority set, seal, size limits, tx root, every transaction accepted in order, state
root) and raises `InvalidBlock` naming the height and the first failed check otherwise. Pure; no I/O; the
validator's clock comes in as `now_ms`, and the seal is checked with the `verify` it is given (a replica passes
its signature cache, which answers as `keys.verify` does but checks a seal its engine already checked as the
proposal's vote only once; every other caller the plain `keys.verify`).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from . import keys, merkle
from .codec import DecodeError, decode, encode, expect_bytes, expect_int, expect_list, expect_map, expect_str
from .core import authorities_at
from .genesis import Genesis
from .hashing import HEADER, digest
from .keys import Keypair
from .machine import BlockContext, BlockOutcome, InvalidTransaction, execute
from .state import StateTree
from .tx import Tx, decode_tx
from .votes import COMMIT, PROPOSE, Verify, vote_digest, vote_ok

HEADER_VERSION = 1
HEADER_FIELDS = ("chain", "height", "prev", "proposer", "round", "state_root", "time", "tx_root", "version")


class InvalidBlock(Exception):
    """A block (or certificate) that fails validation; `height` names where."""

    def __init__(self, height: int, reason: str) -> None:
        super().__init__(f"height {height}: {reason}")
        self.height = height
        self.reason = reason


@dataclass(frozen=True)
class Header:
    chain: str
    height: int
    prev: bytes
    time: int
    proposer: bytes
    tx_root: bytes
    state_root: bytes
    round: int = 0
    version: int = HEADER_VERSION

    def to_value(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in HEADER_FIELDS}

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        return encode(self.to_value())

    @cached_property
    def hash(self) -> bytes:
        return digest(HEADER, self.chain, self._encoded)

    @staticmethod
    def decode(raw: bytes) -> Header:
        v = expect_map(decode(raw, 4096), "header", HEADER_FIELDS)
        header = Header(
            chain=expect_str(v["chain"], "header.chain", 64),
            height=expect_int(v["height"], "header.height", 1),
            prev=expect_bytes(v["prev"], "header.prev", 32),
            time=expect_int(v["time"], "header.time"),
            proposer=expect_bytes(v["proposer"], "header.proposer", 32),
            tx_root=expect_bytes(v["tx_root"], "header.tx_root", 32),
            state_root=expect_bytes(v["state_root"], "header.state_root", 32),
            round=expect_int(v["round"], "header.round"),
            version=expect_int(v["version"], "header.version", HEADER_VERSION, HEADER_VERSION),
        )
        return header

    def to_json(self) -> dict[str, Any]:
        return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in self.to_value().items()} | {
            "hash": self.hash.hex()
        }


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    seal: bytes
    txs: tuple[Tx, ...]

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def signed_header_bytes(self) -> bytes:
        return encode([self.header.encode(), self.seal])

    def body_bytes(self) -> bytes:
        return encode([tx.raw for tx in self.txs])

    def encode(self) -> bytes:
        return encode([self.header.encode(), self.seal, [tx.raw for tx in self.txs]])


def decode_signed_header(raw: bytes) -> tuple[Header, bytes]:
    outer = expect_list(decode(raw, 8192), "signed header", 2)
    if len(outer) != 2:
        raise DecodeError("signed header: expected [header, seal]")
    return Header.decode(expect_bytes(outer[0], "header")), expect_bytes(outer[1], "seal", 64)


def body_items(raw: bytes, max_txs: int, max_bytes: int) -> tuple[bytes, ...]:
    """A stored body's transactions as their wire bytes, undecoded (`decode_tx` each)."""
    items = expect_list(decode(raw, max_bytes), "block body", max_txs)
    return tuple(expect_bytes(item, "transaction") for item in items)


def decode_body(raw: bytes, max_txs: int, max_bytes: int) -> tuple[Tx, ...]:
    return tuple(decode_tx(item) for item in body_items(raw, max_txs, max_bytes))


def decode_block(raw: bytes, max_txs: int = 10_000, max_bytes: int = 8 * 1024 * 1024) -> Block:
    outer = expect_list(decode(raw, max_bytes), "block", 3)
    if len(outer) != 3:
        raise DecodeError("block: expected [header, seal, txs]")
    header = Header.decode(expect_bytes(outer[0], "header"))
    seal = expect_bytes(outer[1], "seal", 64)
    items = expect_list(outer[2], "block body", max_txs)
    return Block(header, seal, tuple(decode_tx(expect_bytes(i, "transaction")) for i in items))


@dataclass(frozen=True, slots=True)
class Tip:
    """What the next block must link to: the previous height, hash and time (genesis is height 0)."""

    height: int
    hash: bytes
    time: int

    @staticmethod
    def of_genesis(genesis: Genesis) -> Tip:
        return Tip(0, genesis.hash, genesis.time)

    @staticmethod
    def of(header: Header) -> Tip:
        return Tip(header.height, header.hash, header.time)


def tx_root(txs: Sequence[Tx]) -> bytes:
    return merkle.root([tx.raw for tx in txs])


def fitting(txs: Sequence[Tx], genesis: Genesis) -> list[Tx]:
    """The longest prefix of `txs` within the block limits (count and bytes); the rest wait for later blocks."""
    chosen: list[Tx] = []
    size = 0
    for tx in txs[: genesis.params.max_block_txs]:
        size += len(tx.raw)
        if size > genesis.params.max_block_bytes:
            break
        chosen.append(tx)
    return chosen


def propose(
    state: StateTree,
    tip: Tip,
    genesis: Genesis,
    txs: Sequence[Tx],
    time_ms: int,
    proposer: Keypair,
    round_: int = 0,
    verified: Container[bytes] = frozenset(),
) -> tuple[Block, BlockOutcome]:
    """A sealed block of those `txs` that apply (in order) on `state`; rejected ones are left out."""
    height = tip.height + 1
    ctx = BlockContext(genesis, height, time_ms, proposer.public, verified)
    outcome = execute(state, fitting(txs, genesis), ctx, strict=False)
    header = Header(
        chain=genesis.chain,
        height=height,
        prev=tip.hash,
        time=time_ms,
        proposer=proposer.public,
        tx_root=tx_root(outcome.accepted),
        state_root=state.root_after(outcome.writes),
        round=round_,
    )
    seal = proposer.sign(vote_digest(genesis.chain, height, round_, PROPOSE, header.hash))
    return Block(header, seal, tuple(outcome.accepted)), outcome


def validate_block(
    state: StateTree,
    tip: Tip,
    genesis: Genesis,
    block: Block,
    now_ms: int | None = None,
    verified: Container[bytes] = frozenset(),
    verify: Verify = keys.verify,
) -> BlockOutcome:
    """Check `block` as the successor of `tip` on `state`; returns its outcome or raises `InvalidBlock`."""
    h = block.header
    height = tip.height + 1
    params = genesis.params

    def fail(reason: str) -> InvalidBlock:
        return InvalidBlock(height, reason)

    if h.chain != genesis.chain:
        raise fail(f"block for chain {h.chain!r}")
    if h.height != height:
        raise fail(f"header height {h.height}, expected {height}")
    if h.prev != tip.hash:
        raise fail("previous hash does not link to the chain")
    if h.time <= tip.time:
        raise fail(f"time {h.time} not after the previous block's {tip.time}")
    if now_ms is not None and h.time > now_ms + params.block_max_future_ms:
        raise fail(f"time {h.time} too far ahead of the clock {now_ms}")
    if h.proposer not in authorities_at(state, height):
        raise fail("proposer is not an authority at this height")
    if not vote_ok(genesis.chain, height, h.round, PROPOSE, h.hash, h.proposer, block.seal, verify):
        raise fail("seal signature does not verify")
    if len(block.txs) > params.max_block_txs:
        raise fail(f"{len(block.txs)} transactions > {params.max_block_txs}")
    if sum(len(tx.raw) for tx in block.txs) > params.max_block_bytes:
        raise fail(f"body larger than {params.max_block_bytes} bytes")
    if tx_root(block.txs) != h.tx_root:
        raise fail("transaction root does not match the body")
    ctx = BlockContext(genesis, height, h.time, h.proposer, verified)
    try:
        outcome = execute(state, block.txs, ctx, strict=True)
    except InvalidTransaction as err:
        raise fail(str(err)) from None
    if state.root_after(outcome.writes) != h.state_root:
        raise fail("state root does not match the transactions")
    return outcome


# ---------------------------------------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class Certificate:
    """Commit votes for one block: (signer, signature) pairs sorted by signer."""

    height: int
    round: int
    block: bytes
    votes: tuple[tuple[bytes, bytes], ...]

    def encode(self) -> bytes:
        return encode(
            {
                "block": self.block,
                "height": self.height,
                "round": self.round,
                "votes": [list(v) for v in self.votes],
            }
        )

    @staticmethod
    def decode(raw: bytes) -> Certificate:
        v = expect_map(decode(raw, 64 * 1024), "certificate", ("block", "height", "round", "votes"))
        votes = []
        for item in expect_list(v["votes"], "certificate.votes", 1024):
            pair = expect_list(item, "vote", 2)
            if len(pair) != 2:
                raise DecodeError("vote: expected [signer, signature]")
            votes.append((expect_bytes(pair[0], "vote.signer", 32), expect_bytes(pair[1], "vote.sig", 64)))
        return Certificate(
            expect_int(v["height"], "certificate.height", 1),
            expect_int(v["round"], "certificate.round"),
            expect_bytes(v["block"], "certificate.block", 32),
            tuple(votes),
        )


def commit_vote(keypair: Keypair, header: Header) -> tuple[bytes, bytes]:
    return keypair.public, keypair.sign(
        vote_digest(header.chain, header.height, header.round, COMMIT, header.hash)
    )


def make_certificate(header: Header, votes: Sequence[tuple[bytes, bytes]]) -> Certificate:
    unique = dict(votes)
    return Certificate(header.height, header.round, header.hash, tuple(sorted(unique.items())))


def quorum(n: int) -> int:
    """Votes needed for finality among n authorities: more than two thirds."""
    return 2 * n // 3 + 1


def verify_certificate(cert: Certificate, header: Header, authorities: Sequence[bytes]) -> None:
    """Raise `InvalidBlock` unless `cert` finalises `header` with > 2/3 of `authorities`."""
    if cert.height != header.height or cert.block != header.hash or cert.round != header.round:
        raise InvalidBlock(header.height, "certificate is for another block")
    members = set(authorities)
    signers = set()
    for signer, sig in cert.votes:
        if signer not in members:
            raise InvalidBlock(header.height, "certificate vote from a non-authority")
        if not vote_ok(header.chain, header.height, header.round, COMMIT, header.hash, signer, sig):
            raise InvalidBlock(header.height, "certificate vote signature does not verify")
        signers.add(signer)
    if len(signers) < quorum(len(members)):
        raise InvalidBlock(
            header.height, f"certificate has {len(signers)} of {quorum(len(members))} needed votes"
        )
