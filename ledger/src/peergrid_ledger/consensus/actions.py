"""What the engine asks its driver to do, and the events' timers: plain frozen data, no behaviour.

Promises: a driver that performs these actions in list order (send, broadcast, set timer) and feeds the
engine its inputs is all the I/O consensus needs; `Committed` and `EvidenceFound` are for the driver's own
bookkeeping (mempool pruning, block gossip, evidence transactions, metrics).
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Certificate, Evidence, SyncRequest

ROUND_TIMER = "round"
PROPOSE_TIMER = "propose"
SYNC_TIMER = "sync"
RESEND_TIMER = "resend"


@dataclass(frozen=True, slots=True)
class Timer:
    kind: str
    height: int
    round: int


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Publish to every replica of the chain (the consensus topic)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver to one replica, named by its public key (its sync topic). `request`: the sync request `data`
    encodes, for a driver that stamps it again when it actually goes out (`ChainReplica`)."""

    to: bytes
    data: bytes
    request: SyncRequest | None = None


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call `Engine.on_timer(timer, now)` at `at_ms` (replacing nothing: stale timers are ignored)."""

    timer: Timer
    at_ms: int


@dataclass(frozen=True, slots=True)
class Committed:
    height: int
    block_hash: bytes
    block: bytes
    certificate: Certificate
    proposer: bytes
    via_sync: bool


@dataclass(frozen=True, slots=True)
class EvidenceFound:
    evidence: Evidence


Action = Broadcast | Send | SetTimer | Committed | EvidenceFound
