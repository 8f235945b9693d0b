"""Signed gossip envelopes and the transport interface every network adapter implements.

Promises: `seal_envelope` wraps a payload (a consensus message, a batch of transactions, a committed block,
a sync request or reply) with the chain id, its kind and the sender's Ed25519 signature; `open_envelope`
(`read_envelope` then `check_envelope`) returns it only if it decodes, is within the size limit, names this chain and a known kind, and the
signature verifies — otherwise it raises `EnvelopeError` whose `reason` is one of DROP_REASONS, so the
caller counts the drop and carries on. Topics follow the design: peergrid/<feeder>/ledger/<chain>/{tx,
consensus,block,sync/<node>}. Decoding is bounded by bytes and by item count (`codec.decode`'s `max_items`:
the envelope's 5, a transaction batch's `MAX_TX_BATCH`), so what a stranger sends costs at most one small
parse. Pure, apart from the `Transport` protocol it names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .. import codec
from ..codec import DecodeError
from ..keys import Keypair, verify

TX, CONSENSUS, BLOCK, SYNC = "tx", "consensus", "block", "sync"
KINDS = (TX, CONSENSUS, BLOCK, SYNC)
MAX_ENVELOPE_BYTES = 8 * 1024 * 1024
MAX_TX_BATCH = 4096
ENVELOPE_ITEMS = 5
"""[chain, kind, sender, body, signature]: the item budget `read_envelope` decodes with, so an "envelope" of
millions of one-byte items is refused at its first header (review21 F1)."""
VerifyFn = Callable[[bytes, bytes, bytes], bool]
DROP_REASONS = ("malformed", "oversized", "unsigned", "wrong-chain", "unknown-sender", "revoked")


class EnvelopeError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Envelope:
    chain: str
    kind: str
    sender: bytes
    body: bytes


def _signed_digest(chain: str, kind: str, body: bytes) -> bytes:
    # A 5-element array: cannot collide with hashing.digest's 3-element domain prefixes.
    return hashlib.sha256(codec.encode(["peergrid/1", "envelope", chain, kind, body])).digest()


def seal_envelope(chain: str, kind: str, keypair: Keypair, body: bytes) -> bytes:
    signature = keypair.sign(_signed_digest(chain, kind, body))
    return codec.encode([chain, kind, keypair.public, body, signature])


def read_envelope(chain: str, data: bytes, max_size: int = MAX_ENVELOPE_BYTES) -> tuple[Envelope, bytes]:
    """The envelope in `data` and its signature, NOT yet checked (`envelope_signed`); raises `EnvelopeError`
    for anything malformed, oversized or of another chain. For a caller that may drop what it does not need
    before paying for a signature check."""
    if len(data) > max_size:
        raise EnvelopeError("oversized", f"{len(data)} bytes > {max_size}")
    try:
        items = codec.expect_list(codec.decode(data, max_size, ENVELOPE_ITEMS), "envelope", 5)
        if len(items) != 5:
            raise DecodeError("envelope: expected [chain, kind, sender, body, signature]")
        their_chain = codec.expect_str(items[0], "envelope chain", 64)
        kind = codec.expect_str(items[1], "envelope kind", 16)
        sender = codec.expect_bytes(items[2], "envelope sender", 32)
        body = codec.expect_bytes(items[3], "envelope body")
        signature = codec.expect_bytes(items[4], "envelope signature")
    except DecodeError as exc:
        raise EnvelopeError("malformed", str(exc)) from None
    if their_chain != chain:
        raise EnvelopeError("wrong-chain", f"for chain {their_chain!r}")
    if kind not in KINDS:
        raise EnvelopeError("malformed", f"unknown kind {kind!r}")
    return Envelope(chain, kind, sender, body), signature


def check_envelope(envelope: Envelope, signature: bytes, verify: VerifyFn = verify) -> Envelope:
    """`envelope` if its sender's signature verifies, else `EnvelopeError('unsigned')`."""
    if not verify(envelope.sender, _signed_digest(envelope.chain, envelope.kind, envelope.body), signature):
        raise EnvelopeError("unsigned", "signature missing or does not verify")
    return envelope


def open_envelope(
    chain: str, data: bytes, max_size: int = MAX_ENVELOPE_BYTES, verify: VerifyFn = verify
) -> Envelope:
    return check_envelope(*read_envelope(chain, data, max_size), verify)


def encode_tx_batch(txs: Sequence[bytes]) -> bytes:
    return codec.encode(list(txs))


def decode_tx_batch(body: bytes) -> list[bytes]:
    try:
        items = codec.expect_list(
            codec.decode(body, max_items=MAX_TX_BATCH), "transaction batch", MAX_TX_BATCH
        )
        return [codec.expect_bytes(item, "transaction") for item in items]
    except DecodeError as exc:
        raise EnvelopeError("malformed", str(exc)) from None


def topic(feeder: str, chain: str, kind: str, node: bytes | None = None) -> str:
    base = f"peergrid/{feeder}/ledger/{chain}/{kind}"
    return base if kind != SYNC else f"{base}/{(node or b'').hex()}"


class Transport(Protocol):
    """What a replica needs from the network; the MQTT adapter and test doubles implement it."""

    def publish(self, chain: str, kind: str, data: bytes, to: bytes | None = None) -> None:
        """Publish on the chain's `kind` topic (`to`: the sync topic of that node)."""
        ...
