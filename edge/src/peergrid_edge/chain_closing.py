"""Closing an interval's bargaining on the MGMC chain (split from `chain_bargaining.py`, whose rounds end in it; the
DSO's answers and the trader close again after the DSO's loop, as a backup closer).

Promises: `close_interval(agent, t, closer)` has `closer` (where it is this MG: the lowest-keyed seller still in
the rounds) submit `trade` as soon as the chain takes one, and any participant after a phase timeout (the
closer is gone); each sends it only once the genesis' close rule allows it (`earliest_close_ms`: the contract's
own `market_close_time.earliest_close`; with `close_quiet_ms` once the book stood still), so it is never
refused for closing early, and sends it again at the new moment where a move landed meanwhile pushed it later.
True once the interval is closed in a final block; a timed-out wait never counts as closed; an interval without
any offer has nothing to close. Reads only public chain state; never waits past the interval's end for the
rule (it stops binding there).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from peergrid_ledger.contracts import market as contract
from peergrid_ledger.contracts.market_close_time import earliest_close

if TYPE_CHECKING:
    from peergrid_edge.trader import MarketAgent


def earliest_close_ms(state: Any, genesis: Any, t: int) -> int | None:
    """The first block time (ms) at which the chain takes a `trade` of interval t on this state: the contract's
    own rule (`market_close_time.earliest_close`: genesis `close_on_clock`, its `close_after_ms` window from the
    interval's start or reopening, and with `close_quiet_ms` only once the book stood still that long, at the
    latest at the interval's end); None where `trade` has no time rule. A later move can only push it later."""
    rule = earliest_close(state, genesis.params, t)
    return None if rule is None else rule[0]


async def _wait_for_rule(agent: MarketAgent, t: int, genesis: Any) -> None:
    """Sleep until the chain takes a `trade` of interval t by this replica's state and this node's clock,
    looking again after each sleep: a move that landed meanwhile moved the moment on (never past the
    interval's end, where the rule stops binding). Returns at once without a genesis (a stand-in ledger) or
    a rule, or once the interval is closed."""
    while genesis is not None:
        state = agent.ledger.state("mgmc")
        earliest = earliest_close_ms(state, genesis, t)
        if contract.closed(state, t) or earliest is None or earliest / 1000 <= time.time():
            return
        await asyncio.sleep(earliest / 1000 - time.time())


async def _submit_close(agent: MarketAgent, t: int, genesis: Any) -> None:
    """This MG's `trade` of interval t, sent once the chain takes one (`_wait_for_rule`), not to be refused;
    refused all the same because the book moved before it landed (the rule's moment is later now), sent again
    at the new moment. Ends once it landed, the interval is closed, or it was refused while the rule allowed
    it (another reason: the caller's wait for a final closing says what became of the interval). Each round
    waits until a strictly later moment, never past the interval's end: it ends."""
    while True:
        await _wait_for_rule(agent, t, genesis)
        if await agent._submit("mgmc", agent.anonym, "trade", {"interval": t}):
            return
        state = agent.ledger.state("mgmc")
        earliest = earliest_close_ms(state, genesis, t) if genesis is not None else None
        if contract.closed(state, t) or earliest is None or earliest / 1000 <= time.time():
            return


async def close_interval(agent: MarketAgent, t: int, closer: bytes | None) -> bool:
    """Close interval t: `closer` (if it is this MG) submits `trade` as soon as the chain takes one (its genesis'
    close rule: `earliest_close_ms`; with `close_quiet_ms` once the book stood still, so the closer waits
    out the quiet instead of being refused); if it is not closed in a final block within a phase timeout,
    this MG submits `trade` itself (any participant may: the closer is gone), by the same rule.
    True once closed in a final block; a timed-out wait never counts as closed. An interval without any
    offer has no trades and nothing to close (False)."""
    agent.phase = "close"

    def done(state: Any) -> bool:
        return contract.closed(state, t)

    state = agent.ledger.state("mgmc")
    if done(state):
        return True
    if not contract.members(state, t, "sellers"):
        return False
    replicas = getattr(agent.ledger, "replicas", None)  # a stand-in ledger without them: no genesis, no rule
    genesis = replicas["mgmc"].app.genesis if replicas is not None else None
    if closer == agent.anonym.public:
        await _submit_close(agent, t, genesis)
    if await agent.ledger.wait_for("mgmc", done, agent.s.phase_timeout_s):
        return True
    await _submit_close(agent, t, genesis)
    return bool(await agent.ledger.wait_for("mgmc", done, agent.s.phase_timeout_s))
