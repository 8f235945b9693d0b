"""One MGMC's day-ahead posts within the connection capacity the DSO posted for its trading key, as each is
built and as the chain meets it.

Promises: the chain refuses an `exchange.position` whose net is above the capacity standing for the sender
(`market.capacity`), and an exchange post fixes none: the DSO may post a capacity at any moment of the
session. `cut_as_built` re-reads the capacity when a post is built (after its answer was solved within the
one its bounds read: `DayAheadAgent._bounds`) and cuts the post to it (`connection.within_capacity`,
reduce-only; one warning line), its anchor alike. `cut_after_refusal` is read after the chain refused a
post: where a capacity now stands below it (the chain's own rule read on the replica's state:
`connection.first_above`) the post cut to it is returned, to be sent once more, with one warning naming the
posted net and the capacity; None where the post is within every capacity now, so the refusal was another
rule's (never retried; nor is the second post: its refusal is the stage's failure as before).
Never posts: the agent does (`DayAheadAgent._post`). Reads its replica's state only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from peergrid_edge.connection import first_above, within_capacity

if TYPE_CHECKING:
    from peergrid_edge.dayahead_agent import DayAheadAgent

log = logging.getLogger("peergrid.edge.dayahead")


def _cut(agent: DayAheadAgent, positions: tuple[int, ...], caps: list[int | None]) -> tuple[int, ...]:
    """`positions` within `caps`, and the agent's anchor with them (what it posts; a rejoin may hold none)."""
    cut = within_capacity(positions, caps)
    if cut != positions and len(agent.own) == len(cut):
        agent.own = within_capacity(agent.own, caps, scale=1000)
    return cut


def cut_as_built(agent: DayAheadAgent, k: int, positions: tuple[int, ...]) -> tuple[int, ...]:
    """Iteration k's `positions` within the capacity standing now (one posted after the answer's bounds were
    read), said once where that cuts them; `positions` itself where it does not."""
    cut = _cut(agent, positions, agent._capacities())
    if cut != positions:
        log.warning("day-ahead session %s: iteration %d's answer is above this MG's connection capacity "
                    "(market.capacity): posted within it", agent.session, k)  # fmt: skip
    return cut


def cut_after_refusal(agent: DayAheadAgent, k: int, positions: tuple[int, ...]) -> tuple[int, ...] | None:
    """After the chain refused iteration k's `positions`: cut to the capacity now standing below them (one that
    landed ahead of the post in the chain's order), to post once more; None where none stands below them (the
    refusal was not the capacity's)."""
    caps = agent._capacities()
    above = first_above(positions, caps)
    if above is None:
        return None
    t, net, cap = above
    log.warning(
        "day-ahead session %s: iteration %d's post (net %d Wh in chain interval %d) was refused above the "
        "connection capacity of %d Wh the DSO posted meanwhile: posted once more within it",
        agent.session, k, net, agent.first_interval + t, cap,
    )  # fmt: skip
    return _cut(agent, positions, caps)
