"""What one MGMC's day-ahead session refuses up front, before it opens, joins or posts anything.

Promises: `refusal(agent)` raises `SessionFailed` naming the reason when the session configured for
`DayAheadAgent` is beyond the edge's scope (the agent's module contract): fewer than two distinct members,
this MGMC's key not among them, a deadline already past for a session not yet on the chain, a genset MG
without the commitment phases or with `recommits` other than 1 (whether another MG's commitment changed is
private), its floors or caps on the chain other than its own config (`dayahead_rules.own_rules_differ`: the
coordination orders let-backs by the chain's rules), and for the coordinator opening prices that are not
one finite price per interval. Returns None when none applies. Reads the agent's config and its replica's
state only; never posts, never changes the agent. Split from dayahead_agent.py (its state and seams).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from peergrid_edge.dayahead_rules import own_rules_differ
from peergrid_edge.exchange_io import ROLE, SessionFailed

if TYPE_CHECKING:
    from peergrid_edge.dayahead_agent import DayAheadAgent


def refusal(agent: DayAheadAgent) -> None:
    """Raise SessionFailed when this session is beyond the edge's scope (the module contract)."""
    cfg, mg = agent.cfg, agent.mg
    if len(agent.members) < 2 or len(set(agent.members)) != len(agent.members):
        raise SessionFailed(f"refused up front: {len(agent.members)} members, at least two distinct needed")
    if agent.key.public not in agent.members:
        raise SessionFailed("refused up front: this MGMC's trading key is not among the members")
    started = agent.view.record() is not None  # a restart: the session is judged as the chain holds it
    if agent.deadline is not None and not started and agent.clock() >= agent.deadline.close_s:
        raise SessionFailed(
            f"refused up front: the day-ahead deadline ({agent.deadline.close_s:.3f}, wall s) has passed "
            "(the stage must end before the first interval it trades)"
        )
    if mg.gensets and not agent.phases:
        raise SessionFailed(
            f"refused up front: {mg.name} has gensets and the session is configured without the "
            "commitment phases (every member must be configured with them)"
        )
    if agent.phases and cfg.recommits != 1:
        raise SessionFailed(
            f"refused up front: recommits {cfg.recommits}; the edge session decides genset on/off once "
            "(whether another MG's commitment changed is private)"
        )
    differ = own_rules_differ(mg, agent.ledger.state(ROLE), agent.key.public, agent.first_interval)
    if differ:
        raise SessionFailed(
            f"refused up front: {differ} (the coordination orders let-backs by the chain's rules)"
        )
    if agent.is_coordinator:
        if agent.opening is None or len(agent.opening) != agent.n:
            got = None if agent.opening is None else len(agent.opening)
            raise SessionFailed(f"refused up front: {got} opening prices for {agent.n} intervals")
        bad = [t for t, p in enumerate(agent.opening) if not math.isfinite(p)]
        if bad:
            raise SessionFailed(f"refused up front: the opening price of interval {bad[0]} is not finite")
