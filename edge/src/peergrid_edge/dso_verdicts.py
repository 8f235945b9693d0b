"""The trading agent's wait for the DSO's verdict on an interval (design step 6; split from `trader.py`, whose
`MarketAgent._previous_cleared`, `_await_dso` and `_open_contract` these are).

Promises: `previous_cleared` holds interval t until the DSO's final verdict of t - 1 is out (at most three
intervals). `await_dso` waits (at most the market's `dso_timeout_s`) for the DSO's final verdict of interval t
(MQTT, `peergrid/<feeder>/dso/verdict`, kept by the agent per interval, the newest iteration), answering the
newest of its iterations once each (one published while this MG was busy is skipped for the next) through
`dso_answers.answer_iteration`, or until a later interval's verdict shows the DSO is past t (it runs its
intervals in order: an MG islanded while t's final verdict went out hears only the newest retained one, and
the agreed plan stands, as on the timeout, without waiting it out): an addressed MG opens its sealed adjustment contract of that iteration
(`open_contract`), every MG of the interval re-bargains a reopening and submits its revised injection; an
answer that fails still gives the DSO the injection this MG holds. `open_contract` waits (3 phase timeouts
at most) until this node's DSO-chain replica holds the contract, so a lagging replica never answers with
nothing or with the previous iteration's. A stopping daemon ends the wait (`MarketAgent._stopped`).
Never opens another MG's contract (sealed to this node's key).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from peergrid_controller.schedule import MgSchedule
from peergrid_edge.dso_answers import DsoAnswers, Market, answer_iteration, sealed_contract

if TYPE_CHECKING:
    from peergrid_edge.trader import MarketAgent

log = logging.getLogger("peergrid.edge.trader")  # the trader's own lines, under its name as before the split


async def previous_cleared(agent: MarketAgent, t: int) -> None:
    """Start interval t only once the DSO's final verdict for t - 1 is out (peers are done with it), so a
    restarted or fast MGMC does not run ahead of the others; a silent DSO costs three intervals' time. Not before
    the run's first interval (nothing of its own came before it); a later day's first is waited for as any
    other (`market.days`: the agent ran the day before's last, `MarketAgent.done`)."""
    if t <= agent.s.first_interval and not agent.done:
        return
    deadline = time.monotonic() + 3 * agent.s.interval_s
    while time.monotonic() < deadline and not agent.d.stopping.is_set():
        done = [i for i, v in agent.verdicts.items() if v.get("final")]
        if done and max(done) >= t - 1:
            return
        event = agent._verdict_event
        try:
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):  # not wait_for: gh-86296
                await event.wait()
        except TimeoutError:
            return


async def await_dso(
    agent: MarketAgent, t: int, sched: MgSchedule, market: Market, answers: DsoAnswers
) -> dict[str, Any] | None:
    """Wait for the DSO's final verdict, answering the newest of its iterations (design step 6; one
    published while this MG was busy is skipped for the next): an addressed MG opens its sealed contract
    of that iteration; every MG of the interval, seeing the DSO's reopening in a final block, bargains
    again (an MG with a limit, with its curve held within it) and submits its revised injection for that
    iteration — re-planned with the new trades and within its limit, or saying plainly how close it gets.
    No reopening (in time): the limit is met by re-planning with the trades kept. Returns the verdict
    (None: the DSO stayed silent; the agreed plan stands)."""
    deadline = time.monotonic() + agent.s.dso_timeout_s
    me = agent.d.keypair.public.hex()
    answered: set[int] = set()
    while time.monotonic() < deadline:
        agent._stopped()
        verdict = agent.verdicts.get(t)  # the newest: an iteration missed meanwhile is not answered
        if verdict is not None and verdict.get("final"):
            return verdict
        later = [i for i in agent.verdicts if i > t]
        if later:  # the DSO is past t: its verdict went out while this MG could not hear it (islanded)
            log.warning("interval %d: no DSO verdict heard, and the DSO is at interval %d: the agreed plan stands",
                        t, max(later))  # fmt: skip
            return verdict
        iteration = int((verdict or {}).get("iteration", 0))
        if verdict is not None and iteration > 0 and iteration not in answered:
            answered.add(iteration)
            reopen = verdict.get("reopen") if verdict.get("rebargain") else None
            try:
                addressed = me in verdict.get("adjust", [])
                await answer_iteration(agent, t, iteration, addressed, sched, market, answers,
                                       None if reopen is None else int(reopen))  # fmt: skip
            except Exception:  # the DSO still gets an answer: the injection this MG holds now
                log.exception("interval %d: answering DSO iteration %d failed", t, iteration)
                await agent._submit("dso", agent.d.keypair, "equivalent_injection", {
                    "interval": t, "injection": round(answers.injection_kw * 1000), "revision": iteration})  # fmt: skip
            continue
        event = agent._verdict_event
        try:
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):  # not wait_for: gh-86296
                await event.wait()
        except TimeoutError:
            break
    return agent.verdicts.get(t)


async def open_contract(agent: MarketAgent, t: int, iteration: int) -> tuple[dict[str, Any], bytes] | None:
    """This MGMC's adjustment contract for interval t and the DSO's `iteration` (sealed inside it), with
    its txid on the DSO chain, waiting (3 phase timeouts at most) until this node's DSO-chain replica holds
    it: a lagging replica must not answer with nothing, or with the previous iteration's contract."""
    found: tuple[dict[str, Any], bytes] | None = None

    def sealed(state: Any) -> bool:
        nonlocal found
        found = sealed_contract(state, agent.d.keypair, t, iteration)
        return found is not None

    if not await agent.ledger.wait_for("dso", sealed, 3 * agent.s.phase_timeout_s):
        log.warning("interval %d: no adjustment contract of iteration %d to open", t, iteration)
    return found
