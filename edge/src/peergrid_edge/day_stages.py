"""The trading agent's stages before its first interval (split from `trader.py`, which runs them): the day-ahead
exchange session and, once it completed, its forward trades.

Promises: with `market.dayahead`, before the first interval, `run_dayahead` runs the day-ahead session
(`dayahead_agent.py`) with this MGMC one member among every anonym of the MGMC chain's genesis, and
`run_forward` its forward trades (`forward_agent.py`: this MG's own accept, the coordinator's clear). Both
outcomes are recorded and shown in the agent's `status`; a failed stage changes nothing else (the MGMC trades
intraday as before). Each stage's record says when it started and ended (`stage_times`: wall s, beside the
outcome, as an interval record's `times`) and its end is logged with how long it took. An interval the clear closed is then traded by its forward trades (`trader.py`). A
trader restarted before the first interval runs the stages again, which resume the session from its
checkpoint in the data directory (`DAYAHEAD_CHECKPOINT`), rejoin it or read its outcome (review8 F3). The
stages end before the first interval they trade (`dayahead_deadline`, review7 F7).
Never reads another MG's private data.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from peergrid_controller.dayahead import starting_prices
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.exchange_io import Deadline, SessionOutcome
from peergrid_edge.forward_agent import ForwardAgent
from peergrid_edge.forward_chain import DEADLINE_MARGIN_S, ForwardOutcome, margin_s
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
    the MGMC chain's genesis (public): its outcome is recorded with when it started and ended (`clock`, wall
    s) and shown in `status`; a failed stage changes nothing else (this MGMC trades intraday as before). Its
    positions are not forward trades."""
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
    stage = DayAheadAgent(
        agent.ledger, agent.anonym, agent.mg, agent.dt, members, session,
        opening_prices=starting_prices(agent.scenario), config=dayahead_config(s), timeout_s=s.phase_timeout_s,
        before_submit=agent._stopped, phases=s.dayahead_gensets, deadline=deadline,
        checkpoint=agent.d.settings.data_dir / DAYAHEAD_CHECKPOINT,
        # review12 F6: the coordinator opens once the DSO priced every member for the intervals traded here
        tariff_wait_s=s.dayahead_tariff_wait_s, priced=range(s.first_interval, agent._last_interval() + 1),
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
    return outcome
