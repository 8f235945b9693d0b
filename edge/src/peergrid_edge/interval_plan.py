"""The trading agent's plan of one interval from its MG's model (split from `trader.py`, which calls these
at each interval): pure, on the controller's schedule; the agent owns the state and the I/O.

Promises:
- `plan_day`: the MG's day from interval t, planned with the forward trades of t on fixed; where its state
  cannot meet them all (review8 F2), with t's alone, then without P2P; raises only when no plan exists.
- `deliver`: interval t dispatched with its agreed P2P trade, or with the nearest part of it the MG can
  deliver from its state (to a watt); the rest is its imbalance. Raises when it cannot even trade nothing.
- `meet_limit`: interval t re-planned with its trades fixed within the DSO's injection limits, if any;
  says plainly when they are not met.
- `counterfactual`: the conventional counterfactual's interval (no P2P, within the DSO's limit if any).
- `cost_to_go`: the conventional cost of the rest of the day from a state (0 at the day's end).
- `counted`: the MG as interval t may count on it, each nature cut to the share of its rating whose devices
  answer (`quality.untrusted_share`): its PV's forecast for t, so it never plans, offers or sells a
  quarantined or stale PV's output (U4 F9: one sold its cap every interval of an outage on a forecast it could
  neither read nor curtail), later intervals keeping the forecast, planned again as each comes; its batteries'
  charge and discharge power and its gensets' output, so it neither offers what a battery it cannot command
  would discharge nor commits a genset that does not answer. Those two are cut for the whole day planned
  from t, not for t alone: the model holds one power rating per battery and genset for the day (only PV has a
  forecast per interval), and a device that stopped answering is not counted on to come back (the plan does
  not sell now what it would buy back later on a battery it may not have then). The guard's alternative and
  the counterfactual are of the same cut MG, so the guard judges the plan by the MG it can be. What a battery
  holds stays in the state (neither charged nor discharged: as last planned or read) and is planned on again
  from the interval it answers in; a genset left out is planned stopped, with no minimum up or down time
  owed, so once it answers the plan starts it as it would a stopped one.
- `profile_index`, `day_start`, `day_end`: where the agent's chain intervals meet its model (`market.days`). The
  MGMC chain numbers its intervals on for ever (t: offers, bids, trades, injections, verdicts, settlements,
  records); the MG's model holds one day of n intervals (the scenario's profiles: tariff, PV forecast, load).
  Chain interval t is day t // n, which starts at chain interval `day_start(t, n)`, read from the model at
  profile index i = t mod n (`profile_index`), planned to its day's end, chain interval `day_end(t, n)` (the
  model's n: a horizon of n - i). Every function here that takes an
  interval to index the model (`plan_day`, `counterfactual`, `cost_to_go`, `counted`) takes the profile index;
  `deliver` and `meet_limit` name the chain interval (their `t` only labels their log lines). The agent maps
  each chain interval through `profile_index` where it calls the model (trader, interval_offer, guard,
  dso_answers, agent_dispatch, resume), so a plan on day 1000 is the size of day 0's.
Never reads clocks, devices or the chain; logs under the trader's name, as before the split.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from peergrid_controller.adjustment import Adjustment, meet, nearest_reachable
from peergrid_controller.builder import MgState
from peergrid_controller.model import Battery, Genset, Microgrid
from peergrid_controller.schedule import MgSchedule, Plan, ScheduleError

log = logging.getLogger("peergrid.edge.trader")


def profile_index(t: int, n: int) -> int:
    """Chain interval t's index in the model's per-interval profiles of `n` intervals a day (the scenario's, every
    profile's length): t mod n (the module's "profile_index"). Raises on a day of no intervals."""
    if n <= 0:
        raise ValueError(f"a day of {n} intervals has no profile for interval {t}")
    return t % n


def day_start(t: int, n: int) -> int:
    """The first chain interval of t's day (n intervals a day): the one at profile index 0."""
    return t - profile_index(t, n)


def day_end(t: int, n: int) -> int:
    """The chain interval after the last of t's day (n intervals a day): where a plan from t ends."""
    return day_start(t, n) + n


def plan_day(
    mg: Microgrid,
    dt: float,
    intervals: int,
    t: int,
    state: MgState | None,
    fixed: list[float] | None,
    schedule: Callable[..., MgSchedule] = MgSchedule,
    p2p_prices: list[float] | None = None,
) -> tuple[MgSchedule, Plan]:
    """The MG's day from profile index t (of `intervals`, the day's n: to the day's end) and its `state`,
    planned with the forward trades of t on fixed (`fixed`, kW). They were accepted on the day planned from its
    start (`forward.accept_alone`); from the state this MG is in now (review8 F2) they may not all be met: then
    with t's alone (each later one is held when its interval comes), and if even t's cannot be met (less stored
    energy than planned, PV short), without P2P: t's trade is then delivered as far as the MG can (`deliver`). Raises only when the
    MG has no plan at all. `schedule` makes the model (`MgSchedule`; the trader passes its own name).
    `p2p_prices`: the peer prices forecast for intervals t on (`guard.market_forecast`), which the plan may
    lean on in later intervals; a plan holding forward trades leans on none (`MgSchedule` opens P2P only
    where nothing is fixed)."""
    tries: list[list[float] | None] = [fixed]
    if fixed is not None and any(fixed[1:]):
        tries.append([fixed[0]] + [0.0] * (len(fixed) - 1))
    if fixed is not None and fixed[0]:
        tries.append(None)
    horizon = intervals - t
    for held in tries:
        prices = p2p_prices if fixed is None else None  # "without P2P" means without a forecast too
        sched = schedule(mg, dt, start=t, horizon=horizon, state=state, p2p_fixed=held, p2p_prices=prices)
        try:
            return sched, sched.solve()
        except ScheduleError as exc:
            if held is tries[-1]:
                raise
            log.warning("interval %d: infeasible with the forward trades %s held (%s): planning with "
                        "fewer", t, held, exc)  # fmt: skip
    raise AssertionError("unreachable")  # the last try returned or raised


def deliver(t: int, sched: MgSchedule, agreed_kw: float) -> tuple[Plan, float]:
    """Interval t dispatched with its agreed P2P trade (kW, + export); when the MG cannot deliver it all
    from its state (a forward trade, review8 F2), with the nearest part it can, to a watt (the plan's
    injection is then what it really exports): the rest is its imbalance, which the DSO covers (priced
    by `delivery.py`'s compensation in the simulation; not settled on the edge chain). The agreed trades
    are still settled as agreed. Raises when it cannot even trade nothing."""
    try:
        return sched.dispatch(agreed_kw), agreed_kw
    except ScheduleError:
        pass

    def deliverable(kw: float) -> bool:
        try:
            sched.dispatch(kw)
        except ScheduleError:
            return False
        return True

    if not deliverable(0.0):
        raise ScheduleError("infeasible", f"interval {t}: no dispatch even without P2P trades")
    delivered = nearest_reachable(deliverable, 0.0, agreed_kw, 0.001)
    log.warning("interval %d: the agreed P2P trade %+.3f kW cannot be delivered from this MG's state: "
                "%+.3f kW delivered, the rest is its imbalance", t, agreed_kw, delivered)  # fmt: skip
    return sched.dispatch(delivered), delivered


def meet_limit(t: int, sched: MgSchedule, p2p_net_kw: float, limit: dict[str, Any] | None) -> Adjustment:
    """Re-plan interval t with its trades fixed, within the contract's injection limits (W) if any."""
    lo, hi = (None, None) if limit is None else (limit.get("min_injection_w"), limit.get("max_injection_w"))
    adjustment = meet(sched, p2p_net_kw, None if lo is None else lo / 1000, None if hi is None else hi / 1000)
    if limit is None:
        pass
    elif adjustment.met:
        log.info("interval %d: DSO limit %s met at %.2f kW", t, limit, adjustment.injection_kw)
    else:
        log.warning("interval %d: DSO limit %s not met: %s", t, limit, adjustment.reason)
    return adjustment


def counterfactual(
    mg: Microgrid,
    dt: float,
    intervals: int,
    t: int,
    state: MgState,
    limit: tuple[float | None, float | None] | None,
    last: MgState | None = None,
) -> tuple[float, MgState, dict[str, float]]:
    """The conventional counterfactual's profile index t (same MG, no P2P, from its own `state`): its cost, the
    state it leaves and, on the agent's last interval (`last`: the state the P2P path leaves; None: not the
    last), the stored energy each path leaves valued by the rest of the day (`cost_to_go`; {} otherwise).
    The DSO's limit (kW, None: no contract) is the network's, not the market's: it faces it too."""
    conv = MgSchedule(mg, dt, start=t, horizon=intervals - t, state=state)
    conv.solve()
    if limit is not None:
        meet(conv, 0.0, *limit)
    else:
        conv.dispatch(0.0)
    cost, after = conv.first_interval_cost_and_state()
    to_go: dict[str, float] = {}
    if last is not None:
        to_go = {"p2p": cost_to_go(mg, dt, intervals, t + 1, last),
                 "conventional": cost_to_go(mg, dt, intervals, t + 1, after)}  # fmt: skip
    return cost, after, to_go


def cost_to_go(mg: Microgrid, dt: float, intervals: int, start: int, state: MgState) -> float:
    """The conventional cost of the rest of the day (of `intervals`) from profile index `start` and `state` (0 at
    the day's end)."""
    if start >= intervals:
        return 0.0
    return float(MgSchedule(mg, dt, start=start, state=state).solve().cost)


def counted(
    mg: Microgrid, t: int, pv_share: float, battery_share: float = 1.0, genset_share: float = 1.0
) -> Microgrid:
    """`mg` as profile index t counts on it: every PV array's forecast for t scaled by `pv_share`, every battery's
    charge and discharge power by `battery_share` and every genset by `genset_share` (each 0..1: the share of
    that nature's rating whose devices answer); `mg` itself where all are 1. The devices split the plan by
    rating (`planning`), not by name, so a share is cut from every device of the nature alike."""
    pv, battery, genset = (min(max(share, 0.0), 1.0) for share in (pv_share, battery_share, genset_share))
    if pv < 1.0 and mg.pv:

        def cut(kw: tuple[float, ...]) -> tuple[float, ...]:
            return (*kw[:t], kw[t] * pv, *kw[t + 1 :])

        mg = replace(mg, pv=tuple(replace(p, available_kw=cut(p.available_kw)) for p in mg.pv))
    if battery < 1.0 and mg.batteries:
        mg = replace(mg, batteries=tuple(_battery_part(b, battery) for b in mg.batteries))
    if genset < 1.0 and mg.gensets:
        mg = replace(mg, gensets=tuple(_genset_part(g, genset) for g in mg.gensets))
    return mg


def _battery_part(battery: Battery, share: float) -> Battery:
    """`battery` with `share` of its power; none at all: held where it stands, whatever its state of charge
    (a start read below its soc_min would otherwise leave no plan at all: it cannot be charged into range)."""
    part = replace(battery, max_charge_kw=battery.max_charge_kw * share,
                   max_discharge_kw=battery.max_discharge_kw * share)  # fmt: skip
    return part if share > 0.0 else replace(part, soc_min=0.0, soc_max=1.0)


def _genset_part(genset: Genset, share: float) -> Genset:
    """`genset` with `share` of its output, fuel curve and costs, its ramp not held (the state holds the whole
    fleet's output, which a share's ramp could make unreachable: no plan at all); none at all: a genset that
    cannot run, with no minimum up or down time owed from its state (a plan must be able to leave it stopped)."""
    if share <= 0.0:
        return replace(genset, max_kw=0.0, min_kw=0.0, segments=(), ramp_kw_per_interval=math.inf,
                       min_up_intervals=1, min_down_intervals=1, initial_kw=0.0)  # fmt: skip
    return replace(
        genset,
        max_kw=genset.max_kw * share,
        min_kw=genset.min_kw * share,
        segments=tuple(replace(s, width_kw=s.width_kw * share) for s in genset.segments),
        min_kw_cost_per_h=genset.min_kw_cost_per_h * share,
        startup_cost=genset.startup_cost * share,
        ramp_kw_per_interval=math.inf,
        initial_kw=genset.initial_kw * share,
    )
