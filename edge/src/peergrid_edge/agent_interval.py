"""One trading interval of the agent, steps 1-8 of `trader.py`'s contract (split from it; `MarketAgent.run_interval`
calls it, `agent_day` runs it interval after interval).

Promises, for chain interval t: the offer is prepared (`interval_offer.prepare`) and bargained on the MGMC chain
(`bargain`, then `standing`: the participant the DSO's re-bargains move within), unless the day-ahead clear
closed t (then its forward trades are its trades, t is named in `forward_traded`); the guard chooses the
dispatch of the agreed trades (`guard.choose`); the equivalent injection goes to the DSO chain and the agreed
plan to the DERs at once, before the DSO's verdict; the DSO's iterations are answered (`MarketAgent._await_dso`),
the interval closed (a backup closer) and its latest closing read again, re-planned where it changed from what
was planned with; a plan the DSO's answer changed is dispatched again, never one unchanged; the trades are
settled and a counterparty's dispute watched (`agent_settlement`); the guard's budget is charged with what was
dispatched and paid, less the clean premium the owner paid; the conventional counterfactual goes on; and one
record line is written (`MarketAgent._record`), which a restart (`resume`, `resume_spend`) and the day's summary
(`day_summary`) read back. It says its step in `agent.phase`, and a stopped daemon ends it before the dispatch
after the DSO (`MarketAgent._stopped`). It reaches the chain, the DSO and the devices through the agent's
methods (`_submit`, `_await_dso`, `_dispatch`, `meet_limit`), which tests stub; tests stub `bargain` here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from peergrid_edge import agent_settlement, guard, interval_offer, interval_plan
from peergrid_edge.chain_bargaining import bargain, position, standing
from peergrid_edge.chain_closing import close_interval
from peergrid_edge.dso_answers import DsoAnswers, Market
from peergrid_edge.resume import PLAN_CONFIRMED
from peergrid_edge.resume_spend import PREMIUM_PAID

if TYPE_CHECKING:
    from peergrid_edge.trader import MarketAgent

log = logging.getLogger("peergrid.edge.trader")


async def run_interval(agent: MarketAgent, t: int) -> None:
    """Interval t (the module's contract)."""
    started = time.time()
    sc = agent.scenario
    agent.phase = "schedule"
    # steps 1-3: the MG as the interval counts on it, its plan, guarded curve and role (`interval_offer`)
    offer = interval_offer.prepare(agent, t)
    assert agent.state is not None and agent.conv_state is not None
    mg, budget, sched, me, rules = offer.mg, offer.budget, offer.sched, offer.me, offer.rules
    if offer.forward is None:
        rounds = await bargain(agent, t, me, offer.role, offer.feed_in, offer.retail, offer.opening)
        me = standing(agent, me, t)  # what `bargain` moved within: the DSO's re-bargains must too
    else:  # closed by the day-ahead clear: its trades are the forward trades, nothing to bargain
        rounds = []
        agent.forward_traded.append(t)
    bargained = time.time()
    agent.phase = "trades"
    mine, net_kwh, money = position(agent.ledger.state("mgmc"), t, agent.anonym.public)
    agreed_kw = net_kwh / agent.dt
    # a clean purchase is judged at its price less the owner's premium, as its curve judged it (`guard`)
    premium_paid = guard.premium_paid(mine, agent.anonym.public, rules.clean_premium)
    chosen = guard.choose(
        budget, offer.fallback, t, sched, agreed_kw, money, offer.fixed is not None, premium_paid
    )
    sched, plan2, delivered_kw = chosen.sched, chosen.plan, chosen.delivered_kw  # the DSO re-plans on it
    injection_kw = plan2.p2p_net_export[0] + plan2.dso_net_export[0]
    agent.phase = "injection"
    await agent._submit(
        "dso", agent.d.keypair, "equivalent_injection",
        {"interval": t, "injection": round(injection_kw * 1000), "revision": 0},
    )  # fmt: skip
    # step 5-6: the agreed plan goes to the DERs now, not after the DSO's verdict: the slot is metered from
    # its start, and until a dispatch the DERs run the previous interval's setpoints (the first: the safe
    # state). Safe because the DSO checks the trades, already agreed: what it checks is this plan's
    # injection; a verdict that changes it is dispatched again below (L4: 44-54 % -> 86 % delivered)
    agent.phase = "dispatch"
    early = await agent._dispatch(t, plan2)
    early_setpoints, dispatched_at, held = agent.dispatched, time.time(), agent.held
    agent.phase = "dso"
    market = Market(me, offer.feed_in, offer.retail, offer.premium)
    answers = DsoAnswers(plan2, injection_kw, delivered_kw)
    verdict = await agent._await_dso(t, sched, market, answers)
    dso_done = time.time()
    # every MG ends on the same closing: the DSO reopens only within its loop, so after its verdict the
    # interval's latest closing is the last; make sure it is closed (backup closer) and read it again
    closed = await close_interval(agent, t, None)
    mine, net_kwh, money = position(agent.ledger.state("mgmc"), t, agent.anonym.public)
    # trades changed after this MG's last answer (neither what it planned with nor a re-bargain's)
    changed = all(abs(net_kwh / agent.dt - kw) > 1e-6 for kw in (agreed_kw, answers.p2p_net_kw))
    agreed_kw = net_kwh / agent.dt
    if changed:
        log.warning("interval %d: the final closing differs from the trades planned with: re-planning", t)
        answers.p2p_net_kw = interval_plan.deliver(t, sched, agreed_kw)[1]
        replanned = agent.meet_limit(t, sched, answers.p2p_net_kw, answers.limit)
        answers.plan, answers.injection_kw = replanned.plan, replanned.injection_kw
    plan3, final_kw, adjustments = answers.plan, answers.injection_kw, answers.adjustments
    agent._stopped()
    agent.phase = "dispatch"
    confirmed = early
    # an adjustment, re-bargain or re-plan changed the plan: dispatched now, never left undispatched
    if plan3 is not plan2:
        confirmed = await agent._dispatch(t, plan3)
        if agent.dispatched == early_setpoints:  # the same setpoints, written and confirmed early
            confirmed += early
        else:
            held = agent.held
    metering = agent._metering()
    # kept with the interval's record too (PLAN_CONFIRMED): a restarted agent reads it back to state
    in_full = confirmed > 0 if held is None else held
    metering.confirmed[t] = in_full and abs(agreed_kw - answers.p2p_net_kw) < 1e-6
    agent.phase = "settle"
    # settle_by_both: stated once the interval ended and a PCC reading after its end was taken
    settled = await agent.settler.settle(t, mine, agent.anonym.public, metering.not_before(t))
    if mine:  # a counterparty's dispute may need this MG's readings too
        agent_settlement.watch_counterparties(agent, t)
    await agent.settler.retry_due()  # earlier refusals get a try each interval, even with no idle time
    # the guard's booked cost and state where the plan it chose ran on (a mix of two plans is no schedule's)
    if plan3 is plan2 and chosen.cost is not None and chosen.state is not None:
        cost, agent.state = chosen.cost, chosen.state
    else:
        cost, agent.state = sched.first_interval_cost_and_state()
    # the premium on the final closing's clean purchases is what the owner chose to pay: credited back to the
    # budget (`guard.premium_paid`; charged in full it locked a premium buyer out, M15's U5 F5)
    premium_paid = guard.premium_paid(mine, agent.anonym.public, rules.clean_premium)
    budget.charge(cost - money - premium_paid)
    limit_kw = None if answers.limit is None else answers.limit_kw()
    conv_cost, agent.conv_state, to_go = interval_plan.counterfactual(
        mg, agent.dt, sc.intervals, interval_plan.profile_index(t, sc.intervals), agent.conv_state, limit_kw,
        agent.state if t == agent._last_interval() else None,
    )  # fmt: skip
    agent.phase = "done"
    agent.last = {"interval": t, "role": offer.role, "rounds": len(rounds), "trades": len(mine)}
    agent._record(
        {
            "interval": t, "mg": mg.name, "anonym": agent.name, "role": offer.role, "opening": offer.opening,
            "forward": offer.forward, "rounds": rounds,
            "trades": [
                {"seller": tr["seller"].hex(), "buyer": tr["buyer"].hex(), "price": tr["price"] / 1000,
                 "quantity_kwh": tr["quantity"] / 1000, "id": tid.hex()}
                for tid, tr in mine
            ],
            "net_p2p_kwh": net_kwh, "shortfall_kwh": (agreed_kw - answers.p2p_net_kw) * agent.dt,
            "p2p_money": money, "cost_p2p": cost - money, "cost_conventional": conv_cost,
            "injection_kw": injection_kw, "final_injection_kw": final_kw, "limits": answers.limits,
            "adjustments": [{"met": a.met, "injection_kw": a.injection_kw, "reason": a.reason}
                            for a in adjustments],
            "rebargains": answers.rebargains, "closed": closed, "owed": agent._owed_in(t),
            "verdict": verdict is not None, "secure": (verdict or {}).get("secure"),
            "unmet": (verdict or {}).get("unmet"),
            "dispatch_confirmed": confirmed, PLAN_CONFIRMED: metering.confirmed[t], "settled": settled,
            "times": {"start": started, "bargained": bargained, "dispatched": dispatched_at,
                      "dso_done": dso_done, "end": time.time()},
            "heights": agent.ledger.heights(), "cost_to_go": to_go, "uncounted": offer.uncounted,
            "conv_state": asdict(agent.conv_state), **guard.record(budget, chosen, cost - money),
            **({PREMIUM_PAID: premium_paid} if premium_paid > 0 else {}),
        }
    )  # fmt: skip
