"""Where a (re)started trading agent picks up: the interval to join, the state its models start from.

Promises: `resume_interval` is the first interval nobody has started trading in (a restarted agent never joins
one midway; a forward-traded interval counts as started once its slot is over); `initial_state` is the model's start state with each battery's stored energy from its own fresh
reading (a reading outside 0-100 % is not believed); `resumed_counterfactual` carries the conventional
counterfactual from the agent's last record through the intervals it missed, so the comparison with the
DSO-only market does not forget what each path did to the batteries; `recorded_verdicts` reads back each
interval's dispatch verdict (`PLAN_CONFIRMED`, written with the interval's record) for an MG without a PCC
meter, which states a trade only where it says the plan was confirmed (review10 F5: kept in memory only, a
restart lost them and the MG never stated the trades it had dispatched). A record it cannot read is logged
as an error and its interval has no verdict: that MG then states nothing for it, never a guess. Pure apart
from reading the record file; never writes anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from peergrid_controller.builder import MgState
from peergrid_controller.model import Microgrid
from peergrid_controller.schedule import MgSchedule
from peergrid_edge.forward_agent import forward_session
from peergrid_ledger.contracts import market as contract

log = logging.getLogger("peergrid.edge.trader")

PLAN_CONFIRMED = "plan_confirmed"
"""The interval record's key for its dispatch verdict: read-back confirmed the plan, with the P2P net the
trades agreed, in full (bool)."""


def resume_interval(state: Any, first: int, passed: Callable[[int], bool] = lambda _t: True) -> int:
    """The first interval from `first` on that is neither closed nor has a member on the MGMC chain, where an
    interval the day-ahead clear closed (forward trades, closed before anyone traded it) counts as started
    only once `passed(t)` (its slot is over): a restarted agent still plans, dispatches and injects the
    forward-traded intervals ahead (there is no bargaining to join midway)."""
    t = first
    while True:
        if forward_session(state, t) is not None:
            if not passed(t):
                return t
        elif not (
            contract.closed(state, t)
            or contract.members(state, t, "sellers")
            or contract.members(state, t, "buyers")
        ):
            return t
        t += 1


def initial_state(mg: Microgrid, devices: Mapping[str, Any]) -> MgState:
    """The model's start state, each battery's stored energy from `devices[name].last_good` when it reads sanely."""
    state = MgState.initial(mg)
    socs = list(state.soc_kwh)
    for i, battery in enumerate(mg.batteries):
        device = devices.get(battery.name)
        reading = device.last_good.reading if device is not None and device.last_good is not None else {}
        soc = reading.get("soc_pct")
        if soc is not None and 0 <= soc <= 100:
            socs[i] = battery.capacity_kwh * soc / 100
    return replace(state, soc_kwh=tuple(socs))


def resumed_counterfactual(
    record_file: Path | None, mg: Microgrid, dt: float, intervals: int, t: int
) -> MgState | None:
    """The conventional counterfactual's state at interval t: where the last record before t left it, carried
    through the intervals missed since (None: no record to start from)."""
    if record_file is None or not record_file.exists():
        return None
    last = None
    for line in record_file.read_text(encoding="utf-8").splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "conv_state" in doc and doc["interval"] < t:
            last = doc
    if last is None:
        return None
    c = last["conv_state"]
    state = MgState(tuple(c["soc_kwh"]), tuple(c["genset_on"]), tuple(c["genset_kw"]),
                    tuple(c["genset_intervals_in_state"]))  # fmt: skip
    for k in range(int(last["interval"]) + 1, t):
        conv = MgSchedule(mg, dt, start=k, horizon=intervals - k, state=state)
        conv.solve()
        conv.dispatch(0.0)
        _, state = conv.first_interval_cost_and_state()
    return state


def recorded_verdicts(record_file: Path | None, intervals: range) -> dict[int, bool]:
    """The dispatch verdicts (`PLAN_CONFIRMED`) the agent's records hold for `intervals`; an interval without
    one (not recorded, or its record unreadable: logged as an error) is left out."""
    if record_file is None or not record_file.exists():
        return {}
    verdicts, errors = verdicts_of(record_file.read_text(encoding="utf-8").splitlines(), intervals)
    for error in errors:
        log.error("record %s: %s", record_file, error)
    return verdicts


def verdicts_of(lines: Iterable[str], intervals: range) -> tuple[dict[int, bool], list[str]]:
    """The `PLAN_CONFIRMED` verdicts of `intervals` in the record's lines, and why any line could not be
    read. An interval whose verdict is not a bool, or whose records disagree, has none (never a guess); a line
    that is not a JSON object may have held one, so it is an error too, whichever interval it was."""
    verdicts: dict[int, bool] = {}
    spoilt: set[int] = set()
    errors: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            errors.append(f"line {number} is not JSON ({exc}): a dispatch verdict it held is lost")
            continue
        if not isinstance(doc, dict):
            errors.append(f"line {number} is not a JSON object: a dispatch verdict it held is lost")
            continue
        if PLAN_CONFIRMED not in doc:
            continue
        t, verdict = doc.get("interval"), doc[PLAN_CONFIRMED]
        if not isinstance(t, int) or isinstance(t, bool):
            errors.append(f"line {number}: {PLAN_CONFIRMED} of interval {t!r}, not an interval number")
            continue
        if t not in intervals:
            continue
        if not isinstance(verdict, bool):
            errors.append(f"line {number}: interval {t}'s {PLAN_CONFIRMED} is {verdict!r}, not true or false")
            spoilt.add(t)
        elif verdicts.get(t, verdict) != verdict:
            errors.append(f"line {number}: interval {t}'s {PLAN_CONFIRMED} contradicts an earlier record")
            spoilt.add(t)
        verdicts.setdefault(t, verdict)
    return {t: v for t, v in verdicts.items() if t not in spoilt and isinstance(v, bool)}, errors
