"""The DSO's reopening of a closed trading interval (`market.reopen`, design step 6: its adjustment contract makes
the MGMCs re-bargain), split from `market_closing`.

Promises: only the DSO (`dso` role: the MGMCs cannot reopen a bargain on their own) reopens, for the next
iteration (last + 1), at most genesis `max_reopens` times, while none of the interval's trades is settled and
not after the reopening's own deadline `until` (block time); never an interval whose trades an exchange session
cleared (no positions to re-bargain). The closed trades stay, marked superseded (never deleted, never settled;
their list kept in `mkt/superseded`); positions stand; the reopening's record names the interval's highest
round, from which every MGMC numbers its re-bargaining rounds, and on a `close_on_clock` chain its block time
`at`, from which the close rule counts again (`market_close_time`). Pure; no I/O.
"""

from __future__ import annotations

from .. import keyspace as ks
from ..machine import BlockContext, require, require_role
from ..results import Event, Reason, RuleError
from ..state import Overlay, read_obj
from ..tx import Tx
from .market_state import (
    bid,
    interval_key,
    members,
    offer,
    reopen_key,
    reopening,
    superseded_key,
    trade,
    trade_key,
)


def reopen(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    """Reopen a closed interval for re-bargaining (the DSO only): its trades become superseded history (kept,
    marked, never settled); positions stand and later rounds' moves revise them; `trade` closes it again."""
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    interval, iteration = tx.body["interval"], tx.body["iteration"]
    require(
        ctx.time <= tx.body["until"],
        Reason.CLOSED,
        f"the reopening's deadline {tx.body['until']} passed (block time {ctx.time})",
    )
    current = read_obj(view, interval_key(interval))
    require(current is not None, Reason.RULE_VIOLATION, f"interval {interval} is open: nothing to reopen")
    assert current is not None
    if "session" in current:  # exchange_clearing.clear: the forward trades have no positions to re-bargain
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"interval {interval}'s trades are exchange session {current['session']!r}'s forward trades: "
            "no market positions to re-bargain",
        )
    last = reopening(view, interval)
    done = 0 if last is None else int(last["reopens"])
    previous = 0 if last is None else int(last["iteration"])
    if iteration <= previous:
        raise RuleError(
            Reason.DUPLICATE, f"iteration {iteration} is not after the last reopening's {previous}"
        )
    require(
        iteration == previous + 1,
        Reason.RULE_VIOLATION,
        f"iteration {iteration} skips ahead: the next reopening of interval {interval} is {previous + 1}",
    )
    limit = ctx.genesis.params.max_reopens
    require(
        done < limit,
        Reason.RULE_VIOLATION,
        f"interval {interval} was reopened {done} times (at most {limit})",
    )
    agreed = [(tid, trade(view, tid)) for tid in current["trades"]]
    for _tid, record in agreed:
        assert record is not None, "an interval's trade list names a trade that is not in state"
        require(record["settlement"] is None, Reason.ALREADY_SETTLED, "a trade of this interval is settled")
    for tid, record in agreed:
        assert record is not None
        record["superseded"] = done
        view.put_obj(trade_key(tid), record)
    top = 0
    for seller in members(view, interval, "sellers"):
        top = max(top, (offer(view, interval, seller) or {"round": 0})["round"])
    for buyer in members(view, interval, "buyers"):
        top = max(top, (bid(view, interval, buyer) or {"round": 0})["round"])
    ref = tx.body["ref"]
    history = {"by": tx.sender, "iteration": iteration, "ref": ref, "trades": current["trades"]}
    view.put_obj(superseded_key(interval, done), history)
    record = {"by": tx.sender, "iteration": iteration, "ref": ref, "reopens": done + 1, "round": top}
    if ctx.genesis.params.close_on_clock:  # only then: a reopening on any other chain keeps its bytes
        record["at"] = ctx.time  # its re-bargaining window starts here (`market_close_time`)
    view.put_obj(reopen_key(interval), record)
    view.delete(interval_key(interval))
    return [("reopened", {"interval": interval, "iteration": iteration, "reopens": done + 1, "round": top})]
