"""What an MGMC knows of its forward trades: the chain's record of them and the agent's typed outcome.

Promises: `ForwardOutcome` is what `ForwardAgent.run()` returns (cleared, or not with why) and what the
trader and the day's stages record; `forward_session(state, t)` names the exchange session whose clear closed
chain interval t (None: not forward-traded); `forward_plan` is this MG's net P2P export fixed by forward
trades over some intervals (what the trader's day plan holds fixed); `cleared_net` is the intervals a cleared
session closed and this MG's net export in each; `genesis_params` the chain's genesis (`accept_rounds`,
`accept_wait_ms`, `block_max_future_ms`); `margin_s` how far past a deadline in block time this MGMC's clock
must be before it counts on a transaction landing after it. Pure reads of public chain state; never writes,
never reads another MG's private data. Split from forward_agent.py (the agent's accepts, rounds and clear),
which re-exports `ForwardOutcome`, `forward_session`, `forward_plan`, `margin_s` and `DEADLINE_MARGIN_S`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peergrid_edge.chain_bargaining import position
from peergrid_edge.exchange_io import ROLE, Replica
from peergrid_ledger import query
from peergrid_ledger.genesis import Params

# the least margin past the chain's deadline on this clock before a round or a clear is posted: block time is
# the proposer's wall clock, so a transaction sent at the deadline to the millisecond can land in a block
# stamped before it. The margin is the chain's genesis `block_max_future_ms` when larger (`margin_s`): the
# clock difference the chain tolerates between its nodes (a block may lead a validator's clock by that much)
DEADLINE_MARGIN_S = 0.25


@dataclass(frozen=True)
class ForwardOutcome:
    session: str
    cleared: bool
    # why there are no forward trades (the intervals are bargained intraday) or, when cleared, why this MG
    # has none (its accept failed: it trades nothing forward); "" otherwise
    reason: str
    # this MG's accept: "whole", "reduced", "declined", "nothing" (no position), "earlier" (posted before this
    # MGMC restarted: the chain keeps the first), "" (none posted); a re-check that reduced or declined it
    # in a later round says so
    decision: str
    accepted: tuple[int, ...]  # Wh per session interval (+ sale): this MG's latest accept
    # its day cost with what its latest check found (its latest re-check: the clear's cut of the accepts it
    # re-checked; round 1: its accept traded in full), payments included; NaN after a reduction not yet
    # re-checked
    day_cost: float
    conventional: float  # its conventional day cost
    members_accepted: int  # accepts the clear counted
    intervals: tuple[int, ...]  # chain intervals the clear closed (with any trade)
    net_wh: tuple[int, ...]  # this MG's cleared net export per session interval (+ sale)
    rounds: int = 0  # the round of this MG's latest accept this process saw (0: none)


def margin_s(params: Params) -> float:
    """How far past the chain's deadline (block time) this MGMC's clock must be before it counts on a
    transaction landing after it: the chain's tolerance for clock differences (genesis `block_max_future_ms`),
    at least `DEADLINE_MARGIN_S`."""
    return max(DEADLINE_MARGIN_S, params.block_max_future_ms / 1000)


def forward_session(state: Any, interval: int) -> str | None:
    """The exchange session whose clear closed chain `interval` (public), or None: not forward-traded."""
    record = query.interval(state, interval)
    session = record.get("session")
    return str(session) if record["closed"] and session is not None else None


def forward_plan(state: Any, me: bytes, intervals: Sequence[int], dt: float) -> list[float] | None:
    """This MG's net P2P export (kW) fixed by forward trades in each of `intervals` (0 where none), or None
    when it has none there: what the trader's day plan holds fixed."""
    plan = [
        position(state, t, me)[1] / dt if forward_session(state, t) is not None else 0.0 for t in intervals
    ]
    return plan if any(plan) else None


def genesis_params(ledger: Replica) -> Params:
    """The MGMC chain's genesis parameters (`accept_rounds`, `accept_wait_ms`), as the replica holds them."""
    params: Params = ledger.replicas[ROLE].app.genesis.params
    return params


def cleared_net(
    state: Any, record: dict[str, Any], session: str, me: bytes
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the chain intervals `session`'s clear closed, this MG's cleared net export in Wh per session interval
    (+ sale; 0 where the clear closed nothing)): what the session's record (`exchange.session`) and the market
    contract's trades say."""
    first = record["first_interval"]
    closed, net = [], []
    for t in range(record["intervals"]):
        ours = forward_session(state, first + t) == session
        if ours:
            closed.append(first + t)
        net.append(round(position(state, first + t, me)[1] * 1000) if ours else 0)
    return tuple(closed), tuple(net)
