"""Helpers for the sealed-statement tests (genesis `sealed_statements`): chains, commit and reveal."""

from __future__ import annotations

import hashlib
from typing import Any

from test_settle_both import Clock, both_chain, trades_of
from test_settle_compensation import priced

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Rejected


def sealed_setup(
    tolerance: int = 0, price: bool = True, sealed: int = 1
) -> tuple[LocalChain, Clock, bytes, bytes]:
    """A settle_by_both chain (sealed unless `sealed` 0) with `trades_of`'s two trades, priced if `price`."""
    c = both_chain(tolerance, sealed_statements=sealed) if sealed else both_chain(tolerance)
    clock = Clock(c)
    if price:
        priced(c, clock)
    tid, tid2 = trades_of(c, clock)
    return c, clock, tid, tid2


def salt_for(who: Keypair, tid: bytes, tag: bytes = b"") -> bytes:
    return hashlib.sha256(b"salt/" + who.public + tid + tag).digest()


def commit(
    clock: Clock, who: Keypair, tid: bytes, delivered: int, short: int | None = None, tag: bytes = b""
) -> Accepted | Rejected:
    """`who` commits to (delivered, short) with its salt for `tid` (and `tag`)."""
    salt = salt_for(who, tid, tag)
    seal = seal_of(clock.chain.genesis.chain, tid, who.public, delivered, short or 0, salt)
    return clock.send(who, {"trade": tid, "seal": seal})


def reveal(
    clock: Clock,
    who: Keypair,
    tid: bytes,
    delivered: int,
    short: int | None = None,
    tag: bytes = b"",
    salt: bytes | None = None,
) -> Accepted | Rejected:
    body: dict[str, Any] = {"trade": tid, "delivered": delivered, "salt": salt or salt_for(who, tid, tag)}
    if short is not None:
        body["short"] = short
    return clock.send(who, body)


def state(
    clock: Clock, who: Keypair, tid: bytes, delivered: int, short: int | None = None
) -> Accepted | Rejected:
    body: dict[str, Any] = {"trade": tid, "delivered": delivered}
    if short is not None:
        body["short"] = short
    return clock.send(who, body)
