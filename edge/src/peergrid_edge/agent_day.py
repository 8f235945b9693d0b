"""The trading agent's day: where a (re)started agent joins, its intervals one after another, what follows them.

Promises: `run_day` subscribes to the DSO's verdicts, waits until both replicas caught up, and joins at the
first interval nobody has started trading in, looking from the day the wall clock is in (`Calendar.resume_from`;
`resume.resume_interval`: a restarted agent never joins one midway; a forward-traded interval once its slot is
over), or on a first start (no records yet) from the interval in hand on the clock, and says where and why in
one line (`joins_where`); it picks up what its last run left unsettled and an uplift it left unpaid, runs the
day-ahead stage before the day's first interval (`market.dayahead`), then each interval from there to the day's
last, each when the one before ended: idle until its slot (`idle`: a make-whole claim that did not land retried first
where the idle left holds an attempt, cut at the slot's start should it overrun - never on the interval's own
time, review18 C-1 - then refused settlements until the slot), after the DSO's final verdict for the one before
(`dso_verdicts.previous_cleared`), the first with its start state from its own battery readings
and its records (`resume`: the conventional counterfactual, and in one pass the guard's budget and what is
unknown of it). It says which interval it works on (`MarketAgent.working_on`: from its wait for the slot to its
record; None once the loop ended, on a stop or a raise too), which the schedule holder bridges its last plan by
(`agent_dispatch.set_plan`): a plan past its slots is followed only while the agent is on its interval or the
next. An interval that fails is logged and recorded as failed, its cost unknown (`guard.fail_closed_after`), and
the day goes on. After the last: the day's settlements (`agent_settlement.settle_day`) and, unless the daemon
is stopping, the day-ahead make-whole (`day_stages.run_uplift`); a stop while it waits for an interval ends
the day there. Split from trader.py (E23), whose `MarketAgent.run` calls it; it reaches the agent's stages
through the agent (`run_interval`, `_previous_cleared`, `run_dayahead`, `run_forward`), which tests stub.
Day after day (`market.days`, `Calendar`): the chain's intervals go on past the scenario's n (its interval clock
is epoch + k x interval, for any k), and chain interval t is day t // n, planned on the scenario's one day at
profile index t mod n to that day's end (`interval_plan.profile_index`: the agent's model calls map t there, its
chain calls keep t), so day 1000's plans cost what day 0's do. At a day's last interval the agent goes on to the
next day's first in the same loop (`next_day`): its settings and record stamp become the day's
(`Calendar.settings_of`; `resume.record_day`; a line of an earlier day's interval, a settlement given up in the
new day's idles, keeps its own day's stamp: `Calendar.stamp_of`), its guard's budget starts afresh, its battery
state, counterfactual and Settler carry on: the day before's last statements are worked in the new day's idles, as
within a day, and once they had the time `settle_day` gives them at the run's end (`day_before_ends`) the
Settler gives up what is still refused of the days before, as at the run's end (`work_idle`,
`agent_settlement.end_days_before`), never a trade whose counterparty may still state. `settle_day`, which
waits the settlements out, runs after the run's last day only. A (re)started agent joins the day its resume
interval is in, and what it picked up of the day before is given up so too; its counterfactual starts where
the day before's last record left it when the day has none yet (`resume.resumed_counterfactual`), as the
running agent's carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from peergrid_controller.model import Scenario
from peergrid_edge import agent_settlement, day_stages, guard, interval_offer, interval_plan, own_nonce
from peergrid_edge.config import MarketSettings, slot_at, slot_start
from peergrid_edge.resume import (
    has_records,
    initial_state,
    record_day,
    resume_interval,
    resumed_counterfactual,
)
from peergrid_edge.resume_spend import recorded_spend

if TYPE_CHECKING:
    from peergrid_edge.trader import MarketAgent

log = logging.getLogger("peergrid.edge.trader")


async def run_day(agent: MarketAgent) -> None:
    """The agent's day (the module's contract)."""
    agent.d.link.subscribe(agent.d.settings.topic("dso", "verdict"), agent._on_verdict)
    await caught_up(agent)
    calendar = Calendar(agent.s, agent.scenario)  # the owner's rules already in its scenario (`rules_poster`)
    agent.calendar = calendar  # its records' stamps by interval (`MarketAgent._record`)
    first_start = agent.s.record_file is not None and not has_records(agent.s.record_file)
    look_from = calendar.resume_from(time.time(), first_start)
    t = resume_interval(  # from the day now is in: an earlier day's untraded interval is history (`resume_from`)
        agent.ledger.state("mgmc"), look_from, lambda k: time.time() >= agent._start_of(k + 1)
    )
    day = calendar.day_for(t)
    log.info("%s", joins_where(calendar, t, look_from, first_start))
    interval_offer.note_join(agent, t, time.time())  # joined midway: offered in only if its rounds still fit
    enter_day(agent, calendar, day)  # a restart on a later day joins that day
    before = calendar.day_before(day)
    agent_settlement.pick_up(agent, t, before)
    if before is not None:  # what it picked up of the day before is given up as at that day's end
        day_before_ends(agent)
    yesterday = None if before is None else before[1]  # its records' stamp: the counterfactual's start (R44)
    agent.uplift_retry = day_stages.retry_in_background(agent)  # an uplift an earlier run left unpaid (U-A)
    if agent.s.dayahead and t == agent.s.first_interval and (await agent.run_dayahead()).completed:
        await agent.run_forward()
    try:
        stopped = await intervals(agent, t, yesterday)
        while not stopped and not agent.d.stopping.is_set():  # the next day, in the same loop (`next_day`)
            later = next_day(agent, calendar)
            if later is None:
                break
            stopped = await intervals(agent, later)
    finally:
        agent.working_on = None  # its day's plans no longer bridged: settle_day, the uplift stage, a stop
    if stopped:
        return
    await agent_settlement.settle_day(agent)
    if not agent.d.stopping.is_set():  # the day-ahead make-whole, once the day's trades settled (U1)
        await day_stages.run_uplift(agent)


@dataclass(frozen=True)
class Calendar:
    """The agent's days on one chain (`market.days`): `settings` as configured, `day` the scenario's one day (n
    intervals, the owner's rules in it), which every day is planned on. Day k holds chain intervals k x n to
    (k + 1) x n - 1, read at profile indices 0 to n - 1 (`interval_plan.profile_index`); the first day is the one
    of the configured first interval, traded from it. Pure."""

    settings: MarketSettings
    day: Scenario

    @property
    def per_day(self) -> int:
        return self.day.intervals

    def day_of(self, t: int) -> int:
        return t // self.per_day

    def first_of(self, k: int) -> int:
        """Day k's first chain interval (`interval_plan.day_start` of any of its intervals)."""
        return k * self.per_day

    def last(self) -> int | None:
        """The run's last interval: its last day's, or the configured first interval + `intervals` - 1 where that
        comes first; None: day after day."""
        s = self.settings
        ends = [] if s.days is None else [self.first_of(self.day_of(s.first_interval) + s.days) - 1]
        ends += [] if s.intervals is None else [s.first_interval + s.intervals - 1]
        return min(ends, default=None)

    def day_for(self, t: int) -> int:
        """The day an agent that joins at interval t works on: t's, within the run's first and last days."""
        last = self.last()
        k = self.day_of(t) if last is None else min(self.day_of(t), self.day_of(last))
        return max(k, self.day_of(self.settings.first_interval))

    def settings_of(self, k: int) -> MarketSettings:
        """Day k's settings: the configured ones on the first day; from then its first interval k x n, the wall
        second it starts on the same clock (t0 + (k x n - first_interval) x interval_s) and what is left of
        `intervals`. Its record stamp (`resume.record_day`) follows from them, the same on every restart."""
        s, first = self.settings, self.first_of(k)
        if first <= s.first_interval:
            return s
        update: dict[str, object] = {"first_interval": first,
                                     "t0": slot_start(s, first)}  # fmt: skip
        if s.intervals is not None:
            update["intervals"] = s.first_interval + s.intervals - first
        return s.model_copy(update=update)

    def next_start(self, after: float) -> float | None:
        """The start of the run's first interval that starts after wall second `after`, on whichever day it is;
        None: the run has no interval left to start (`last`)."""
        s = self.settings
        t = max(s.first_interval, slot_at(s, after))
        while slot_start(s, t) <= after:  # past a float's rounding too: strictly after
            t += 1
        last = self.last()
        return None if last is not None and t > last else slot_start(s, t)

    def resume_from(self, now: float, first_start: bool = False) -> int:
        """Where a (re)started agent looks for the interval it joins (`resume.resume_interval`): the configured
        first interval, or the first of the day wall second `now` is in where that is later (no later than the one
        after the run's last); the day before's unsettled trades are still picked up (`day_before`). Why: an
        interval of an earlier day in which no MGMC took part (every one down at once: a site's power cut) is
        neither closed nor joined for good, and a look from the configured first interval on every restart (P4)
        joined it: a restart on day 400 went back to day 3 and ran every interval since, each long past and
        each waiting for the DSO's verdict on the one before. A `first_start` (no records yet: this MG never
        traded, so the day's past intervals hold nothing of its to settle) looks from the interval in hand on
        the clock instead: before (U7's finding 12), a pilot started hours after its epoch ran each past
        interval of the day, offering nothing in each (its meter did not see their starts)."""
        s = self.settings
        in_hand = slot_at(s, now)
        start = max(
            s.first_interval, in_hand if first_start else interval_plan.day_start(in_hand, self.per_day)
        )
        last = self.last()
        return start if last is None else min(start, max(s.first_interval, last + 1))

    def stamp_of(self, t: int) -> str:
        """The record stamp (`resume.record_day`) of the day chain interval t is in (`day_for`), the same
        whichever day the agent is on when it writes t's line."""
        day = self.settings_of(self.day_for(t))
        return record_day(day.t0, day.first_interval)

    def day_before(self, k: int) -> tuple[range, str] | None:
        """The intervals of the run's day before day k and its records' stamp (`resume.record_day`); None on
        the run's first day."""
        if k <= self.day_of(self.settings.first_interval):
            return None
        before = self.settings_of(k - 1)
        return range(before.first_interval, self.first_of(k)), record_day(before.t0, before.first_interval)


def joins_where(calendar: Calendar, t: int, look_from: int, first_start: bool) -> str:
    """Where a (re)started agent joins and why, in one line (`run_day`)."""
    k = calendar.day_of(t)
    where = f"joins interval {t} (day {k}'s interval {t - calendar.first_of(k)} of {calendar.per_day})"
    why = (
        "a first start (no records yet): it looked from the interval in hand on the clock; the day's earlier "
        "intervals are past and hold nothing of this MG's to settle"
        if first_start
        else "a restart (or a start with records): it looked from the first of the day's intervals"
    )
    return f"{where}, the first from {look_from} nobody started trading in: {why}"


def enter_day(agent: MarketAgent, calendar: Calendar, k: int) -> None:
    """The agent on day k: its settings (`Calendar.settings_of`: the day's t0, first interval and stamp); its
    scenario and MG stay the one day every day is planned on."""
    agent.s = calendar.settings_of(k)
    agent.counted = None  # the day's MG until an interval counts on it (`interval_offer.prepare` sets it)


def next_day(agent: MarketAgent, calendar: Calendar) -> int | None:
    """After a day's last interval: the agent on the next day, and its first interval; None where the run ends
    (`market.days`, `intervals`). Its guard's budget is the day's, started afresh at that interval from the
    conventional rest of the day (a restart within the day resumes it from the day's records); its battery
    state, its counterfactual and its Settler's book carry on, what is still refused of the days before given up
    once its last statements had their time (`day_before_ends`)."""
    k = calendar.day_of(agent.s.first_interval) + 1
    last = calendar.last()
    if last is not None and calendar.first_of(k) > last:
        return None
    enter_day(agent, calendar, k)
    agent.budget = agent.resumed = None
    agent.forward_traded = []
    first = agent.s.first_interval
    agent.verdicts = {i: v for i, v in agent.verdicts.items() if i >= first - 1}  # the day before's last kept
    day_before_ends(agent)
    log.info("day %s: trading intervals %d to %d", agent.day, first, agent._last_interval())
    return first


async def intervals(agent: MarketAgent, t: int, day_before: str | None = None) -> bool:
    """The day's intervals from t, each when the one before ended and its slot came, saying which one it works
    on (`working_on`); True: the daemon stopped it while it waited for one. The first of a (re)start resumes the
    counterfactual from the day's records, or where the day has none yet from the run's day before's
    (`day_before`: its records' stamp, None on the run's first day), as a running agent carries it across
    midnight (`resume.resumed_counterfactual`)."""
    while t <= agent._last_interval() and not agent.d.stopping.is_set():
        agent.working_on = t
        await idle(agent, agent._start_of(t))
        await agent._previous_cleared(t)
        if agent.d.stopping.is_set():
            return True
        if agent.state is None:
            agent.state = initial_state(agent.mg, agent.d.states)
            # the day's records (`MarketAgent.day`: the file serves every day, review18 K-1), else the day before's
            n, records = agent.scenario.intervals, agent.s.record_file
            carried = resumed_counterfactual(records, agent.mg, agent.dt, n, t, agent.day, day_before)
            agent.conv_state = carried or agent.state
            agent.resumed = recorded_spend(
                agent.s.record_file, t, agent.day
            )  # the budget starts in the interval
        agent.interval = t
        try:
            await agent.run_interval(t)
        except Exception:  # one bad interval must not end trading: log, record, go on
            log.exception("interval %d failed", t)
            agent._record({"interval": t, "error": "failed; see the log", **guard.failed_record(agent)})
            guard.fail_closed_after(agent, t)  # its cost unknown: no allowance left, as a restart (K-A)
        agent.done += 1
        t += 1
    return False


# an attempt at the make-whole claim is started only where the idle left holds what the last one took (its MILPs
# and its wait for a final block), and before any has been timed, this many phase timeouts
CLAIM_FIRST_NEED = 2


async def idle(agent: MarketAgent, start: float) -> None:
    """The idle before an interval's slot (`start`, wall s): a make-whole claim that did not land (U-B) posted
    again where the idle holds it (`claim_in_idle`), then refused settlements retried until the slot (the
    Settler's failure never ends the day's loop: `work_settler`), the days before's given up on the way where
    their time came (`work_idle`)."""
    await claim_in_idle(agent, start)
    await work_idle(agent, start)


def day_before_ends(agent: MarketAgent) -> None:
    """On a day after the run's first (`market.days`; the agent's settings the day's): when the days before end
    for its Settler (`MarketAgent.day_before_end`), with at least the tries `settle_day` gives the run's last
    day: an interval past the day's start or past now, whichever is later, and an interval past the due time of
    the last statement of the days before (the day before's last interval states after its end, settle_by_both)."""
    s, book = agent.s, agent.settler.book
    first = s.first_interval
    due = max((p.due for p in book.pending.values() if p.interval < first), default=0.0)
    at = max(agent._start_of(first), time.time()) + s.interval_s
    agent.day_before_end = (first, max(at, due + s.interval_s))


async def work_idle(agent: MarketAgent, until: float) -> None:
    """`agent_settlement.work_settler` until `until` (an interval's slot), and on the way, where the days before's
    end came (`day_before_ends`), what is still refused of them given up (`agent_settlement.end_days_before`).
    Before, the Settler never gave up between days: a retry refused days ago backed off in its book for as long
    as the agent ran."""
    ending = getattr(agent, "day_before_end", None)  # (a test's stand-in agent trades one day: none)
    if ending is not None:
        first, at = ending
        await agent_settlement.work_settler(agent, min(until, at))
        if time.time() >= at and not agent.d.stopping.is_set():
            agent.day_before_end = None
            agent_settlement.end_days_before(agent, first)
    await agent_settlement.work_settler(agent, until)


async def claim_in_idle(agent: MarketAgent, start: float) -> None:
    """This MG's claim on the day's session posted again (`day_stages.retry_uplift_claim`) where it is missing
    and the idle left before `start` holds an attempt (`MarketAgent.claim_needs_s`: what the last attempt
    took, `CLAIM_FIRST_NEED` phase timeouts before any): never on an interval's own time. Before (review18
    C-1) it ran after the idle, so a claim the chain did not finalise delayed every interval's start by its
    MILPs and a phase timeout. An attempt that overruns is cut at `start` (its MILPs' thread finishes unheard;
    a transaction sent may still land, which the next check reads off the chain) and the next one needs twice
    what it had; a claim left pending on the anonym's next nonce is waited out for the rest of the idle
    (`own_nonce.nonce_free`: review19 F5). No room: the next idle tries, and the after-day stage posts it before the settle
    (`day_stages.run_uplift`)."""
    if not day_stages.claim_missing(agent):
        return
    began = time.time()
    need = agent.claim_needs_s or CLAIM_FIRST_NEED * agent.s.phase_timeout_s
    if start - began < need:
        return
    try:
        await asyncio.wait_for(day_stages.retry_uplift_claim(agent), start - began)
    except TimeoutError:
        agent.claim_needs_s = 2 * (time.time() - began)
        log.warning("the make-whole claim's retry did not end by the slot's start (%.2f s in): cut; the next "
                    "idle tries with %.2f s of idle", time.time() - began, agent.claim_needs_s)  # fmt: skip
    else:
        agent.claim_needs_s = time.time() - began
    # an attempt not final in time (or cut after it sent) left its transaction pending on the anonym's next
    # nonce: the rest of the idle waits for it to land or be evicted, so the slot's first move signs the next
    # one (review19 F5; still pending at the slot, `MarketAgent._submit_outcome` waits for it)
    await own_nonce.nonce_free(agent.ledger, "mgmc", agent.anonym, start - time.time())


async def caught_up(agent: MarketAgent) -> None:
    """Wait until both replicas hold blocks made in the last few seconds (catch-up sync is done)."""
    for _ in range(600):
        fresh = all(
            time.time() * 1000 - r.app.head().timestamp_ms < 3000 for r in agent.ledger.replicas.values()
        )
        if fresh:
            return
        await asyncio.sleep(0.1)
