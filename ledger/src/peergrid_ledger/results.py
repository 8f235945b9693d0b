"""Typed outcomes of applying a transaction: `Accepted` or `Rejected`, never None or a bare dict.

`Rejected` carries a `Reason` code a program can branch on and a human-readable detail. Bad data from outside
(another node's transaction) is a `Rejected`; corruption of our own store is an exception elsewhere.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple


class Reason(StrEnum):
    MALFORMED = "malformed"  # does not decode, or body does not match the kind's schema
    OVERSIZED = "oversized"
    WRONG_CHAIN = "wrong-chain"
    BAD_SIGNATURE = "bad-signature"
    UNKNOWN_SENDER = "unknown-sender"
    REPLAYED_NONCE = "replayed-nonce"  # nonce at or below the last one used
    NONCE_GAP = "nonce-gap"  # nonce beyond the next one (out of order)
    TIME_OUT_OF_BOUNDS = "time-out-of-bounds"
    UNKNOWN_KIND = "unknown-kind"
    FORBIDDEN = "forbidden"  # sender's role may not do this
    NOT_AUTHORISED = "not-authorised"  # participant not (or no longer) authorised
    DUPLICATE = "duplicate"
    NOT_FOUND = "not-found"
    CLOSED = "closed"  # interval already cleared, auction over, result already recorded
    RULE_VIOLATION = "rule-violation"  # a contract rule (floor, cap, quantity, clean preference) refuses it
    INSUFFICIENT_FUNDS = "insufficient-funds"
    ALREADY_SETTLED = "already-settled"
    INVALID_EVIDENCE = "invalid-evidence"
    INVALID = "invalid"  # any other semantic check


Event = tuple[str, dict[str, Any]]


class Accepted(NamedTuple):
    """The transaction applies. `writes` maps state keys to new values (None deletes); `events` say what it did.

    Results are immutable NamedTuples rather than frozen dataclasses: one is built per transaction, and a
    frozen dataclass costs four times as much to build."""

    txid: bytes
    writes: dict[bytes, bytes | None]
    events: tuple[Event, ...] = ()

    @property
    def ok(self) -> bool:
        return True


class Rejected(NamedTuple):
    """The transaction does not apply; state is unchanged."""

    reason: Reason
    detail: str = ""
    txid: bytes = b""

    @property
    def ok(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"rejected ({self.reason.value}): {self.detail}"


Result = Accepted | Rejected


class RuleError(Exception):
    """Raised inside transaction handlers to reject; `apply` turns it into `Rejected`. Never escapes `apply`."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
