"""The trading agent's stages around its day (split from `trader.py`, which runs them): before its first interval
the day-ahead exchange session and, once it completed, its forward trades and this MG's make-whole (uplift)
claim; after its last interval the uplift's payments.

Promises: with `market.dayahead`, before the first interval, `run_dayahead` runs the day-ahead session
(`dayahead_agent.py`) with this MGMC one member among every anonym of the MGMC chain's genesis, and
`run_forward` its forward trades (`forward_agent.py`: this MG's own accept, the coordinator's clear). Both
outcomes are recorded and shown in the agent's `status`; a failed stage changes nothing else (the MGMC trades
intraday as before). Each stage's record says when it started and ended (`stage_times`: wall s, beside the
outcome, as an interval record's `times`) and its end is logged with how long it took. An interval the clear closed is then traded by its forward trades (`trader.py`). A
trader restarted before the first interval runs the stages again, which resume the session from its
checkpoint in the data directory (`DAYAHEAD_CHECKPOINT`), rejoin it or read its outcome (review8 F3). The
stages end before the first interval they trade (`dayahead_deadline`, review7 F7).
Uplift (`dayahead_uplift.py`): once the clear recorded its forward trades, `run_forward` posts this MG's claim
(its deviation gain and surplus, from its own model: a few of its own MILPs before the first interval) and
records it (`uplift_claim`); a claim that did not land is posted again in the idle before an interval's slot
where the idle holds an attempt (`retry_uplift_claim` from `agent_day.claim_in_idle`; a chain refusal once;
recorded where its outcome changed, not per retry: review18 C-1); after the day `run_uplift` has the chain
settle the session's
uplift once every forward trade settled (waiting as long as the chain's rules may still settle them:
`UpliftStage.settle`) and records this MG's credit, charge (with an exchange fee: its fee into the fund),
withheld credit and refund above the fund's cap (`uplift`). A restart posts no
second claim and reads a settled uplift; each (re)start settles, beside its day, an uplift of an earlier
session on the scenario's chain intervals still unsettled (`retry_in_background`: review17 U-A), posting no
claim of this MG missing there (review18 C-3: today's model is not that day's). On a chain whose genesis does not enable the uplift contract neither
stage runs nor records anything (the day's records are as before the contract).
Never reads another MG's private data.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from peergrid_controller.dayahead import starting_prices
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_edge import interval_plan
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.dayahead_uplift import UpliftClaim, UpliftOutcome, UpliftStage, enabled
from peergrid_edge.exchange_io import ROLE, Deadline, SessionOutcome
from peergrid_edge.forward_agent import ForwardAgent
from peergrid_edge.forward_chain import DEADLINE_MARGIN_S, ForwardOutcome, forward_session, margin_s
from peergrid_ledger.contracts import exchange_state, uplift
from peergrid_ledger.contracts.exchange_state import reserved_name

if TYPE_CHECKING:
    from peergrid_edge.config import MarketSettings
    from peergrid_edge.trader import MarketAgent

# the forward stage's timeouts in phase timeouts: each member's accept is up to a few day MILPs (its check
# and reductions), heavier than one bargaining move
FORWARD_TIMEOUTS = 4
# the day-ahead stage's deadline before the first interval it trades, in phase timeouts: the clear's (after
# which a member whose coordinator is gone waits one more and clears itself), and before it the accepts'
CLEAR_BEFORE, ACCEPTS_BEFORE = 2, 2
# on a chain without a claim window (uplift_claim_ms 0) the first settle closes the claims: the settling member
# waits this many phase timeouts after the trades settled for a member's missing claim (its after-day stage
# posts it once its own day's settlements ended: review17 U-B)
CLAIM_WAIT_TIMEOUTS = 10
# in the daemon's data directory: its side of the day-ahead session, kept before each post (dayahead_state.py)
DAYAHEAD_CHECKPOINT = "dayahead-checkpoint.json"

log = logging.getLogger("peergrid.edge.stages")


def dayahead_deadline(
    first_start_s: float, phase_timeout_s: float, margin: float = DEADLINE_MARGIN_S
) -> Deadline:
    """The day-ahead stage's deadline, so that the session and its forward trades end before the first
    interval they trade (starting at `first_start_s`, wall s) and leave the intervals their own time: the
    chain's clear deadline `CLEAR_BEFORE` phase timeouts and the clear's `margin` (s: the forward agent's
    `margin_s` of the chain) before that start, the session's close `ACCEPTS_BEFORE` more before it
    (review7 F7)."""
    clear_s = first_start_s - CLEAR_BEFORE * phase_timeout_s - margin
    return Deadline(close_s=clear_s - ACCEPTS_BEFORE * phase_timeout_s, clear_ms=math.floor(clear_s * 1000))


def dayahead_config(s: MarketSettings) -> DayAheadConfig:
    """The session's configuration from this MGMC's settings: the controller's defaults, the clean book as
    `dayahead_clean` says (the coordinator's decides whether a session is a clean one)."""
    return DayAheadConfig(clean_book=s.dayahead_clean)


def _record_stage(
    agent: MarketAgent, stage: str, outcome: Any, started: float, ended: float, done: bool, why: str
) -> None:
    """The stage's record (its outcome, when it started and ended) and its log line."""
    agent._record({stage: asdict(outcome), "stage_times": {"start": started, "end": ended}})
    log.log(
        logging.INFO if done else logging.WARNING,
        "%s stage %s in %.2f s (started %.3f, ended %.3f)%s",
        stage, "done" if done else "failed", ended - started, started, ended, f": {why}" if why else "",
    )  # fmt: skip


async def run_dayahead(agent: MarketAgent, clock: Callable[[], float] = time.time) -> SessionOutcome:
    """The day-ahead exchange session over the scenario's day, this MGMC one member among every anonym of
    the MGMC chain's genesis (public); its slots are the chain intervals of the day its first interval is in
    (slot i: profile index i, `interval_plan.profile_index`), so a first interval on a later day of a
    long-lived chain trades that day's intervals (its window, priced and forward trades too). Its outcome is
    recorded with when it started and ended (`clock`, wall s) and shown in `status`; a failed stage changes
    nothing else (this MGMC trades intraday as before). Its positions are not forward trades."""
    started = clock()
    s = agent.s
    agent.phase = "dayahead"
    genesis = agent.ledger.replicas["mgmc"].app.genesis
    members = sorted(a.key for a in genesis.accounts if "anonym" in a.roles)
    # reserved to the coordinator (the lowest member key): a member that opened the predictable name first
    # would have every MGMC refuse to join and the day's forward stage fail for all (review11 F3)
    session = reserved_name(members[0], f"dayahead/{int(s.t0)}/{s.first_interval}")
    deadline = dayahead_deadline(
        agent._start_of(s.first_interval), s.phase_timeout_s, margin_s(genesis.params)
    )
    # the session's slots are the scenario day's n profile indices on the chain intervals of the day traded:
    # from day 0's first they answered nothing of a window on a later day (R44)
    day_start = interval_plan.day_start(s.first_interval, agent.scenario.intervals)
    stage = DayAheadAgent(
        agent.ledger, agent.anonym, agent.mg, agent.dt, members, session, first_interval=day_start,
        opening_prices=starting_prices(agent.scenario), config=dayahead_config(s), timeout_s=s.phase_timeout_s,
        before_submit=agent._stopped, phases=s.dayahead_gensets, deadline=deadline,
        checkpoint=agent.d.settings.data_dir / DAYAHEAD_CHECKPOINT,
        # review12 F6: the coordinator opens once the DSO priced every member for the intervals traded here
        tariff_wait_s=s.dayahead_tariff_wait_s, priced=range(s.first_interval, agent._last_interval() + 1),
        # M1: it answers as a day that trades only the intervals its forward accept will state (R30-2)
        window=range(s.first_interval, agent._last_interval() + 1),
    )  # fmt: skip
    outcome = await stage.run()
    agent.dayahead = outcome
    _record_stage(agent, "dayahead", outcome, started, clock(), outcome.completed, outcome.reason)
    if stage.unpriced:  # the coordinator opened without them: those forward trades carry no compensation
        agent._record({"dayahead_unpriced": {k.hex(): list(v) for k, v in sorted(stage.unpriced.items())}})
    return outcome


async def run_forward(agent: MarketAgent, clock: Callable[[], float] = time.time) -> ForwardOutcome:
    """The completed session's forward trades (`forward_agent.py`): this MGMC accepts what pays for its own
    MG within the intervals it trades, the coordinator clears, and the outcome is recorded with when it
    started and ended (`clock`, wall s) and shown in `status`. The intervals the clear closed are then
    traded by their forward trades (`run_interval`)."""
    assert agent.dayahead is not None and agent.dayahead.completed
    started = clock()
    s = agent.s
    agent.phase = "forward"
    window = range(s.first_interval, agent._last_interval() + 1)
    stage = ForwardAgent(
        agent.ledger, agent.anonym, agent.mg, agent.dt, agent.dayahead.session, window,
        timeout_s=FORWARD_TIMEOUTS * s.phase_timeout_s, before_submit=agent._stopped,
        # the coordinator's hard stop 0.75 phase after the clear deadline, a member's own clear 1.5 phases after
        # it (half a phase before the first interval): room for accept rounds run after the deadline
        clear_wait_s=1.5 * s.phase_timeout_s,
    )  # fmt: skip
    outcome = await stage.run()
    agent.forward = outcome
    _record_stage(agent, "forward", outcome, started, clock(), outcome.cleared, outcome.reason)
    if outcome.cleared and enabled(agent.ledger):  # a chain without the uplift contract: no stage, no record
        await run_uplift_claim(agent, clock)
    return outcome


def _uplift_stage(agent: MarketAgent, session: str, claims: bool = True) -> UpliftStage:
    s = agent.s
    return UpliftStage(
        agent.ledger, agent.anonym, agent.mg, agent.dt, session, timeout_s=s.phase_timeout_s,
        before_submit=agent._stopped, wait_s=FORWARD_TIMEOUTS * s.phase_timeout_s, grace_s=s.phase_timeout_s,
        claim_wait_s=CLAIM_WAIT_TIMEOUTS * s.phase_timeout_s,
        window=range(s.first_interval, agent._last_interval() + 1),  # its claim deviates only there (L8)
        claims=claims,
    )  # fmt: skip


def claim_missing(agent: MarketAgent) -> bool:
    """This MG's claim on the day's cleared session is not on the chain and may still land (the uplift not
    settled, not refused for good by this run): what `retry_uplift_claim` posts."""
    if agent.uplift_claim_refused or not enabled(agent.ledger):
        return False
    session = _todays_session(agent)
    state = agent.ledger.state(ROLE)
    return (
        session is not None
        and uplift.claim(state, session, agent.anonym.public) is None
        and uplift.outcome(state, session) is None
    )


def _todays_session(agent: MarketAgent) -> str | None:
    """The day's cleared session: this run's forward stage's, or (a restart) the one that closed its first
    interval on the chain."""
    if agent.forward is not None and agent.forward.cleared:
        return agent.forward.session
    return forward_session(agent.ledger.state(ROLE), agent.s.first_interval)


async def retry_uplift_claim(
    agent: MarketAgent, clock: Callable[[], float] = time.time
) -> UpliftClaim | None:
    """In the day's idle time: post this MG's claim again where the forward stage's did not land (not final
    in time, or the MGMC restarted before it: review17 U-B), so a settle after the day finds it; None when
    nothing is missing. A refusal other than "not final" is not tried again this run (it would be refused
    again; the after-day stage tries once more)."""
    if not claim_missing(agent):
        return None
    claim = await run_uplift_claim(agent, clock, _todays_session(agent), agent.uplift_claim_said)
    agent.uplift_claim_refused = bool(claim.reason) and "not final" not in claim.reason
    return claim


def unsettled_sessions(state: Any, me: bytes, intervals: range, skip: str | None) -> list[str]:
    """The cleared exchange sessions that closed any of chain `intervals`, with this MG a member and their
    uplift not settled (an earlier day's, or one whose after-day stage gave up), in interval order."""
    found: list[str] = []
    for t in intervals:
        session = forward_session(state, t)
        if (
            session is None
            or session == skip
            or session in found
            or uplift.outcome(state, session) is not None
        ):
            continue
        record = exchange_state.session(state, session)
        if record is not None and me in record["members"]:
            found.append(session)
    return found


async def retry_unsettled(
    agent: MarketAgent, intervals: range, skip: str | None, clock: Callable[[], float] = time.time
) -> list[UpliftOutcome]:
    """After a (re)start, beside the day: each unsettled uplift of a session that closed one of `intervals`
    (`unsettled_sessions`) settled as after its day, each outcome recorded; this MG posts no claim missing on
    one (review18 C-3: its figures would be today's model's, not that day's; its surplus counts 0 and its
    gain none). An uplift still not ready waits within its stage's bound (the chain's `ready_by`) and is
    tried again at the next start."""
    if not enabled(agent.ledger):
        return []
    outcomes = []
    for session in unsettled_sessions(agent.ledger.state(ROLE), agent.anonym.public, intervals, skip):
        outcomes.append(await _settle_session(agent, session, clock, claims=False))
    return outcomes


def retry_in_background(agent: MarketAgent) -> asyncio.Task[list[UpliftOutcome]] | None:
    """`retry_unsettled` over the scenario day's chain intervals but today's session (its own after-day stage
    settles it) as a task beside the trading loop, or None on a chain without the contract. Never raises:
    a failure is logged."""
    if not enabled(agent.ledger):
        return None
    today = _todays_session(agent)

    async def retry() -> list[UpliftOutcome]:
        try:
            return await retry_unsettled(agent, range(agent._last_interval() + 1), today)
        except Exception:  # the day's trading goes on whatever happens here
            log.exception("retrying the unsettled uplifts of earlier sessions failed")
            return []

    return asyncio.get_running_loop().create_task(retry(), name="uplift retry")


async def _settle_session(
    agent: MarketAgent, session: str, clock: Callable[[], float], claims: bool = True
) -> UpliftOutcome:
    """This MG's claim on `session` posted if missing (`claims`: today's session only), the uplift settled and
    this MG's part recorded."""
    stage = _uplift_stage(agent, session, claims)
    missing = uplift.claim(agent.ledger.state(ROLE), session, agent.anonym.public) is None
    if missing and claims:
        await run_uplift_claim(agent, clock, session)
    elif missing:
        log.warning("uplift of %s: no claim posted for an earlier session (its gain and surplus would be today's "
                    "model's, not that day's): settled without it", session)  # fmt: skip
    started = clock()
    outcome = await stage.settle()
    _record_stage(agent, "uplift", outcome, started, clock(), outcome.settled, outcome.reason)
    return outcome


async def run_uplift_claim(
    agent: MarketAgent,
    clock: Callable[[], float] = time.time,
    session: str | None = None,
    said: str | None = None,
) -> UpliftClaim:
    """This MG's make-whole claim on the cleared session (`dayahead_uplift`), posted once and recorded, unless
    its outcome is the one this run recorded last (`said`, its reason: `MarketAgent.uplift_claim_said`; a
    retry that is "not final" again writes no line, review18 C-1)."""
    if session is None:
        assert agent.forward is not None
        session = agent.forward.session
    started = clock()
    agent.phase = "uplift-claim"
    claim = await _uplift_stage(agent, session).claim()
    if said is None or claim.reason != said:
        _record_stage(agent, "uplift_claim", claim, started, clock(), not claim.reason, claim.reason)
    agent.uplift_claim_said = claim.reason
    return claim


async def run_uplift(agent: MarketAgent, clock: Callable[[], float] = time.time) -> UpliftOutcome | None:
    """After the day (once its trades settled: `agent_settlement.settle_day`): the session's uplift settled on
    the chain and this MG's part of it recorded; None when no day-ahead clear closed the first interval (nothing
    to pay) or the chain has no uplift contract. The session is read off the chain when this run did not clear
    it (a restart), and a claim this MG never posted (it restarted between the clear and its claim) is posted
    first: claims land until the settle."""
    if not enabled(agent.ledger):
        return None
    session = _todays_session(agent)
    if session is None:
        return None
    agent.phase = "uplift"
    return await _settle_session(agent, session, clock)
