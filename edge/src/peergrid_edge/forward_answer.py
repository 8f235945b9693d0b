"""One MGMC's answer to a forward accept round: its re-check of the set round k left, posted as its round k + 1.

Promises: `answer(agent, record, state, k)` re-checks the agent's accept against the clear's cut of the set
round k left (`accepts_at`, both books' on a clean session: `forward_clean.standing_books`) with
`forward.recheck` and its conventional day computed once (`conventional_row`): unchanged if its day with what
it would get pays, else the largest part that does, else zeros; reductions only in the first `REDUCTIONS`
re-checks (`commit`'s), with the session's exchange fee. A declining agent, or one whose re-check failed (a
solver error: one warning line), posts zeros. It posts that as `exchange.accept`, same `clean` as its
standing accept, and on success updates the agent's posted positions, round, decision and costs. A round the
chain moved past (`accepts_at(k)` None, or the agent not in it) is filed in `agent.refused` unposted. A post
not final yet is left to the next `due`; a refusal because the round is not open yet at the block's time or
its nonce was taken (`RETRIED`) is answered again after the next final block (`agent.early`); any other
refusal files the round for good (review10 F3). Reads the agent's replica; never another MG's private data.
Split from forward_agent.py (the accept, the rounds' loop and the clear), which keeps `_answer` as its seam.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from peergrid_controller.baselines import conventional as conventional_costs
from peergrid_controller.forward import Recheck, recheck
from peergrid_controller.model import Scenario
from peergrid_edge.exchange_io import ROLE, NotFinal, SessionFailed, submit_final
from peergrid_edge.forward_clean import accept_body, closing_books, standing_books
from peergrid_edge.replicas import NONCE_TAKEN
from peergrid_ledger.contracts.exchange_clearing import accepted, accepts_at
from peergrid_ledger.contracts.market_fee import session_fee
from peergrid_ledger.results import Reason

if TYPE_CHECKING:
    from peergrid_edge.forward_agent import ForwardAgent

log = logging.getLogger("peergrid.edge.forward")

# the re-checks that may reduce an accept (rounds 2 to 5), then a failing MG declines: `commit`'s reductions
REDUCTIONS = 4
# refusals of a round's answer that a later block may not repeat: the round not open yet at the block's time
# (exchange_accept `_next_round`), its nonce taken by another transaction of this MGMC (replicas.NONCE_TAKEN)
RETRIED = (Reason.DUPLICATE.value, NONCE_TAKEN)


def conventional_row(agent: ForwardAgent) -> tuple[float, ...]:
    """This MG's conventional day per interval (its day alone), computed once per agent."""
    if agent._conventional is None:
        alone = Scenario(agent.mg.name, agent.dt, (agent.mg,))
        agent._conventional = conventional_costs(alone).per_interval[agent.mg.name]
    return agent._conventional


async def answer(agent: ForwardAgent, record: dict[str, Any], state: Any, k: int) -> None:
    """Post this MGMC's round k + 1: its re-check of the set round k left (zeros when it declines)."""
    session, key = agent.session, agent.key.public
    books = bool(record.get("clean"))  # a clean session: both books' accepts, general then clean
    standing = standing_books(state, session, k) if books else accepts_at(state, session, k)
    mine = accepted(state, session, key)
    if standing is None or mine is None or key not in standing:
        agent.refused.add(k)  # the chain moved past round k + 1 for someone: nothing left to answer
        return
    zeros = (0,) * record["intervals"] * (2 if books else 1)
    checked: Recheck | None = None
    if agent.declining:
        positions, decision = zeros, "declined"
    else:
        try:
            rows = {m.hex(): row for m, row in standing.items()}
            conventional = conventional_row(agent)
            checked = recheck(
                agent.mg, agent.dt, closing_books(record), rows, key.hex(), conventional,
                may_reduce=k <= REDUCTIONS, fee=session_fee(record),
            )  # fmt: skip
            positions, decision = checked.positions, checked.decision
        except Exception as exc:  # its re-check failed (a solver error): it declines
            log.warning("forward trades of %s: re-check failed (%s): declining", session, exc)
            positions, decision = zeros, "declined"
    body = accept_body(session, positions, mine["clean"], books)
    try:
        await submit_final(
            agent.ledger, agent.key, "exchange.accept", body, agent.timeout_s, agent.before_submit
        )
    except NotFinal:  # it may still land: the next `due` tells
        return
    except SessionFailed as exc:
        _refused(agent, k, exc)
        return
    agent.posted, agent.round = tuple(positions), k + 1
    if decision != "kept":
        agent.decision = decision
    agent.costs = (_cost(agent, checked, decision), sum(conventional_row(agent)))
    log.info("forward trades of %s: round %d (%s) %s", session, k + 1, decision, agent.posted)


def _refused(agent: ForwardAgent, k: int, exc: SessionFailed) -> None:
    """File round k as answered for good only when the chain has moved past it (`accepts_at(k)` None:
    someone is already past round k + 1) or refused it for a reason no later block changes; a round not
    open yet at the block's time (`duplicate`: "round k + 1 opens once …", the proposer's clock behind
    this MGMC's) or a nonce another transaction took is answered again after the next final block."""
    past = accepts_at(agent.ledger.state(ROLE), agent.session, k) is None
    if not past and any(f"{word}: " in str(exc) for word in RETRIED):
        agent.early[k] = agent._height()
        log.info(
            "forward trades of %s: round %d not open yet on the chain, again after the next block: %s",
            agent.session, k + 1, exc,
        )  # fmt: skip
        return
    log.warning("forward trades of %s: round %d refused: %s", agent.session, k + 1, exc)
    agent.refused.add(k)


def _cost(agent: ForwardAgent, checked: Recheck | None, decision: str) -> float:
    conventional = sum(conventional_row(agent))
    if decision == "declined":
        return conventional
    if checked is None or decision != "kept":
        return float("nan")  # reduced: its next re-check prices what it gets then
    return conventional if checked.day is None else checked.day.cost - sum(checked.money)
