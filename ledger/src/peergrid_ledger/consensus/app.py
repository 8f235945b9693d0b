"""What the consensus engine needs from the chain it finalises: an ABCI-style application interface.

Promises: nothing by itself; it names the small surface the engine calls (build a block from the mempool,
inspect and validate a proposal, commit a final block with its certificate, read committed blocks back for
sync) so the engine runs over the ledger-core's blocks and state machine, over the toy chain of the
simulation, or over anything else that implements it. Results are typed (`Accepted` / `Rejected`), never None.
Assumes an `Application` is deterministic: the same committed blocks give the same `validators(height)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .messages import Certificate


@dataclass(frozen=True, slots=True)
class Accepted:
    """The application agrees."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The application refuses, with a reason a person can read."""

    reason: str


ACCEPTED = Accepted()


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """The few header fields the engine reasons about, read from an encoded block by the application."""

    height: int
    parent_hash: bytes
    timestamp_ms: int
    proposer: bytes
    block_hash: bytes
    round: int = 0
    """The round the block was first proposed in (its header's round): commit seals sign it."""


@dataclass(frozen=True, slots=True)
class BlockRef:
    """The committed head: height 0 is genesis."""

    height: int
    block_hash: bytes
    timestamp_ms: int


class Application(Protocol):
    """The chain under consensus (CometBFT ABCI split: prepare, process, commit, query)."""

    @property
    def chain_id(self) -> str: ...

    def head(self) -> BlockRef:
        """The last committed block (genesis when nothing was committed)."""
        ...

    def validators(self, height: int) -> Sequence[bytes]:
        """The authorities that decide `height`; defined once `height - 1` is committed."""
        ...

    def build_block(self, height: int, round_: int, timestamp_ms: int, proposer: bytes) -> bytes:
        """A new block on top of `head()` for `round_`, filled from the mempool and sealed by `proposer`."""
        ...

    def pending(self) -> bool:
        """Transactions wait that a block could take now (the proposer's reason to propose before the
        heartbeat)."""
        ...

    def inspect(self, block: bytes) -> BlockInfo | Rejected:
        """Decode just enough of `block` to know its header; never raises on bad bytes."""
        ...

    def validate(self, block: bytes) -> Accepted | Rejected:
        """Would `block` be a valid child of `head()` (transactions, state root, signature)?"""
        ...

    def commit(self, block: bytes, certificate: Certificate) -> None:
        """Make `block` final with its commit certificate (durably: one atomic write)."""
        ...

    def committed(self, height: int) -> tuple[bytes, Certificate] | None:
        """A committed block and its certificate, for peers that catch up."""
        ...


class ConsensusWal(Protocol):
    """Where the engine keeps its votes of the current height so a restart never votes twice differently."""

    def load(self) -> bytes | None: ...

    def save(self, record: bytes, sync: bool = True) -> None:
        """Replace the record atomically; `sync`: durable (fsync) before returning, else it survives the
        process being killed but perhaps not a power cut (the engine copes with losing it: wal.py)."""
        ...


class MemoryWal:
    """A WAL that lives as long as the object (the simulation keeps it across simulated crashes)."""

    def __init__(self) -> None:
        self.record: bytes | None = None

    def load(self) -> bytes | None:
        return self.record

    def save(self, record: bytes, sync: bool = True) -> None:
        self.record = record


class Signer(Protocol):
    """An authority's signing key (a `keys.Keypair`, or the simulation's cheap stand-in)."""

    @property
    def public(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


VerifyFn = Callable[[bytes, bytes, bytes], bool]
"""verify(public_key, message, signature) -> bool, never raising (`keys.verify`)."""
