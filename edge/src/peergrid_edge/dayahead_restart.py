"""How a restarted MGMC takes up its day-ahead session again (review8 F3): resumed, rejoined, or found closed.

Promises: an MGMC that starts again with the same session finds it on the chain. Open: with its checkpoint
(`DayAheadAgent.checkpoint`, written before each post: `dayahead_state`) matching the chain, it resumes at
that post exactly (`resume`: the book, its unrounded anchor, verdict, phase (on a clean session, the
re-decision runs done) and commitment as they were: the
result to the Wh and the nano, the genset phases too); without one (or a stale or damaged one: logged, not
used) it rejoins from the chain alone (`rejoin`: the public book rebuilt, `dayahead_rejoin`, with a fee
its `drift_from` read back from the session's blocks; anchored at its rounded post once, which moved the
4-MG day's result by at most a Wh and 2,500 nano/kWh in the tests; not a session with the genset phases
past its first responses). On a session with an exchange fee the resume keeps
the fee (re-read from the session's record on the chain), its own marginal values (its checkpoint's
`margins`) and its `drift_from` (the checkpoint's; where that says none, as one written before it was kept
does, read back from the blocks like a rejoin's), but not to the Wh: its day LP with the fee has ties that its warm-started solver breaks by the
process's own solve history (measured: within 241 Wh and 403,750 nano/kWh of the run without the restart, the
same stop after the same iterations; tests/edge/test_edge_fee.py). Either way it posts from the current iteration
on and, as coordinator, steps and closes at the stop, but never closes a failed session it did not open in
this process. Closed (`found_closed`): it takes the outcome the chain shows (a stop: the forward stage
follows; closed before any stop: the stage failed, `SessionFailed`).
Each function acts on the agent's side of the session (its book, anchor, phase, rules, iteration) as the
agent's own steps do, goes on with the rounds (`dayahead_rounds.play_phases`) and through the agent's seams
(`_finish`, `_post`, `_stop_at`, `_first_model`), so that a subclass overriding one is obeyed. Never
guesses: a checkpoint the chain does not bear out is not used.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from peergrid_controller import dayahead
from peergrid_controller.cleanbook import CleanDayModel
from peergrid_controller.dayexchange import Book, answer
from peergrid_controller.daymodel import DayModel
from peergrid_edge.dayahead_clean import (
    declares_clean,
    phased,
    post_positions,
    sellers,
    session_prices,
    side,
)
from peergrid_edge.dayahead_rejoin import BlocksUnread, drift_from, ended, kwh_stop, rebuilt
from peergrid_edge.dayahead_rounds import play_phases
from peergrid_edge.dayahead_state import CheckpointError, load
from peergrid_edge.exchange_io import ROLE, SessionFailed
from peergrid_ledger.contracts import exchange

if TYPE_CHECKING:
    from peergrid_edge.dayahead_agent import DayAheadAgent

log = logging.getLogger("peergrid.edge.dayahead")


async def rejoin(agent: DayAheadAgent, record: dict[str, Any]) -> str:
    """This MGMC restarted mid-session (review8 F3): it takes the public book as every member holds it
    after the chain's last step (`dayahead_rejoin.rebuilt`), and goes on from the current iteration: if
    its earlier process posted it, from that post's step. Its anchor, its own unrounded last answer, died
    with that process: it anchors at the rounded position it posted (at most half a Wh per interval
    off, once; `dayexchange.anchor` on what rounding does to an anchor), and its verdict on the last
    step is "not settled" (the moves need the post before, no longer on the chain): a value stop may
    come one iteration later. With a fee, what its verdicts wait on once the fee's drift lowered ρ
    (`Book.drift_from`) is read back from the session's blocks (`drift_of`). A session with the commitment
    phases is not rejoined past its first responses: which phase it is in and this MG's commitment are its
    own, not on the chain."""
    cfg = agent.cfg
    restarted = agent.rules.restarted(record["iteration"])
    if restarted:
        raise SessionFailed(restarted)
    if agent.phases:
        raise SessionFailed(
            f"restarted during session {agent.session!r} (iteration {record['iteration']}): a session with "
            "the commitment phases is not rejoined (its phase and this MG's commitment are not on the chain)"
        )
    declared = sellers(agent.ledger.state(ROLE), agent.session, agent.members)
    if agent.clean and record["iteration"] > 0 and declared is not None and phased(cfg, declared):
        raise SessionFailed(
            f"restarted during clean session {agent.session!r} (iteration {record['iteration']}) with a clean "
            "seller's switch phases: not rejoined (its phase and a seller's switch are not on the chain)"
        )
    agent.rejoined, agent.relaxed = True, False
    state = agent.ledger.state(ROLE)
    book = agent.book = rebuilt(cfg, state, agent.session, agent.members)
    agent.iteration = record["iteration"]
    if kwh_stop(cfg, state, agent.session, agent.members):  # reached; the coordinator died before its close
        agent.stop = "kwh"
        return await agent._finish()
    k = record["iteration"]
    mine = exchange.position(state, agent.session, agent.key.public)
    assert mine is not None  # `SessionView.opened` checked the membership
    agent.posted = post_positions(mine)
    agent.own = tuple(q / 1000 for q in agent.posted)
    # after the reads above (of the state the book was rebuilt from): it awaits, the loop goes on meanwhile
    book.drift_from = await drift_of(agent, book)
    log.warning("day-ahead session %s: rejoined at iteration %d (%s), its anchor its rounded post",
                agent.session, k, "its post of it on the chain" if mine["iteration"] == k else "to post")  # fmt: skip
    model = model_for(agent, book)
    return await play_phases(agent, model, agent.own, k if mine["iteration"] == k else None)


async def drift_of(agent: DayAheadAgent, book: Book) -> float | None:
    """With a fee, the imbalance at which the fee's drift first lowered ρ (`Book.drift_from`, what this
    MG's verdicts wait on), read back from the session's blocks on its replica (`dayahead_rejoin.drift_from`);
    blocks it cannot read are logged as an error and the book goes on without (None: its MG may then say
    settled before the others, whose verdicts the close still needs), never a failed stage. None without a
    fee (nothing read)."""
    if not book.fee:
        return None
    replica = agent.ledger.replicas[ROLE]
    try:
        found = await drift_from(book, agent.session, agent.members, replica.store, replica.app.head().height)
    except BlocksUnread as exc:
        log.error("day-ahead session %s: the fee's drift not read back (%s); rejoined without it, its "
                  "verdicts may say settled before the others'", agent.session, exc)  # fmt: skip
        return None
    if found is not None:
        log.info("day-ahead session %s: the fee's drift first lowered rho at an imbalance of %r kWh (read "
                 "from its blocks)", agent.session, found)  # fmt: skip
    return found


async def resume(
    agent: DayAheadAgent, record: dict[str, Any]
) -> tuple[DayModel, tuple[float, ...], int] | None:
    """This MGMC restarted mid-session with a checkpoint (`dayahead_state`, written before each post):
    if the chain holds that post (or its iteration is still open for it: then it is posted again), the
    session goes on exactly as before the restart: the book, its anchor, its verdict, its phase and
    commitment as they were. None when there is no checkpoint of this session or it does not match the
    chain (stale, unreadable: logged, never used): the caller rejoins from the chain alone."""
    if agent.checkpoint is None:
        return None
    try:
        saved = load(agent.checkpoint, agent.session)
    except CheckpointError as exc:
        log.error("day-ahead session %s: %s; rejoining from the chain alone", agent.session, exc)
        return None
    if saved is None:
        return None
    state = agent.ledger.state(ROLE)
    k, j = record["iteration"], saved.iteration
    mine = exchange.position(state, agent.session, agent.key.public)
    assert mine is not None  # `SessionView.opened` checked the membership
    landed = mine["iteration"] == j and post_positions(mine) == saved.posted and k in (j, j + 1)
    unposted = mine["iteration"] == j - 1 and k == j
    here = k != j or (
        saved.prices == session_prices(record)
        and saved.rho == record["rho"]
        and (j == 0 or rebuilt(agent.cfg, state, agent.session, agent.members).q_wh == list(saved.before))
    )
    if not (landed or unposted) or not here or len(saved.prices) != len(session_prices(record)):
        log.error("day-ahead session %s: its checkpoint of iteration %d does not match the chain (at "
                  "iteration %d, its last post of %d): stale, rejoining from the chain alone",
                  agent.session, j, k, mine["iteration"])  # fmt: skip
        return None
    if saved.rules is not None:
        try:
            agent.rules.restore(saved.rules)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("day-ahead session %s: its checkpoint's rules are malformed (%s: %s); rejoining from "
                      "the chain alone", agent.session, type(exc).__name__, exc)  # fmt: skip
            return None
    agent.kwh = saved.kwh
    agent.rejoined = True
    book = agent.book = Book(agent.cfg, saved.prices, len(agent.members), agent.fee)
    book.rho = saved.rho
    book.drift_from = saved.drift_from  # with a fee: what its verdict waits for once ρ is back
    if saved.before:
        book.take(saved.before)
        book.iterations = j - 1
    if (
        book.drift_from is None
    ):  # no drift yet, or a checkpoint written before it kept one: the blocks say which
        book.drift_from = await drift_of(agent, book)
    agent.relaxed, agent.final_from, agent.commitment = saved.relaxed, saved.final_from, saved.commitment
    agent.redecided = saved.redecided  # the re-decision runs done: it goes on in the one it was in
    agent.margins = saved.margins  # with a fee, what its next verdict values its move by (its own duals)
    if agent.clean and declares_clean(agent.mg) and saved.commitment:  # a seller's switch (no genset)
        agent.switch, agent.commitment = saved.commitment[0], None
    agent.own, agent.posted, agent.iteration = saved.own, saved.posted, j
    model = model_for(agent, book)
    log.warning("day-ahead session %s: resumed at its post of iteration %d from its checkpoint",
                agent.session, j)  # fmt: skip
    if unposted:
        await agent._post(j, saved.posted, saved.settled)
    return model, agent.own, j


def model_for(agent: DayAheadAgent, book: Book) -> DayModel:
    """This MG's day model for the phase it is in (its commitment, once decided), solved once at the
    book's prices, as the proximal step needs."""
    if agent.switch is not None:  # a clean seller's, decided
        model: DayModel = CleanDayModel(agent.mg, agent.dt, side="fixed", clean_intervals=agent.switch)
    elif agent.commitment is None:
        model = agent._first_model()
    else:
        model = dayahead.model_for(
            agent.mg, agent.dt, agent.clean, side(agent.cfg), commitment=agent.commitment
        )
    answer(model, book.price_floats, agent._bounds(), agent.rules.fees())
    return model


def found_closed(agent: DayAheadAgent, record: dict[str, Any]) -> str:
    """The session closed before this MGMC came back: how it ended (`dayahead_rejoin.ended`), or
    SessionFailed when it closed before any stop (nothing to accept)."""
    agent.rejoined = True
    stop = ended(agent.cfg, agent.ledger.state(ROLE), agent.session, agent.members)
    book = agent.book = Book(agent.cfg, session_prices(record), len(agent.members), agent.fee)
    book.iterations = max(0, record["iteration"] - 1)
    if not stop:
        stop = final_round(agent, record)
    if not stop:
        raise SessionFailed(
            f"session {agent.session!r} was closed at iteration {record['iteration']} before any stop while "
            "this MGMC was down: the stage failed"
        )
    log.warning("day-ahead session %s: found closed (%s stop) after a restart", agent.session, stop)
    agent.stop = stop
    return stop


def final_round(agent: DayAheadAgent, record: dict[str, Any]) -> str:
    """A session closed at k with every post of k in: on a judged day the final round after the kWh stop
    at k - 1 (`ended` cannot tell: the posts of k - 2 it would recompute that stop from are gone). This
    MGMC's checkpoint of its post of k says whether that step was the kWh stop, and with its rules'
    state the judgements posted with k are settled as every member settled them: "kwh" if they changed
    nothing (the close was the stop), else "" (the stage failed)."""
    k = record["iteration"]
    if agent.checkpoint is None or record["posted"] != len(agent.members):
        return ""
    try:
        saved = load(agent.checkpoint, agent.session)
    except CheckpointError as exc:
        log.error("day-ahead session %s: %s", agent.session, exc)
        return ""
    if saved is None or saved.iteration != k or not saved.kwh or saved.rules is None:
        return ""
    try:
        agent.rules.restore(saved.rules)
    except (KeyError, TypeError, ValueError):
        return ""
    agent.kwh, agent.relaxed, agent.final_from = True, False, saved.final_from
    return "kwh" if agent._stop_at(k, agent.cfg.max_iterations, False) == "kwh" else ""
