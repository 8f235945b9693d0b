"""When a `trade` may close a trading interval: the market contract's close rule on the genesis' interval clock
(review13 F1b), one function for the contract (`market_closing.agree_trades` refuses a `trade` before it) and
for the edge's closer (edge chain_bargaining.close_interval waits for it instead of being refused); and the
genesis' round cap (`check_rounds`), which bounds that rule and is also a plain declared cap on any chain.

The rule, only on a chain whose genesis sets `close_on_clock` 1 (which needs `settle_by_both`, so the clock):
  opened = interval k's start (on the chain's clock, `market_clock`: epoch + k x settle_interval_ms), or the
           block time `at` of its last `market.reopen` when later (kept in the reopening's record on such
           chains);
  no `trade` before opened + `close_after_ms` (a fixed bargaining window), and with `close_quiet_ms` Q > 0
  none before min(last + Q, hard) either, where
    last = the later of opened and the block time of the interval's last accepted `offer`, `bid` or `move`
           (`moved`, written only on a chain with Q, so every other chain keeps its state bytes), and
    hard = the later of the interval's end on the clock and opened + Q.
So only a book that stood still for Q closes: while the MGMCs move at least once in Q - the edge's phases
land a block apart - nobody closes the interval under them, at its start or at once after the DSO reopened it
(the book counts as changed then), and the closer the rule names waits for the quiet instead.
Why so, against an attacker holding one MGMC's keys (its node key, an authority, and its anonym):
- every accepted position counts, changed or not: an edge's last round re-posts what stood, and counting only
  changes would leave a book "quiet" through a phase in which every member confirmed but one still had to
  move; a no-op move buys the attacker nothing that alternating two prices would not.
- it can keep a book from being quiet by moving once per Q (each move one round past the interval's highest at
  most, `market_positions._check_round`: a 15-min interval at a move per 500-ms block takes 1,800 of the schema's
  1,000,000 rounds), so the rule binds only until the interval's end: after it the energy was delivered,
  nothing is left to bargain and anyone may close. Without more, its worst is to hold the interval unclosed
  to its end, the whole interval's P2P trading lost at one transaction per Q.
- so genesis `max_rounds` R (`check_rounds`) caps the rounds of one bargaining: no offer, bid or move past
  its opening's round (0, or the reopening's `round`, the interval's highest when the DSO reopened it) + R,
  and a re-bargaining's moves numbered on from the reopening's round (as the edge numbers them). A key's
  every move is a later round than its last, so it posts at most R + 1 times an opening (its opening and R
  moves; after a reopening R), and a `trade` lands Q after the book's last change: one key keeps the book
  from being quiet at most R + 1 quiet periods past the honest MGMCs' last move (k colluding keys k x
  (R + 1)), not to the interval's end. Honest MGMCs never reach it while their own cap (edge
  `market.max_rounds`: rounds 1 .. max_rounds, or the reopening's round + 1 .. + max_rounds) is at most R.
  Refused, not merely left out of `moved`: the book then stands still, and nobody spends state on moves
  that bargain nothing. The cap is also a plain declared cap, with or without the clock and the quiet rule
  (a chain without them, such as the default lab's, names the rounds its MGMCs play): `check_rounds` reads
  only the cap and the interval's reopening record, which every chain keeps, so it refuses the same moves
  there, and the DSO's console can tell a bargaining that stopped at the cap from one still moving. Not a per-party rule instead (a move that runs ahead of every other member not
  counting): a key that sat at a low round catches up one round a move, each within the others' rounds and
  so counted, and a rule that also discounted moves behind the highest would let a key racing its own
  rounds ahead (one past its own is always allowed) make every honest move look behind: the close under
  the moving MGMCs again.
- a reopening later than the interval's end (a slow DSO) waits Q once (hard = opened + Q): its members can
  answer the reopening, and nobody holds a closed-out interval open for ever.
- block time is the proposer's: one block without honest moves may be a late phase or a proposer (the
  attacker's node, in rotation) leaving them out, so Q should span more than two block periods; a `trade`
  ordered before the moves in the block that ends the quiet still closes on the positions before them.
  No ordering rule closes that: the book was already quiet for Q (the moves in that block are the first for
  Q), and a proposer that may order them after its `trade` may as well leave them out of its block, which no
  rule on one block's order can see; only Q spanning more blocks than one proposer makes in a row does.
Pure; no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import keyspace as ks
from ..machine import BlockContext
from ..results import Reason, RuleError
from ..state import Overlay, StateReader
from .market_clock import fix_clock, interval_end, interval_start
from .market_state import reopening

if TYPE_CHECKING:
    from ..genesis import Params


def moved_key(interval: int) -> bytes:
    """`mkt/moved/<u64 interval>`: the block time of the interval's last accepted offer, bid or move."""
    return b"mkt/moved/" + ks.u64(interval)


def note_move(view: Overlay, ctx: BlockContext, interval: int) -> None:
    """An offer, bid or move of `interval` landed: its book changed at this block's time (only on a chain
    with genesis `close_quiet_ms`; every other chain keeps its state bytes). It fixes a posted clock
    (`market_clock.fix_clock`)."""
    fix_clock(view, ctx, interval, "position")
    if ctx.genesis.params.close_quiet_ms:
        view.put(moved_key(interval), ks.encode_int(ctx.time))


def moved(state: StateReader, interval: int) -> int | None:
    """The block time of the interval's last offer, bid or move on a chain with `close_quiet_ms`, else None."""
    raw = state.get(moved_key(interval))
    return None if raw is None else ks.decode_int(raw)


def check_rounds(view: Overlay, ctx: BlockContext, interval: int, round_: int) -> None:
    """On a chain with genesis `max_rounds` R (with or without the quiet rule), refuse (`rule-violation`,
    naming the cap) an offer, bid or move of `interval` at a round past its bargaining's opening + R, and after
    a reopening a move not past the reopening's round: one bargaining takes at most R rounds. Other chains:
    nothing (one lookup of a field)."""
    cap = ctx.genesis.params.max_rounds
    if not cap:
        return
    again = reopening(view, interval)
    base = 0 if again is None else int(again["round"])
    opening = "its opening" if again is None else f"its reopening's round {base}"
    if round_ > base + cap:
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"round {round_} is past interval {interval}'s bargaining: max_rounds {cap} from {opening}, "
            f"so at most round {base + cap}",
        )
    if again is not None and round_ <= base:
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"round {round_}: interval {interval} was reopened at round {base}, its re-bargaining's rounds "
            f"are {base + 1} to {base + cap} (max_rounds {cap})",
        )


def earliest_close(state: StateReader, params: Params, interval: int) -> tuple[int, str] | None:
    """(the first block time at which a `trade` of `interval` is taken, why not before) on this state, or
    None where `trade` has no time rule (no `close_on_clock`). A later offer, bid or move (or reopening) can
    only move it later, never past the interval's end (a late reopening: past its time + close_quiet_ms)."""
    # the chain's clock (`market_clock`): a posted `market.clock`'s epoch, else the genesis'
    start = interval_start(state, params, interval)
    end = interval_end(state, params, interval)
    if not params.close_on_clock or start is None or end is None:  # close_on_clock needs the clock
        return None
    opened, since = start, f"interval {interval} starts at {start}"
    again = reopening(state, interval)
    if again is not None and "at" in again and int(again["at"]) > start:
        opened, since = int(again["at"]), f"interval {interval} was reopened at {again['at']}"
    window = params.close_after_ms
    earliest, why = opened + window, f"{since} and bargains for {window} ms"
    quiet = params.close_quiet_ms
    if quiet:
        last = max(opened, moved(state, interval) or 0)
        hard = max(end, opened + quiet)
        if min(last + quiet, hard) > earliest:
            earliest = min(last + quiet, hard)
            why = (
                f"{since}; its book last changed at {last}: it closes once the book stood still for "
                f"close_quiet_ms {quiet}, or at {hard} whatever moves"
            )
    return earliest, why


def check_close(view: Overlay, ctx: BlockContext, interval: int) -> None:
    """Refuse (`rule-violation`, naming the rule and when it may close) a `trade` of `interval` that comes
    before `earliest_close`; one taken fixes a posted clock (`market_clock.fix_clock`)."""
    rule = earliest_close(view, ctx.genesis.params, interval)
    if rule is not None and ctx.time < rule[0]:
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"{rule[1]}: no trade closes it before {rule[0]} (block time {ctx.time})",
        )
    fix_clock(view, ctx, interval, "trade")
