"""The trading agent's settlement (design step 8; split from `trader.py`): its `Settler` and its PCC metering
wired to the agent's replica, records, clock and the daemon's store, what a restarted agent picks up, and the
day's end.

Promises: `settler_for` gives the agent's Settler: settles signed with its anonym on the MGMC chain, a
statement on a trade whose parties the DSO priced (`market.tariff`) names this side's own shortfall, a
dispute posts the sealed PCC readings (`on_dispute`). `pick_up` hands the Settler what the agent's last run
left unsettled before interval t (with genesis `settle_by_both`, a meterless MG states what its recorded
dispatch verdicts confirm). `metering_for` is the MG's metering (`pcc_readings.MgMetering`) over the
daemon's store and meters. `watch_counterparties` follows interval t's disputes between other MGs that the
DSO settles with this MG's readings (it bought from the disputed trade's seller or sold to its buyer) and
posts them (`MgMetering.counterparty_disputes`), until every such trade settled. `settle_day` works the Settler past the day's last interval: refused settles
retried, a silent counterparty waited for until its deadline and stated again, then the end of the day.
Never settles another MG's trade.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from peergrid_edge.config import MarketSettings
from peergrid_edge.pcc_readings import MgMetering, counterparties_done, readings_needed
from peergrid_edge.resume import recorded_verdicts
from peergrid_edge.settlement import PendingSettle, Settlements, Settler, unsettled_trades
from peergrid_ledger import query
from peergrid_ledger.contracts.market_state import cover_prices

if TYPE_CHECKING:
    from peergrid_edge.daemon import EdgeDaemon
    from peergrid_edge.trader import MarketAgent


def settler_for(agent: MarketAgent, daemon: EdgeDaemon, settings: MarketSettings) -> Settler:
    """The agent's Settler (made when the agent is: its replica is read only when it settles)."""
    return Settler(
        lambda body: agent._submit_outcome("mgmc", agent.anonym, "settle", body),
        lambda tid: query.settlement(agent.ledger.state("mgmc"), tid),
        time.time, daemon._sleep, daemon.stopping.is_set, agent._record,
        Settlements(settings.phase_timeout_s, settings.interval_s),
        metering=lambda pending: agent._metering().statement(pending),
        on_dispute=lambda pending: on_dispute(agent, pending),
        # the DSO priced both parties' cover (market.tariff): the statement names this side's own shortfall
        priced=lambda trade: cover_prices(agent.ledger.state("mgmc"), trade) is not None,
    )  # fmt: skip


def pick_up(agent: MarketAgent, t: int) -> None:
    """The trades of the intervals before t (where a restarted agent resumes) that its last run left
    unsettled, from the chain, to the Settler; the chain's genesis says whether both parties state."""
    settler = agent.settler
    settler.by_both = bool(agent.ledger.replicas["mgmc"].app.genesis.params.settle_by_both)
    me = agent.anonym.public
    before = range(agent.s.first_interval, t)
    unsettled = unsettled_trades(agent.ledger.state("mgmc"), me, before, settler.by_both)
    if unsettled and settler.by_both:  # a meterless MG states what its recorded verdicts confirm
        agent.recalled = recorded_verdicts(agent.s.record_file, before)
    settler.pick_up(unsettled, me)


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
    )  # fmt: skip
    metering.confirmed.update(agent.recalled)
    return metering


def on_dispute(agent: MarketAgent, pending: PendingSettle) -> None:
    s = agent.s
    until = max(agent._start_of(agent._last_interval() + 1), time.time()) + 10 * s.interval_s
    agent._metering().disputed(pending, s.interval_s, until, time.time, agent.d._sleep)


def watch_counterparties(agent: MarketAgent, t: int) -> asyncio.Task[None] | None:
    """Start following interval t's counterparties' disputes (`counterparty_readings`) where both parties
    state (genesis `settle_by_both`) and a DSO API is configured to post to; None otherwise."""
    metering = agent._metering()
    if not agent.settler.by_both or not metering.dso_url:
        return None
    task = asyncio.ensure_future(counterparty_readings(agent, t))
    metering.following.add(task)  # type: ignore[arg-type]  # kept alive with the dispute followers
    task.add_done_callback(metering.following.discard)  # type: ignore[arg-type]
    return task


async def counterparty_readings(agent: MarketAgent, t: int) -> None:
    """On every final block, post this MG's readings for each newly disputed trade of interval t that reads
    them though this MG is no party (D5: the DSO waits for an unmetered counterparty until the dispute's
    deadline, an hour by default, and then takes it least in its favour), until every trade that could read
    them settled or superseded, the daemon stops, or the latest such dispute's deadline passed: its last
    statement may come a `settle_wait_ms` after the interval and the dispute lasts as long again."""
    s, metering, me = agent.s, agent._metering(), agent.anonym.public
    wait_s = agent.ledger.replicas["mgmc"].app.genesis.params.settle_wait_ms / 1000
    until = max(agent._start_of(t + 1), time.time()) + 2 * wait_s + 10 * s.interval_s
    followed: set[bytes] = set()

    def news(state: Any) -> bool:
        trades = query.trades(state, t)
        return bool(set(readings_needed(trades, me)) - followed) or counterparties_done(trades, me)

    while not agent.d.stopping.is_set() and time.time() < until:
        if not await agent.ledger.wait_for("mgmc", news, until - time.time()):
            return
        trades = query.trades(agent.ledger.state("mgmc"), t)
        followed |= set(readings_needed(trades, me))
        metering.counterparty_disputes(t, s.interval_s, until, time.time, agent.d._sleep)
        if counterparties_done(trades, me):
            return


async def settle_day(agent: MarketAgent) -> None:
    """The day's end: the Settler worked until the start of the interval after the last, or one interval
    after this agent finished its last one, whichever is later (a purchase of the last interval gets retries
    while peers settle theirs), and past the last statement's due time; then each statement whose
    counterparty may still state is waited for until its deadline and stated again (settle_by_both)."""
    s, settler, stopping = agent.s, agent.settler, agent.d.stopping
    agent.phase = "settling"
    day_end = max(agent._start_of(agent._last_interval() + 1), time.time() + s.interval_s)
    # the last interval's statements go after its end (settle_by_both): they get an interval of tries too
    day_end = max(day_end, (settler.book.last_due() or 0.0) + s.interval_s)
    await settler.work_until(day_end, while_pending=True)
    while (waiting := settler.book.waiting_until()) is not None and not stopping.is_set():
        await settler.work_until(waiting + s.phase_timeout_s, while_pending=True)
        if time.time() >= waiting + s.phase_timeout_s:
            break
    if not stopping.is_set():
        settler.end_of_day()
    agent.phase = "finished"
