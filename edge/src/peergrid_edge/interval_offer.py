"""What the trading agent brings to an interval's bargaining: steps 1-3 of `trader.py`'s interval, split from it.

Promises: `prepare(agent, t)` gives interval t's `Offer`: the MG as the interval counts on it (`counted_for`),
its day planned from t and its state with the forward trades of t on fixed (`interval_plan.plan_day`), its
price-quantity curve on its own bounds within its owner's rules and the DSO's connection capacity, held by the
individual-rationality guard while no forward trade is held (`guard.interval_curve`, the budget started in the
first interval run), its role at the mid price and the price its sellers open at (the previous interval's
agreed price, held within this interval's [feed-in, retail]). t is the chain's interval (the chain's forward
trades, connection capacity and opening price are read at t, from t to its day's end); the model's tariffs and
profiles at its profile index (`interval_plan.profile_index`). It reads the agent's replica of the MGMC chain and
its device states; it submits nothing and writes no device.
`counted_for(agent, t)`: a PV inverter, battery or genset that is quarantined or whose last good reading is
stale (`quality.untrusted_share`) is left out by its share of its nature's rating (`interval_plan.counted`),
so the MG neither offers a PV's output it can neither read nor curtail (U4 F9), nor what a battery it cannot
command would discharge, nor commits a genset that does not answer; the guard's alternative and the
counterfactual are of that MG too. It names those left out (name -> "quarantined" or "stale", the interval
record's `uncounted`) and says each change once at WARNING, when a device is left out and when it is counted
again (a log kept at WARNING shows both ends, as the poll says a quarantine). A stand-in daemon without devices
doubts none. Logs under the trader's name, as before the split.
Where both parties state from their meters (`settle_by_both`) and this MG's PCC meter did not see interval t's
start (`pcc_readings.MgMetering.start_unseen`: the MGMC started or restarted after it, as the lab's market runs
behind the wall clock after one), the offer's rules allow no quantity either way (`unmetered_rules`), said once
at WARNING: the DSO settles a side it cannot meter unmetered, a sale at 0 Wh (E7: U6's mg5, back 5 s into
interval 53, sold 44.5 kWh into it and was paid 0), and an unmetered purchase holds its seller's other
trades to their deadline. So a fresh MGMC started within an interval offers nothing in it on such a chain: its
daemon polls its meter from its own start, after the interval's (E14).
The interval a (re)started agent joined within its slot (`note_join`, from `agent_day.run_day`) is
offered in only while the time left holds the rounds a bargaining may take there (`late_rules`: the agent's
`max_rounds`, at most `config.rounds_that_fit` of a whole interval, counted by `rounds_that_fit` on what is
left); else it offers nothing, said once at WARNING with the figures (E14: it would bargain past the interval's
end, and its next interval start late). It still joins, plans, dispatches and injects: the DSO hears from it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from peergrid_controller.model import ContractRules, Microgrid
from peergrid_controller.moves import Participant, role_at_mid
from peergrid_controller.rationality import Guarded
from peergrid_controller.schedule import MgSchedule, Plan
from peergrid_edge import guard, interval_plan, quality
from peergrid_edge.chain_bargaining import opening_price
from peergrid_edge.config import ROUNDS_SHARE, rounds_that_fit
from peergrid_edge.connection import connected_rules
from peergrid_edge.forward_chain import forward_plan, forward_session

log = logging.getLogger("peergrid.edge.trader")

# what the plan does without a device of each nature, and from when it counts on it again
LEFT_OUT = {
    "pv": ("not offering its output", "its output is counted"),
    "battery": ("neither charging nor discharging it", "it is charged and discharged again"),
    "genset": ("not running it", "it may run again"),
}


@dataclass
class Offer:
    """Interval t as the agent goes into its bargaining."""

    mg: Microgrid  # as the interval counts on it (`counted_for`): planned, guarded and dispatched on
    uncounted: dict[str, str]  # the devices left out of it (name -> quarantined or stale)
    forward: str | None  # the day-ahead session whose clear closed the interval (None: bargained)
    fixed: list[float] | None  # the forward trades of t on, kW, fixed in the plan (None: none)
    budget: guard.DayBudget
    sched: MgSchedule  # the day's plan from t (the DSO's answers re-plan on it)
    plan: Plan
    rules: ContractRules  # the owner's, within the DSO's connection capacity
    fallback: Guarded | None  # the guard's conventional alternative (None: not guarded)
    me: Participant
    role: str
    opening: float | None
    premium: float  # the feeder's clean premium: the top of every MG's price bounds
    feed_in: float  # the feeder's band this interval: the lowest feed-in, the highest retail
    retail: float


def prepare(agent: Any, t: int) -> Offer:
    """Interval t's offer for `agent` (a `MarketAgent`); keeps the MG it counts on as `agent.counted` (what the
    agent's `_schedule` plans and `_dispatch` dispatches on)."""
    sc = agent.scenario
    i = interval_plan.profile_index(t, sc.intervals)
    mg, uncounted = counted_for(agent, t)
    agent.counted = mg
    assert agent.state is not None and agent.conv_state is not None
    # the forward trades of this and later intervals of its day are binding: the day is planned with them fixed
    chain = agent.ledger.state("mgmc")
    forward = forward_session(chain, t)
    day = range(t, interval_plan.day_end(t, sc.intervals))  # chain intervals
    fixed = forward_plan(chain, agent.anonym.public, day, agent.dt)
    # the guard's budget, started in the first interval run (a solve: failing fails the interval only)
    budget = agent.budget or agent._start_budget(t, agent.resumed)
    sched, plan = agent._schedule(t, fixed)
    premium = max(m.rules.clean_premium for m in sc.microgrids)
    feed_in = min(m.tariff.feed_in[i] for m in sc.microgrids)
    retail = max(m.tariff.retail[i] for m in sc.microgrids)
    # the owner's rules within the DSO's connection capacity here: the chain refuses more (`connection`)
    rules = unmetered_rules(agent, t, connected_rules(mg.rules, chain, agent.anonym.public, t))
    rules = late_rules(agent, t, rules, forward)  # a (re)start's interval joined midway: the time left
    curve, fallback = guard.interval_curve(agent, t, budget, sched, fixed is not None, premium, rules, mg)
    # what a DSO change left below the state's conventional value, kept if the interval fails (`guard`)
    if fallback is not None:
        budget.note_value(fallback.value)
    me = Participant(agent.name, curve, rules, clean=plan.genset_kw[0] <= 1e-6)
    role = role_at_mid(me, feed_in, retail)
    # within this interval's own band [feed-in, retail]: a seller goes past retail only in the rounds, for a
    # buyer's clean premium (`chain_bargaining.seller_ceiling`; U4 F3)
    opening = opening_price(agent.ledger.state("mgmc"), t, feed_in, retail)
    return Offer(mg, uncounted, forward, fixed, budget, sched, plan, rules, fallback, me, role, opening,
                 premium, feed_in, retail)  # fmt: skip


def counted_for(agent: Any, t: int) -> tuple[Microgrid, dict[str, str]]:
    """The MG `agent.mg` as interval t counts on it and the devices left out (name -> quarantined or stale);
    keeps them as `agent.uncounted` (replaced whole) to say only what changed since the interval before."""
    states = getattr(agent.d, "states", None) or {}
    now = agent.d.clock.monotonic() if states else 0.0
    out: dict[str, str] = {}
    shares: dict[str, float] = {}
    for nature in LEFT_OUT:
        left_out, shares[nature] = quality.untrusted_share(states, now, nature)
        out.update(left_out)
    before: dict[str, str] = agent.uncounted
    for name in sorted(out.keys() - before.keys()):
        doing = LEFT_OUT[states[name].settings.nature][0]
        log.warning("%s %s: %s until it answers (interval %d planned without it)", name, out[name], doing, t)
    for name in sorted(before.keys() - out.keys()):
        again = LEFT_OUT[states[name].settings.nature][1] if name in states else "it is counted again"
        log.warning("%s answers again: %s from interval %d", name, again, t)
    agent.uncounted = out
    i = interval_plan.profile_index(t, agent.mg.intervals)
    mg = interval_plan.counted(agent.mg, i, shares["pv"], shares["battery"], shares["genset"])
    return mg, out


def unmetered_rules(agent: Any, t: int, rules: ContractRules) -> ContractRules:
    """`rules` allowing no quantity where the agent settles from its meter (`settle_by_both`) and that meter did
    not see interval t's start (`MgMetering.start_unseen`, now), said at WARNING; `rules` itself otherwise."""
    if not agent.settler.by_both:
        return rules
    unseen = agent._metering().start_unseen(t, round(time.time() * 1000))
    if unseen is None:
        return rules
    log.warning("interval %d: offering nothing: this MG's PCC meter did not see the interval's start (%s); "
                "the DSO would settle its side unmetered", t, unseen)  # fmt: skip
    return dataclasses.replace(rules, max_quantity_kwh=0.0)


def note_join(agent: Any, t: int, at: float) -> None:
    """Where a (re)started agent joins (`agent_day.run_day`): interval t, at wall second `at`; kept for
    `late_rules` where that is within t's slot (a restart that walks past intervals, P4, is left as it was)."""
    agent.joined_late = t if agent._start_of(t) < at < agent._start_of(t + 1) else None


def late_rules(agent: Any, t: int, rules: ContractRules, forward: str | None) -> ContractRules:
    """`rules` allowing no quantity where t is the interval its run joined after its slot started (`note_join`)
    and the time left is too short for its bargaining (`too_late`), said at WARNING; `rules` itself otherwise,
    for a forward-traded interval (no rounds), or where it offers nothing already (`unmetered_rules`)."""
    if agent.joined_late != t or forward is not None or rules.max_quantity_kwh <= 0:
        return rules
    replica = agent.ledger.replicas["mgmc"]
    bargainings = 1 + replica.app.genesis.params.max_reopens
    left = agent._start_of(t + 1) - time.time()
    why = too_late(left, agent.s.interval_s, replica.engine.config.block_period_ms, bargainings,
                   agent.cfg.max_rounds)  # fmt: skip
    if why is None:
        return rules
    log.warning("interval %d: offering nothing: this MG joined it after its start and %s; it offers from the "
                "next interval", t, why)  # fmt: skip
    return dataclasses.replace(rules, max_quantity_kwh=0.0)


def too_late(
    left_s: float, interval_s: float, block_ms: int, bargainings: int, max_rounds: int
) -> str | None:
    """Why `left_s` seconds of an interval are too short for its bargaining, or None: they must hold the rounds
    a bargaining may take there (`max_rounds`, at most those `config.rounds_that_fit` finds in a whole
    interval of `interval_s`), counted by `rounds_that_fit` on what is left: two blocks of `block_ms` a round,
    `bargainings` bargainings (the first and the genesis' re-bargainings) in `ROUNDS_SHARE` of it. Pure."""
    need = min(max_rounds, rounds_that_fit(interval_s, block_ms, bargainings))
    fit = rounds_that_fit(max(0.0, left_s), block_ms, bargainings)
    if fit >= need:
        return None
    return (
        f"the {max(0.0, left_s):.1f} s left of its {interval_s:g} s hold {fit} round(s) a bargaining, not the "
        f"{need} it may take ({bargainings} bargaining(s), two {block_ms}-ms blocks a round, in "
        f"{ROUNDS_SHARE:.0%} of the time: config.rounds_that_fit)"
    )
