"""Consensus wire messages, commit certificates and equivocation evidence, as canonical bytes.

Promises: every signed consensus statement is a `Vote` — (kind, height, round, digest, prepared_round) signed
by its author over the ledger's `votes.vote_digest` (VOTE domain, chain id) — so a vote from one chain never
verifies on another, a commit vote is exactly the block's commit seal (its round is the round in the block's
header), and the ledger's evidence transaction can carry any two conflicting votes. `decode_wire` turns any bytes into a typed message or
raises `MessageError` (nothing else), refusing wrong chains and oversized or malformed input.
Assumes signatures are checked by the caller (`vote_ok`); decoding never trusts a signature.
Must never do I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .. import codec, votes
from ..codec import DecodeError, EncodeError

PROPOSAL = votes.PROPOSE
PREPARE = votes.PREPARE
COMMIT = votes.COMMIT
ROUND_CHANGE = votes.ROUND_CHANGE
VOTE_KINDS = (PROPOSAL, PREPARE, COMMIT, ROUND_CHANGE)

NO_ROUND = -1
"""prepared_round of a vote that carries no prepared value."""

MAX_WIRE_BYTES = 4 * 1024 * 1024
MAX_VALIDATORS = 256
MAX_SYNC_BLOCKS = 1024
MAX_ROUND = 2**31
MAX_VOTE_ITEMS = 6 + 7 + 2 * MAX_VALIDATORS * 8
"""Items (array items and map entries) of the largest vote message: its 6 fields, the vote's 7, and a full
justification and prepare certificate of `MAX_VALIDATORS` votes (8 each, with their place in the list)."""
MAX_WIRE_ITEMS = 2**17
"""Items any message within `MAX_WIRE_BYTES` that `decode_wire` accepts can hold: at most `MAX_VOTE_ITEMS`
in a vote message; a sync response has 5 per block (at most `MAX_SYNC_BLOCKS`: 5,120) and 3 per commit
seal, which takes 101 bytes (4 MiB / 101 x 3 = 124,581), so 129,704 at most. A body announcing more is
refused at the header that crosses it, before it is built (review21 F1); pinned by a test
(`tests/consensus/test_intake_bounds.py`)."""
HASH_BYTES = 32


class MessageError(ValueError):
    """Bytes that are not a well-formed consensus message of this chain."""


def quorum(n: int) -> int:
    """More than two thirds of n (⌊2n/3⌋ + 1, as the ledger's certificates require). Any two quorums share
    at least f + 1 authorities, so one honest, and the n − f honest ones still form a quorum. (QBFT's ⌈2n/3⌉
    is the same number unless 3 divides n, where this is one more: still live, never less safe.)"""
    return 2 * n // 3 + 1


def max_faulty(n: int) -> int:
    """f = ⌊(n − 1)/3⌋, the faulty authorities a set of n tolerates."""
    return (n - 1) // 3


@dataclass(frozen=True, slots=True)
class Vote:
    kind: str
    height: int
    round: int
    digest: bytes
    prepared_round: int
    author: bytes
    signature: bytes

    def value(self) -> list[object]:
        return [
            self.kind,
            self.height,
            self.round,
            self.digest,
            self.prepared_round,
            self.author,
            self.signature,
        ]


def vote_block_field(vote: Vote) -> bytes:
    """The 32 bytes a vote signs in the ledger's block slot (a commitment, for a round change)."""
    if vote.kind == ROUND_CHANGE:
        return hashlib.sha256(codec.encode(["prepared", vote.prepared_round, vote.digest])).digest()
    return vote.digest


@lru_cache(maxsize=8192)
def vote_digest(
    chain_id: str, kind: str, height: int, round_: int, digest: bytes, prepared_round: int
) -> bytes:
    """The ledger's `votes.vote_digest`, so commit votes are the block's commit seals and any vote can be
    evidence on chain. A round change signs a commitment to (prepared round, prepared block) in the block
    slot: both must be signed, or a relay could hide a prepared value and break safety across rounds.
    Remembered (a pure function of immutable values): one vote's digest is needed by its signer, by each
    check of it and of every envelope, justification and certificate that carries it again."""
    if kind == ROUND_CHANGE:
        digest = hashlib.sha256(codec.encode(["prepared", prepared_round, digest])).digest()
    return votes.vote_digest(chain_id, height, round_, kind, digest)


def sign_vote(
    chain_id: str,
    sign: Callable[[bytes], bytes],
    author: bytes,
    kind: str,
    height: int,
    round_: int,
    digest: bytes,
    prepared_round: int = NO_ROUND,
) -> Vote:
    signature = sign(vote_digest(chain_id, kind, height, round_, digest, prepared_round))
    return Vote(kind, height, round_, digest, prepared_round, author, signature)


def vote_ok(chain_id: str, vote: Vote, verify: Callable[[bytes, bytes, bytes], bool]) -> bool:
    message = vote_digest(chain_id, vote.kind, vote.height, vote.round, vote.digest, vote.prepared_round)
    return verify(vote.author, message, vote.signature)


@dataclass(frozen=True, slots=True)
class Certificate:
    """Commit seals of a quorum of authorities for one block at one round (sorted by author)."""

    round: int
    seals: tuple[tuple[bytes, bytes], ...]

    def value(self) -> list[object]:
        return [self.round, [[a, s] for a, s in self.seals]]

    def encode(self) -> bytes:
        return codec.encode(self.value())


def certificate_from_value(value: object) -> Certificate:
    items = codec.expect_list(value, "certificate", 2)
    if len(items) != 2:
        raise DecodeError("certificate: expected [round, seals]")
    round_ = codec.expect_int(items[0], "certificate round", 0, MAX_ROUND)
    seals = []
    for seal in codec.expect_list(items[1], "certificate seals", MAX_VALIDATORS):
        pair = codec.expect_list(seal, "seal", 2)
        if len(pair) != 2:
            raise DecodeError("seal: expected [author, signature]")
        seals.append(
            (
                codec.expect_bytes(pair[0], "seal author", 32),
                codec.expect_bytes(pair[1], "seal signature", 64),
            )
        )
    return Certificate(round_, tuple(seals))


def decode_certificate(data: bytes) -> Certificate:
    try:
        return certificate_from_value(codec.decode(data, 64 * 1024))
    except DecodeError as exc:
        raise MessageError(str(exc)) from None


def verify_certificate(
    chain_id: str,
    height: int,
    block_hash: bytes,
    certificate: Certificate,
    validators: Sequence[bytes],
    verify: Callable[[bytes, bytes, bytes], bool],
) -> bool:
    """True when a quorum of distinct `validators` sealed `block_hash` at `height` in the certificate's round."""
    allowed = set(validators)
    message = vote_digest(chain_id, COMMIT, height, certificate.round, block_hash, NO_ROUND)
    signers: set[bytes] = set()
    for author, signature in certificate.seals:
        if author in allowed and author not in signers and verify(author, message, signature):
            signers.add(author)
    return len(signers) >= quorum(len(allowed))


def make_certificate(round_: int, commits: Iterable[Vote]) -> Certificate:
    return Certificate(round_, tuple(sorted((v.author, v.signature) for v in commits)))


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two votes by one author of one kind at one height and round that disagree: equivocation."""

    first: Vote
    second: Vote

    def encode(self) -> bytes:
        a, b = sorted([self.first.value(), self.second.value()], key=codec.encode)
        return codec.encode(["equivocation", a, b])


def decode_evidence(data: bytes) -> Evidence:
    try:
        items = codec.expect_list(codec.decode(data, 4096), "evidence", 3)
        if len(items) != 3 or items[0] != "equivocation":
            raise DecodeError("evidence: expected ['equivocation', vote, vote]")
        return Evidence(_vote_from_value(items[1]), _vote_from_value(items[2]))
    except DecodeError as exc:
        raise MessageError(str(exc)) from None


def evidence_ok(chain_id: str, evidence: Evidence, verify: Callable[[bytes, bytes, bytes], bool]) -> bool:
    """Both votes signed by the same author for the same kind, height and round, yet different."""
    a, b = evidence.first, evidence.second
    same_slot = (a.author, a.kind, a.height, a.round) == (b.author, b.kind, b.height, b.round)
    differ = (a.digest, a.prepared_round) != (b.digest, b.prepared_round)
    return same_slot and differ and vote_ok(chain_id, a, verify) and vote_ok(chain_id, b, verify)


# ---------------------------------------------------------------------------------------------- wire


@dataclass(frozen=True, slots=True)
class ConsensusMessage:
    """A vote with what travels beside it: a proposal's block and round-change justification, or the
    prepared block and its prepare certificate inside a round change."""

    vote: Vote
    block: bytes | None = None
    justification: tuple[Vote, ...] = ()
    prepares: tuple[Vote, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Blocks from `from_height` on, at most `count`. `at_ms` (the requester's clock when it asked) and `to`
    (the peer asked) bind a signed request to one moment and one server, so a captured one cannot be replayed
    later or to others (`sync_guard`). Both None: the format before them, still decoded (and refused)."""

    from_height: int
    count: int
    at_ms: int | None = None
    to: bytes | None = None


@dataclass(frozen=True, slots=True)
class SyncResponse:
    blocks: tuple[tuple[bytes, Certificate], ...]


WireMessage = ConsensusMessage | SyncRequest | SyncResponse
SYNC_REQUEST_FIELDS = frozenset(["c", "t", "f", "n", "a", "o"])
UNDATED_FIELDS = frozenset(["c", "t", "f", "n"])


def encode_wire(chain_id: str, message: WireMessage) -> bytes:
    if isinstance(message, ConsensusMessage):
        body: dict[str, object] = {
            "c": chain_id,
            "t": "vote",
            "v": message.vote.value(),
            "b": message.block,
            "j": [v.value() for v in message.justification],
            "p": [v.value() for v in message.prepares],
        }
    elif isinstance(message, SyncRequest):
        body = {"c": chain_id, "t": "sync-req", "f": message.from_height, "n": message.count}
        if message.at_ms is not None or message.to is not None:
            body.update(a=message.at_ms, o=message.to)
    else:
        body = {"c": chain_id, "t": "sync-resp", "b": [[blk, cert.value()] for blk, cert in message.blocks]}
    try:
        return codec.encode(body)
    except EncodeError as exc:  # pragma: no cover - our own messages always encode
        raise MessageError(str(exc)) from None


def _vote_from_value(value: object) -> Vote:
    items = codec.expect_list(value, "vote", 7)
    if len(items) != 7:
        raise DecodeError("vote: expected 7 fields")
    kind = codec.expect_str(items[0], "vote kind", 16)
    if kind not in VOTE_KINDS:
        raise DecodeError(f"vote: unknown kind {kind!r}")
    digest = codec.expect_bytes(items[3], "vote digest")
    if len(digest) not in (0, HASH_BYTES):
        raise DecodeError("vote digest: expected 0 or 32 bytes")
    prepared_round = codec.expect_int(items[4], "prepared round", NO_ROUND, MAX_ROUND)
    if kind != ROUND_CHANGE and (prepared_round != NO_ROUND or len(digest) != HASH_BYTES):
        raise DecodeError(f"{kind} vote: a block hash and no prepared round")  # only what is signed
    if kind == ROUND_CHANGE and (prepared_round == NO_ROUND) != (digest == b""):
        raise DecodeError("round change: a prepared round goes with a prepared block, or neither")
    return Vote(
        kind,
        codec.expect_int(items[1], "vote height", 1),
        codec.expect_int(items[2], "vote round", 0, MAX_ROUND),
        digest,
        prepared_round,
        codec.expect_bytes(items[5], "vote author", 32),
        codec.expect_bytes(items[6], "vote signature", 64),
    )


def decode_wire(
    chain_id: str, data: bytes, max_size: int = MAX_WIRE_BYTES, max_items: int = MAX_WIRE_ITEMS
) -> WireMessage:
    """The message in `data`; raises `MessageError` for anything malformed, oversized (in bytes or in items:
    `max_items`) or of another chain."""
    try:
        value = codec.decode(data, max_size, max_items)
        if type(value) is not dict:
            raise DecodeError("expected a map")
        if value.get("c") != chain_id:
            raise MessageError(f"message for chain {str(value.get('c'))[:40]!r}, not {chain_id!r}")
        kind = value.get("t")
        if kind == "vote":
            fields = codec.expect_map(value, "vote message", ["c", "t", "v", "b", "j", "p"])
            block = fields["b"]
            if block is not None:
                block = codec.expect_bytes(block, "block")
            return ConsensusMessage(
                _vote_from_value(fields["v"]),
                block,
                tuple(
                    _vote_from_value(v)
                    for v in codec.expect_list(fields["j"], "justification", MAX_VALIDATORS)
                ),
                tuple(
                    _vote_from_value(v) for v in codec.expect_list(fields["p"], "prepares", MAX_VALIDATORS)
                ),
            )
        if kind == "sync-req":
            dated = "a" in value or "o" in value
            fields = codec.expect_map(value, "sync request", SYNC_REQUEST_FIELDS if dated else UNDATED_FIELDS)
            return SyncRequest(
                codec.expect_int(fields["f"], "from height", 1),
                codec.expect_int(fields["n"], "count", 1, MAX_SYNC_BLOCKS),
                codec.expect_int(fields["a"], "asked at") if dated else None,
                codec.expect_bytes(fields["o"], "asked of", 32) if dated else None,
            )
        if kind == "sync-resp":
            fields = codec.expect_map(value, "sync response", ["c", "t", "b"])
            blocks = []
            for item in codec.expect_list(fields["b"], "sync blocks", MAX_SYNC_BLOCKS):
                pair = codec.expect_list(item, "sync block", 2)
                if len(pair) != 2:
                    raise DecodeError("sync block: expected [block, certificate]")
                blocks.append((codec.expect_bytes(pair[0], "block"), certificate_from_value(pair[1])))
            return SyncResponse(tuple(blocks))
        raise DecodeError(f"unknown message type {str(kind)[:20]!r}")
    except DecodeError as exc:
        raise MessageError(str(exc)) from None
