"""The trading agent's settlement (design step 8; split from `trader.py`): its `Settler` and its PCC metering
wired to the agent's replica, records, clock and the daemon's store, what a restarted agent picks up, and the
day's end.

Promises: `settler_for` gives the agent's Settler, submitting through the agent's own `SealedStatements`
(`sealed_for`; kept as `MarketAgent.sealed`, which the day's end prunes): settles signed with its anonym on
the MGMC chain, a statement on a trade whose parties the DSO priced (`market.tariff`) names this side's own
shortfall, a dispute posts the sealed PCC readings and is followed until the DSO's settlement of it lands
(`on_dispute`). `pick_up` hands the Settler what the agent's last run left unsettled before interval t (with
genesis `settle_by_both`, a meterless MG states what its recorded dispatch verdicts confirm), and watches
those intervals again (`watch_counterparties`).
`metering_for` is the MG's metering (`pcc_readings.MgMetering`) over the daemon's store and meters.
`watch_counterparties` follows interval t's disputes between other MGs that the DSO settles with this MG's
readings (it bought from the disputed trade's seller or sold to its buyer), and the trades of t that stand
on one word or on two sealed commitments neither party revealed in time, and posts them
(`MgMetering.counterparty_disputes`), until every such trade settled. `settle_day` works the Settler past
the day's last interval: refused settles retried, a silent counterparty waited for until its deadline (and
again while a deadline moved later meanwhile) and stated again, then the end of the day.
Never settles another MG's trade.
`SealedStatements` (`sealed_statements.py`: committed, then revealed) stands between the Settler and the
chain. The Settler's work never ends the agent's loop (`work_settler`: its traceback logged, the time waited out without it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from peergrid_edge.config import MarketSettings
from peergrid_edge.pcc_readings import MgMetering, counterparties_done, readings_needed
from peergrid_edge.resume import recorded_verdicts

# `x as x`: the names moved there stay importable here, where other modules and tests import them
from peergrid_edge.sealed_statements import CorruptStatement as CorruptStatement
from peergrid_edge.sealed_statements import SealedStatements as SealedStatements
from peergrid_edge.settle_book import PendingSettle, Settlements, unsettled_trades
from peergrid_edge.settlement import Settler
from peergrid_ledger import query
from peergrid_ledger.contracts.market_state import cover_prices
from peergrid_ledger.counter_roll import posted_w
from peergrid_ledger.genesis import Genesis

if TYPE_CHECKING:
    from peergrid_edge.daemon import EdgeDaemon
    from peergrid_edge.trader import MarketAgent

log = logging.getLogger("peergrid.edge.trader")


def sealed_for(agent: MarketAgent, daemon: EdgeDaemon) -> SealedStatements:
    """The agent's statements as the chain takes them (`SealedStatements`: committed and revealed where genesis
    `sealed_statements` says so, else sent as they are), kept by the agent: its Settler submits through them
    (`settler_for`) and the day's end prunes them (`settle_day`). Its replica is read only when it settles."""

    def genesis() -> Genesis:  # read when it settles, not now
        return agent.ledger.replicas["mgmc"].app.genesis  # type: ignore[no-any-return]

    return SealedStatements(
        lambda body: agent._submit_outcome("mgmc", agent.anonym, "settle", body),
        lambda: agent.ledger.state("mgmc"), lambda: genesis().chain, agent.anonym.public,
        lambda: daemon.settings.data_dir / "seals", time.time,
        lambda: bool(genesis().params.sealed_statements),
    )  # fmt: skip


def settler_for(agent: MarketAgent, settings: MarketSettings, sealed: SealedStatements) -> Settler:
    """The agent's Settler, submitting through its statements `sealed` (`sealed_for`), made when the agent is."""
    daemon = agent.d
    return Settler(
        sealed,
        lambda tid: query.settlement(agent.ledger.state("mgmc"), tid),
        time.time, daemon._sleep, daemon.stopping.is_set, agent._record,
        Settlements(settings.phase_timeout_s, settings.interval_s),
        metering=lambda pending: agent._metering().statement(pending),
        on_dispute=lambda pending: on_dispute(agent, pending),
        # the DSO priced both parties' cover (market.tariff): the statement names this side's own shortfall
        priced=lambda trade: cover_prices(agent.ledger.state("mgmc"), trade) is not None,
        # a side its meter will never state (a broken counter) is recorded so, not 'not metered yet'
        not_stated=lambda pending: agent._metering().not_stated(pending),
    )  # fmt: skip


def pick_up(agent: MarketAgent, t: int, day_before: tuple[range, str] | None = None) -> None:
    """The trades of the intervals before t (where a restarted agent resumes) that its last run left
    unsettled, from the chain, to the Settler, and those of `day_before` (its intervals and its records' stamp:
    a restart early in a later day of `market.days`, whose day before's last statements may still be due); the
    chain's genesis says whether both parties state. Where
    they do, each such interval is watched again for the trades the DSO settles with this MG's readings
    (`watch_counterparties`): the last run's watchers ended with it, and its own trade that stands on one
    word, or on two commitments neither party revealed (its salt file lost or corrupt, so the Settler cannot
    reveal it), would be settled without this MG's meter (a seller at 0)."""
    settler = agent.settler
    settler.by_both = bool(agent.ledger.replicas["mgmc"].app.genesis.params.settle_by_both)
    me = agent.anonym.public
    spans = [*([] if day_before is None else [day_before]), (range(agent.s.first_interval, t), agent.day)]
    state = agent.ledger.state("mgmc")
    unsettled = [u for before, _ in spans for u in unsettled_trades(state, me, before, settler.by_both)]
    if unsettled and settler.by_both:  # a meterless MG states what its recorded verdicts confirm
        agent.recalled = {  # each day's verdicts from its own lines (review18 K-1)
            k: v
            for before, day in spans
            for k, v in recorded_verdicts(agent.s.record_file, before, day).items()
        }
    settler.pick_up(unsettled, me)
    if settler.by_both and agent.s.dso_api_url:  # (its metering made after `recalled`: it copies them)
        for interval in sorted({interval for interval, _, _ in unsettled}):
            watch_counterparties(agent, interval)


def metering_for(agent: MarketAgent) -> MgMetering:
    """This MG's metering for its statements and disputes (`pcc_readings.MgMetering`): the daemon's store
    and devices must exist by then (the agent makes it on first use)."""
    d, s = agent.d, agent.s
    polls = [
        state.settings.poll_interval_s for state in d.states.values() if state.settings.nature == "meter"
    ]
    metering = MgMetering(
        d.store, max(polls, default=0.0), d.settings.ledger.commit_interval_s,
        lambda t: (round(agent._start_of(t) * 1000), round(agent._start_of(t + 1) * 1000)),
        lambda t: query.trades(agent.ledger.state("mgmc"), t), agent.anonym.public, d.keypair.public,
        s.dso_api_url,
        # whether the DSO priced a trade: a vouched purchase's readings go only where it reads them (D3)
        lambda trade: cover_prices(agent.ledger.state("mgmc"), trade) is not None,
        # its connection as the DSO posted it bounds a roll-over of its meter, as the DSO reads it (R38-2)
        lambda t: posted_w(agent.ledger.state("mgmc"), agent.anonym.public, t, round(s.interval_s * 1000)),
        # the DSO server's https certificate is of the operator's CA, which the enrolment verifies it by (the
        # pilot); read only where there is a DSO to post to
        d.settings.enrolment.ca_file if s.dso_api_url and d.settings.enrolment is not None else None,
    )  # fmt: skip
    metering.confirmed.update(agent.recalled)
    return metering


def on_dispute(agent: MarketAgent, pending: PendingSettle) -> None:
    """A trade of this MG's the chain shows disputed: its sealed PCC readings posted to the DSO
    (`MgMetering.disputed`) until ten intervals after the day's last, and the chain read until the DSO's
    settlement of it lands, which the Settler tells in its own line (`Settler.until_dso_settles`), for as
    long again as the chain's `settle_wait_ms`: the DSO rules that wait after the dispute at the latest (its
    own wait where it sets one), and readings may reach it until the posting ends. Both are tasks the daemon
    ends before its store closes (`MgMetering.following`)."""
    s, metering = agent.s, agent._metering()
    until = max(agent._start_of(agent._last_interval() + 1), time.time()) + 10 * s.interval_s
    metering.disputed(pending, s.interval_s, until, time.time, agent.d._sleep)
    wait_s = agent.ledger.replicas["mgmc"].app.genesis.params.settle_wait_ms / 1000
    told = asyncio.ensure_future(agent.settler.until_dso_settles(pending, until + wait_s))
    metering.following.add(told)
    told.add_done_callback(metering.following.discard)


def watch_counterparties(agent: MarketAgent, t: int) -> asyncio.Task[None] | None:
    """Start following interval t's counterparties' disputes (`counterparty_readings`) where both parties
    state (genesis `settle_by_both`) and a DSO API is configured to post to; None otherwise."""
    metering = agent._metering()
    if not agent.settler.by_both or not metering.dso_url:
        return None
    task = asyncio.ensure_future(counterparty_readings(agent, t))
    metering.following.add(task)  # type: ignore[arg-type]  # kept alive with the dispute followers
    task.add_done_callback(metering.following.discard)
    return task


async def counterparty_readings(agent: MarketAgent, t: int) -> None:
    """On every final block, post this MG's readings for each newly disputed trade of interval t that reads
    them though this MG is no party, for each that stands on one statement (its own or not: review13 F4, the
    DSO meters it like a dispute, from `LONE_FROM` of the wait: posted from then, E4) and for each that two sealed commitments and no reveal left to the DSO at
    the reveal deadline (its own or not: review14 K3b, `peergrid_ledger.takeup.waits_for_dso`) (D5: the DSO
    waits for an unmetered counterparty until the dispute's deadline, an hour by default, and then takes it
    least in its favour), until every trade that could read them settled or superseded, the daemon stops, or the latest
    such dispute's deadline passed: its last statement may come a `settle_wait_ms` after the interval and
    the dispute lasts as long again (an unrevealed trade's reveal deadline is at most two waits after the
    first commitment).
    The reveal deadline passing changes no state: it is read against the chain's time, its head block's
    (`chain_ms`, as the DSO node judges by and takes such a trade up on the same block), which `news` reads
    on every final block; an idle chain still seals an empty block every heartbeat (the engine's
    `heartbeat_ms`), so the first block at or past the deadline wakes the loop, and before one there is
    nothing to wake for (by that time the trade is not unrevealed yet, for the DSO either)."""
    s, metering, me = agent.s, agent._metering(), agent.anonym.public
    wait_s = agent.ledger.replicas["mgmc"].app.genesis.params.settle_wait_ms / 1000
    until = max(agent._start_of(t + 1), time.time()) + 2 * wait_s + 10 * s.interval_s
    followed: set[bytes] = set()

    def done(trades: list[tuple[bytes, dict[str, Any]]]) -> bool:  # its own trades too: one may stand alone
        own = [d for _, d in trades if me in (d["seller"], d["buyer"]) and "superseded" not in d]
        return counterparties_done(trades, me) and all(d.get("settlement") is not None for d in own)

    def news(state: Any) -> bool:
        trades = query.trades(state, t)
        needed = readings_needed(trades, me, chain_ms(agent), metering.priced)
        return bool(set(needed) - followed) or done(trades)

    while not agent.d.stopping.is_set() and time.time() < until:
        if not await agent.ledger.wait_for("mgmc", news, until - time.time()):
            return
        trades, now_ms = query.trades(agent.ledger.state("mgmc"), t), chain_ms(agent)
        followed |= set(readings_needed(trades, me, now_ms, metering.priced))
        metering.counterparty_disputes(t, s.interval_s, until, time.time, agent.d._sleep, now_ms)
        if done(trades):
            return


def chain_ms(agent: MarketAgent) -> int:
    """The MGMC chain's time as this replica knows it: its head block's (ms), what the DSO node judges a
    trade's deadlines by (its own replica's head)."""
    return int(agent.ledger.replicas["mgmc"].app.tip.time)


async def settle_day(agent: MarketAgent) -> None:
    """The day's end: the Settler worked until the start of the interval after the last, or one interval
    after this agent finished its last one, whichever is later (a purchase of the last interval gets retries
    while peers settle theirs), and past the last statement's due time; then each statement whose
    counterparty may still state is waited for until its deadline and stated again (settle_by_both), and
    waited for again while a deadline moved later meanwhile (review15 M6: a sealed trade's second commitment
    moves its deadline from the commit deadline to the reveal deadline; a buyer that committed just before
    the first and never revealed was left `stated` for ever, the seller gone before it could repeat). Bounded:
    the day's end waits only for a deadline later than the one it waited out, and a trade's deadline moves
    at most twice (the second commitment; the DSO's vouch window on a seller_vouched chain)."""
    s, settler, stopping = agent.s, agent.settler, agent.d.stopping
    agent.phase = "settling"
    day_end = max(agent._start_of(agent._last_interval() + 1), time.time() + s.interval_s)
    # the last interval's statements go after its end (settle_by_both): they get an interval of tries too
    day_end = max(day_end, (settler.book.last_due() or 0.0) + s.interval_s)
    await work_settler(agent, day_end, while_pending=True)
    waited: float | None = None  # the latest deadline waited out (time.time())
    while (waiting := settler.book.waiting_until()) is not None and not stopping.is_set():
        if waited is not None and waiting <= waited:
            break  # no deadline moved past the one waited out: what is left is given up below
        await work_settler(agent, waiting + s.phase_timeout_s, while_pending=True)
        waited = waiting
    if not stopping.is_set():
        end_days_before(agent)
    agent.phase = "finished"


def end_days_before(agent: MarketAgent, first: int | None = None) -> None:
    """The end of the day for the Settler: what is still refused given up (`Settler.end_of_day`: logged and
    recorded; a statement whose counterparty may still state is kept), and the kept statements of trades
    the chain shows settled pruned, and what the metering kept for the ended days' statements
    (`MgMetering.forget`). `first`: a new day's first interval, whose own trades and later ones stay
    (`market.days`, between days); None: every trade (the run's end, `settle_day`)."""
    agent.settler.end_of_day(first)
    metering = getattr(agent, "metering", None)  # (a test's stand-in agent may have none)
    if metering is not None:  # what only the ended days' statements read (P6)
        metering.forget(first, agent.settler.book.pending.values())
    calendar, endings = getattr(agent, "calendar", None), getattr(agent, "endings", None)
    if first is not None and calendar is not None and endings is not None:
        agent.endings = recent_endings(
            endings, {calendar.stamp_of(first), calendar.stamp_of(max(0, first - 1))}
        )
    try:  # housekeeping: a file it cannot delete must not fail the day (a restart would meet it again)
        if agent.sealed is not None:  # (it keeps nothing on a chain that does not seal statements)
            agent.sealed.prune(agent.ledger.state("mgmc"))
    except OSError:
        log.exception("the day's end could not prune the kept statements; they stay on disk")


async def work_settler(agent: MarketAgent, until: float, while_pending: bool = False) -> None:
    """The agent's Settler worked until `until` (time.time(); `Settler.work_until`). One trade's failure is
    booked by the Settler itself (`Settler._try`); should the work raise all the same (a bug), the traceback is
    logged and the time waited out without it: the agent's loop goes on and its next interval starts on time
    (review14 K4: a raise here ended the agent's task, and the daemon polled on without trading)."""
    try:
        await agent.settler.work_until(until, while_pending)
    except Exception:
        log.exception("the Settler failed; the agent waits without it until %.3f", until)
        await agent.d._sleep(max(0.0, until - time.time()))


def recent_endings(
    endings: set[tuple[str, str, bool, str]], stamps: set[str]
) -> set[tuple[str, str, bool, str]]:
    """The settlement endings (`resume.ending_of`) of the days stamped `stamps` (the new day's and the day
    before's): what the agent keeps between days to write no ending twice. Why only those: within a run each
    trade ends once; the set is for what a restart ends again, and a restart picks up the day it is in and the
    day before's last trades (`agent_day`), reading the record file afresh. Kept whole, it grew by one per
    trade for as long as the MGMC ran (RR2, after P6)."""
    return {ending for ending in endings if ending[0] in stamps}
