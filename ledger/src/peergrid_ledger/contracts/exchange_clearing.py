"""The exchange contract's clearing: a closed session's forward trades, computed by the chain.

Promises (the `exchange.accept` handler, exchange_accept.py's, and the `exchange.clear` handler of
`exchange.KINDS`):
  `exchange.accept` (a member, after `exchange.close`, before the clear) records the member's accepted
      net position per interval (whole Wh): each of the same sign as its final stepped position
      (`exchange.stepped`) and no larger in size (0 declines the interval, all zeros the day), and within
      its owner rules for that chain interval at the session's closing price on the market contract's tick
      (`exchange.micro_per_wh`): no sale below its floor, no purchase above its cap or at a negative price
      (the market contract has none), |q| ≤ `max_quantity` and the connection capacity the DSO posted
      (`market.capacity`), a `clean_only` member never buys. It also
      freezes the member's rules up to the session's last interval it trades in, as a market position does
      (`market.rules` may change only after it). An optional `window` [first, last] (chain intervals, on the
      member's first accept only; a re-accept may only repeat it) states the member's trading window: within
      the session, first ≤ last, every nonzero position (either book) inside it (`malformed`, `invalid`,
      `rule-violation` naming which). It is kept (`trading_window`; absent: none, the whole session, and the
      accept's record and event keep their bytes), its rules freeze up to its last interval too, and the
      uplift contract bounds the member's make-whole gain over it (`uplift.gain_bound`): stated before the
      clear and never after, a window cannot be widened once the day's prices and trades are known.
      Accept rounds (exchange_rounds.py): a member accepts again, reduce-only, to re-check what the clear
      would give it; its round k + 1 opens once every member accepted (or the deadline passed) and every
      member still trading posted round k, refused `duplicate` before that.
  `exchange.clear` (after the close, once; a member or the coordinator: at once when the accepts are
      settled, i.e. every member accepted and either nobody accepted twice (round 1: the rule from before
      rounds; not on a chain whose genesis says `accept_rounds` 2) or, for the highest round R, every member
      still trading posted round R and no round-R accept differs from the member's round R − 1 (or no
      member trades any more: exchange_rounds.py); before that only after the session's deadline, or, on a
      session opened without one, by the coordinator at any time, as before deadlines existed — neither
      with genesis `accept_rounds` 2: past the deadline the rounds must settle among the members present,
      a silent member standing on its latest accept after each round's `accept_wait_ms`, and every such
      session has a deadline, no earlier than `accept_window_ms` after the close (`exchange`);
      exchange_rounds.py says who can stall and why) computes
      each interval's trades from the latest accepted positions alone
      (`pairing.forward_trades`: the long side pro rata to the short side's volume, largest sellers to
      largest buyers, no buyer naming more than MAX_DEMANDS sellers; ties by public key) at the closing
      price on the tick, and records them as the market contract's trades of
      chain interval first_interval + t (`market_state.trade_id`, closing 0): `settle` pays each once, as
      an intraday trade, and the interval is closed (its record names the session). An interval without a
      trade is left as it was. Members that never accepted trade nothing. An interval that would get a
      trade but that the market contract already holds (a closing, open positions or a reopening) is
      skipped: it gets no forward trade, stays the market's as it stands, and the clear names it
      (`skipped`: interval and what held it); the other intervals clear as usual. Why skip rather than
      reserve the session's intervals from the open: any authorised key may offer in any future interval,
      so refusing the whole clear for one held interval let anyone block a day's forward trades with one
      1-Wh offer; a reservation instead would let any opener lock up to 672 intervals against intraday
      trading until its clear, and would block the members' own intraday fallback when the stage fails
      (a session closed and never cleared). Skipping locks nothing: a held interval is simply traded
      intraday, by whoever holds it. One clear computes at most MAX_CLEAR_CELLS accepted members ×
      intervals: a bigger session is cleared in parts, each clear the next intervals (event
      `exchange_clearing` {session, first, last, trades}) until the last part (`exchange_cleared`, the
      totals); the first part is the one the who-and-when rule above governs, the accepts are final from it
      on, and any member or the coordinator clears the next part.
The chain computes every trade from the accepts; what the coordinator still chooses is the prices' start
and path and the close (`exchange`), the deadline, and, without a deadline, the clear's moment and so which
members' accepts count (not with `accept_rounds` 2: then only settled rounds clear, every session has a
deadline, and with genesis `accept_window_ms` W none falls less than W after the close). With a deadline
it cannot clear a member out before it, and a coordinator that is gone after the close holds nothing up:
every member accepted, or the deadline passed (with `accept_rounds` 2: and the rounds settled or stood),
and any member clears. A deadline at or just after the close lets a member clear what stands before the
others could accept (with `accept_rounds` 2: counts them declined, so only the coordinator and those it
told in advance trade forward): only W > 0 on an `accept_rounds` 2 chain stops a coordinator setting one.
On a clean session (opened with `clean_prices`) each accept carries both books and the clear trades the clean
book first: exchange_clean.py has the clean book's rules and the clear of one interval (`clear_interval`).
The accept rounds' records, status and readers are exchange_rounds.py's, importable from here as before; the
`exchange.accept` handler and its checks are exchange_accept.py's (`accept`, re-exported here), the clear's
keys (`cleared_key`, `clearing_key`) exchange_state.py's.
Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, require
from ..results import Event, Reason, RuleError
from ..state import Overlay, StateReader, read_obj
from ..tx import Tx
from . import exchange as xch
from . import exchange_clean as clean_book
from .exchange_accept import _closed_session, accept
from .exchange_clean import held as _held  # noqa: F401  (importable from here, as before it moved)
from .exchange_rounds import (
    _short,
    _standing,
    _status,
    accept_key,
    accepted,
    accepts_at,
    clean_accepts_at,
    due,
    rounds,
    rounds_key,
)
from .exchange_state import clean_prices_key, cleared_key, clearing_key

__all__ = [  # the rounds' names, imported from here by the controller, the edge and the tests as before
    "MAX_CLEAR_CELLS",
    "accept",
    "accept_key",
    "accepted",
    "accepts_at",
    "clean_accepts_at",
    "clear",
    "cleared",
    "cleared_key",
    "clearing_key",
    "due",
    "rounds",
    "rounds_key",
]


# Accepted members × session intervals one `exchange.clear` computes: a bigger session is cleared in parts,
# each the next intervals up to this (256 members × 96 intervals: 0.32 s, 24,480 trades, on the x86 host
# at load 2.1; the contract's limits allow 7 times that in one session: review7 F5)
MAX_CLEAR_CELLS = 256 * 96


def cleared(state: StateReader, name: str) -> dict[str, Any] | None:
    """`{accepted (members), trades (count), txid}` of the session's clear (its last part's txid; plus
    `skipped` when it skipped an interval), or None before it is complete."""
    value: dict[str, Any] | None = read_obj(state, cleared_key(name))
    return value


def _may_clear(
    record: dict[str, Any],
    members: list[bytes],
    status: dict[str, Any] | None,
    tx: Tx,
    ctx: BlockContext,
    stands_at: int | None = None,
) -> None:
    """Who may clear, and when: a member or the coordinator; once the accepts are settled (`rounds`, read at
    the block's time), at once; before that, after the session's deadline (block time), or the coordinator
    at any time on a session opened without a deadline (its rule from before deadlines) — neither with
    genesis `accept_rounds` 2, whose clear needs the rounds settled (past the deadline among the members
    present, the silent standing after each round's wait: `stands_at`, when the next stand) and whose
    sessions all have a deadline. `status` None: a later part of a clear in parts, whose accepts are final."""
    coordinator = tx.sender == record["coordinator"]
    require(
        coordinator or tx.sender in members,
        Reason.FORBIDDEN,
        f"{tx.kind}: only the session's members or its coordinator",
    )
    if status is None or status["settled"]:
        return
    deadline = record.get("deadline")
    accept_rounds = ctx.genesis.params.accept_rounds
    if status["waiting"]:
        waiting = f"{len(status['waiting'])} of {len(members)} members have not accepted"
    elif not status["behind"] and not status["changed"]:  # complete, below the genesis' accept_rounds
        r = status["round"]
        waiting = (
            f"accept round {r} is not settled (the chain's genesis accept_rounds "
            f"{accept_rounds}: every member still trading re-checks in round {r + 1})"
        )
    else:
        r = status["round"]
        behind = f"behind in round {r}: {_short(status['behind'])}" if status["behind"] else ""
        changed = f"changed in round {r}: {_short(status['changed'])}" if status["changed"] else ""
        again = f" (every member still trading re-checks in round {r + 1})" if changed else ""
        waiting = f"accept round {r} is not settled ({'; '.join(x for x in (behind, changed) if x)}){again}"
    # (with accept_rounds 2 every session has a deadline: `exchange.open` refuses one without)
    if accept_rounds >= 2 and ctx.time > record["deadline"]:
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"{waiting}; past the deadline {deadline} the rounds still settle among the members present "
            f"(the chain's genesis accept_rounds {accept_rounds}): the silent stand on their latest accept "
            f"after block time {stands_at}",
        )
    if deadline is None:
        require(coordinator, Reason.FORBIDDEN, f"{tx.kind}: {waiting}: only the coordinator may clear now")
    else:
        require(
            ctx.time > deadline,
            Reason.RULE_VIOLATION,
            f"{waiting} and the deadline {deadline} has not passed (block time {ctx.time})",
        )


def clear(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    name = tx.body["session"]
    record = _closed_session(view, name)
    members = read_obj(view, xch.members_key(name))
    taken = _standing(view, name, members)
    progress = read_obj(view, clearing_key(name))
    if progress is None:  # the first (often the only) clear: who may start it, and when
        params = ctx.genesis.params
        status, _, _, since = _status(
            view, record, name, members, params.accept_rounds, ctx.time, params.accept_wait_ms, taken=taken
        )
        stands_at = None if since is None else since + params.accept_wait_ms
        _may_clear(record, members, status, tx, ctx, stands_at)
        progress = {"next": 0, "trades": 0, "skipped": []}
    else:  # the accepts are frozen since the first part: any member or the coordinator goes on
        _may_clear(record, members, None, tx, ctx)
    prices = read_obj(view, xch.prices_key(name))
    clean = clean_book.is_clean(record)  # a clean session: two books, two cells per member and interval
    clean_prices: list[int] = read_obj(view, clean_prices_key(name)) if clean else []
    first, intervals, start = record["first_interval"], record["intervals"], progress["next"]
    end = min(intervals, start + max(1, MAX_CLEAR_CELLS // max(1, len(taken) * (1 + clean))))
    events: list[Event] = []
    skipped: list[dict[str, Any]] = list(progress["skipped"])
    for t in range(start, end):
        at = (xch.micro_per_wh(prices[t]), None if not clean else xch.micro_per_wh(clean_prices[t]))
        made, skip = clean_book.clear_interval(view, name, first + t, at, taken, t)
        events += made
        if skip is not None:
            skipped.append(skip)
    trades = progress["trades"] + len(events)
    if end < intervals:  # a part: the next clear goes on from `end`
        view.put_obj(clearing_key(name), {"next": end, "skipped": skipped, "trades": trades})
        part = {"session": name, "first": first + start, "last": first + end - 1, "trades": len(events)}
        return [("exchange_clearing", part), *events]
    if start > 0:
        view.delete(clearing_key(name))
    counts = {"accepted": len(taken), "trades": trades}
    # `skipped` only when an interval was: a clear that skips none keeps the bytes it had before the rule
    extra = {"skipped": skipped} if skipped else {}
    view.put_obj(cleared_key(name), {**counts, "txid": tx.txid, **extra})
    return [("exchange_cleared", {"session": name, **counts, **extra}), *events]
