"""The market's interval clock, set on chain: `market.clock` {epoch_ms}, the DSO's, on a `settle_by_both` chain.

Interval k runs from epoch + k x settle_interval_ms to epoch + (k + 1) x settle_interval_ms (block time, ms).
The interval length is always the genesis' `settle_interval_ms`; the epoch is the chain's posted clock where
one was posted (`mkt/clock`), else the genesis' `settle_epoch_ms`. Why on chain: a lab (or a pilot) whose
start moves - the DSO node ready late - fixes its first interval's start only once the DSO runs, after the
genesis was written; the DSO posts it before the MGMCs trade (/work/notes/T5_settle_clock.md).
Every reader of the clock reads it here (`interval_start`, `interval_end`: the close rule
`market_close_time`, the settle-after-delivery rule `market_closing`, uplift's `ready_by`).

Rules of `market.clock`:
- only the `dso` or the `clock` role sends it (`forbidden` otherwise), only on a genesis `settle_by_both`
  chain (`rule-violation`: elsewhere no contract reads an interval clock). `clock` is a role for this kind
  alone: a key that posts the clock apart from the DSO's (its own nonces: the lab's `lab-clock`) without the
  DSO's other powers (capacity, tariff, reopen, every gov.* kind; review23 F2);
- it may be posted again, each post replacing the epoch, until the clock is fixed; a post of the epoch that
  already stands is `duplicate`. Why more than once: nothing on chain reads the clock before a position, and a
  start that moves twice (a retried lab start) must not need a new chain;
- it is fixed by the first offer, bid, move, `trade` or `settle` after it (`fix_clock`: `mkt/clock/fixed` names
  the interval and the kind), and refused (`rule-violation`, naming them) from then on: the clock never moves
  under a traded interval, whose close and settle times it sets.
- and refused (`rule-violation`, naming it) while an anonym the genesis names holds a position (its
  `mkt/last`: an offer, bid or exchange accept), before any post too.
Limit, said plainly: a position of an anonym enrolled on chain (`enrol`), or an exchange session cleared
but not yet settled, taken before the FIRST post does not refuse it. Telling would take a mark written at
every chain's first position, changing the state bytes of every `settle_by_both` chain without a posted
clock (pinned roots), or a scan of state; a chain whose clock comes on chain posts it before its MGMCs
start (the lab does, its anonyms all in genesis). Without a posted clock nothing here writes: state bytes
and behaviour are the genesis clock's, as before.
Pure; no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import keyspace as ks
from ..machine import BlockContext, KindSpec, require, require_role
from ..results import Event, Reason, RuleError
from ..schema import Int, Map
from ..state import Overlay, StateReader, read_obj
from ..tx import Tx
from .market_state import last_interval_key

if TYPE_CHECKING:
    from ..genesis import Params

CLOCK_KEY = b"mkt/clock"  # {epoch_ms}: the posted epoch
FIXED_KEY = b"mkt/clock/fixed"  # {interval, kind}: the first position, closing or settlement after a post
EPOCH_MS = Int(0, 2**63 - 1)  # as genesis `settle_epoch_ms`


def posted_epoch(state: StateReader) -> int | None:
    """The epoch posted on chain (`market.clock`), or None where none was."""
    record = read_obj(state, CLOCK_KEY)
    return None if record is None else int(record["epoch_ms"])


def epoch_ms(state: StateReader, params: Params) -> int:
    """The interval clock's epoch: the posted one, else the genesis' `settle_epoch_ms`."""
    posted = posted_epoch(state)
    return params.settle_epoch_ms if posted is None else posted


def interval_start(state: StateReader, params: Params, interval: int) -> int | None:
    """When (block time, ms) trading interval `interval` starts on the chain's clock; None without one."""
    if not params.settle_interval_ms:
        return None
    return epoch_ms(state, params) + interval * params.settle_interval_ms


def interval_end(state: StateReader, params: Params, interval: int) -> int | None:
    """When (block time, ms) trading interval `interval` ends on the chain's clock; None without one."""
    if not params.settle_interval_ms:
        return None
    return epoch_ms(state, params) + (interval + 1) * params.settle_interval_ms


def fixed(state: StateReader) -> dict[str, Any] | None:
    """{interval, kind} of the position, closing or settlement that fixed a posted clock, or None."""
    found = read_obj(state, FIXED_KEY)
    return None if found is None else dict(found)


def fix_clock(view: Overlay, ctx: BlockContext, interval: int, kind: str) -> None:
    """An offer, bid, move, `trade` or `settle` of `interval` was taken: a posted clock is fixed from here.
    Writes only on a `settle_by_both` chain with a posted clock, and only the first time (two lookups on such
    chains, one field's on every other)."""
    if (
        not ctx.genesis.params.settle_by_both
        or view.get(CLOCK_KEY) is None
        or view.get(FIXED_KEY) is not None
    ):
        return
    view.put_obj(FIXED_KEY, {"interval": interval, "kind": kind})


def set_clock(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require_role(sender, {ks.ROLE_DSO, ks.ROLE_CLOCK}, tx.kind)
    params = ctx.genesis.params
    require(
        bool(params.settle_by_both),
        Reason.RULE_VIOLATION,
        "market.clock: only on a settle_by_both chain (no other chain reads an interval clock)",
    )
    held = fixed(view)
    if held is not None:
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"market.clock: the interval clock is fixed since a {held['kind']} of interval {held['interval']}: "
            "it never moves under a traded interval",
        )
    for account in ctx.genesis.accounts:  # before any post nothing marks a position: what the genesis names
        last = read_obj(view, last_interval_key(account.key)) if ks.ROLE_ANONYM in account.roles else None
        if last is not None:
            raise RuleError(
                Reason.RULE_VIOLATION,
                f"market.clock: anonym {account.key.hex()[:16]}… holds a position up to interval {last}: the "
                "clock never moves under a traded interval",
            )
    new, before = tx.body["epoch_ms"], posted_epoch(view)
    if before == new:
        raise RuleError(Reason.DUPLICATE, f"market.clock: the clock's epoch is {new} already")
    view.put_obj(CLOCK_KEY, {"epoch_ms": new})
    was = params.settle_epoch_ms if before is None else before
    return [("clock", {"epoch_ms": new, "was": was, "interval_ms": params.settle_interval_ms})]


KIND = KindSpec(Map({"epoch_ms": EPOCH_MS}), set_clock)
