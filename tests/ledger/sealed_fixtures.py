"""Helpers for the sealed-statement tests (genesis `sealed_statements`): chains, commit and reveal.

`sealed_shapes()` checks `settle` bodies against `market_sealed.SETTLE_SHAPE` while market.py's KINDS does
not use it yet (N5 owns market.py this session; S5's report asks for the one-line change):
test_settle_sealed.test_the_market_contract_takes_the_sealed_bodies fails until it lands.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from test_settle_both import Clock, both_chain, trades_of
from test_settle_compensation import priced

from peergrid_ledger import machine
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.market_sealed import SETTLE_SHAPE, seal_of
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Rejected
from peergrid_ledger.schema import compile_shape


@contextmanager
def sealed_shapes() -> Iterator[None]:
    table = machine.kinds()
    spec = table["settle"]
    if spec.shape is SETTLE_SHAPE:
        yield
        return
    table["settle"] = machine.KindSpec(SETTLE_SHAPE, spec.handler, spec.contract, compile_shape(SETTLE_SHAPE))
    try:
        yield
    finally:
        table["settle"] = spec


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
