"""Where a (re)started trading agent picks up: the interval to join, the state its models start from, and the
record file's lines read back by day.

Promises: `resume_interval` is the first interval nobody has started trading in (a restarted agent never joins
one midway; a forward-traded interval counts as started once its slot is over); `initial_state` is the
model's start state with each battery's stored energy from its own fresh reading (a reading outside 0-100 %
is not believed); `resumed_counterfactual` carries the conventional
counterfactual from the agent's last record through the intervals it missed, so the comparison with the
DSO-only market does not forget what each path did to the batteries; `recorded_verdicts` reads back each
interval's dispatch verdict (`PLAN_CONFIRMED`, written with the interval's record) for an MG without a PCC
meter, which states a trade only where it says the plan was confirmed (review10 F5: kept in memory only, a
restart lost them and the MG never stated the trades it had dispatched). A record it cannot read is logged
as an error and its interval has no verdict: that MG then states nothing for it, never a guess. What the
records say of the day's spend (the guard's budget on a restart) is `resume_spend.py`'s, on the same lines.
Pure apart from reading the record file; never writes anything. Every reader parses a line with
`record_object`.
One record file serves every day (one path, appended to: review18 K-1), so each record carries its day (`DAY`:
`record_day`, the agent's t0 and first interval, the pair its day-ahead session is named by; `stamped`; the
first interval read back by `record_day_first`) and each reader given a day reads only that day's lines
(`of_day`): another day's budget, costs and verdicts are never today's. A line of an earlier day's interval
(a settlement the next day's idles ended) carries its interval's day, and a settlement ending the file holds
already is not written again (`ending_of`: U7's finding 11). The counterfactual alone reads the day
before's last record where its day has none yet before the interval (`resumed_counterfactual`: the
conventional MG's battery goes on across midnight). A line with no stamp
(written before the stamp) is another day's: never resumed, so a restart mid-day across the upgrade resumes with
the chain's word only (`RecordedSpend.unknown` fails closed on any interval the MG took part in). `day` None
reads every line (a file known to hold one day: tests).
The start-up reads are best effort (review15 M3: one damaged line raised out of the agent's start, and the
edge crash-looped under systemd): `record_lines` reads the file's lines one by one, a byte that is not UTF-8
replaced (the records are written as ASCII: such a byte is damage, logged once per line); a line that is not
a well-formed record is skipped and logged once, naming the file and its line, and every good line is kept.
A file that cannot be read at all is logged and read as empty; carrying the counterfactual that fails is
logged and the agent starts it afresh. None of them raises.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from peergrid_controller.builder import MgState
from peergrid_controller.model import Microgrid
from peergrid_controller.schedule import MgSchedule
from peergrid_edge.forward_agent import forward_session
from peergrid_edge.interval_plan import profile_index
from peergrid_ledger.contracts import market as contract

log = logging.getLogger("peergrid.edge.trader")

REPLACED = "\ufffd"
"""What `record_lines` puts for a byte that is not UTF-8 (the records are ASCII JSON: it is damage)."""
DAMAGED = " (it holds bytes that are not UTF-8: the file is damaged)"

DAY = "day"
"""Every record's key for the day it belongs to (`record_day`), written second, after its interval."""


def record_day(t0: float, first_interval: int) -> str:
    """The stamp of the trading agent's day: the wall second its first interval starts and that interval's number
    (its day-ahead session's name holds the same pair). A restart within the day runs the same config and so the
    same day; another day differs in one of them: a new chain per day starts at another t0 (its interval numbers
    repeat), a long-lived chain at a later first interval (and t0)."""
    return f"{int(t0)}/{first_interval}"


def record_day_first(stamp: object) -> int | None:
    """The first interval a day stamp names (`record_day`'s 't0/first'); None where `stamp` is no such stamp
    (none at all, or one written otherwise)."""
    try:
        return int(str(stamp).rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return None


def stamped(doc: dict[str, Any], day: str) -> dict[str, Any]:
    """The record `doc` stamped with its day, the interval (where it names one) first and the day next, so a line
    torn after them still says both (`_LEGIBLE`)."""
    head = {"interval": doc["interval"]} if "interval" in doc else {}
    return {**head, DAY: day, **doc}


def stamp_of(doc: dict[str, Any]) -> str | None:
    """The day stamp a record carries (`record_day`); None where it has none (lines written before stamps)."""
    stamp = doc.get(DAY)
    return stamp if isinstance(stamp, str) else None


def of_day(doc: dict[str, Any], day: str | None) -> bool:
    """Whether a record is of `day` (None: any day). A record with no stamp is another day's."""
    return day is None or doc.get(DAY) == day


def ending_of(doc: dict[str, Any]) -> tuple[str, str, bool, str] | None:
    """How a settlement line (`settlement.Settler._report`) says one trade ended, as a key: its day stamp, the
    trade, settled or not, and its reason up to the first ';' ('the trading day ended', 'disputed', ...: the
    last refusal after it may read otherwise another time); None where `doc` is no settlement line. A restart
    picks up the trades the chain shows unsettled and may end one again as its last run did (U7's finding
    11: a trade given up at day 0's end was recorded again by a restart on day 1): the agent writes a line
    whose ending its record file holds already no more (`MarketAgent._record`)."""
    settlement = doc.get("settlement")
    if not isinstance(settlement, dict) or not isinstance(settlement.get("trade"), str):
        return None
    reason = str(settlement.get("reason", "")).split(";", 1)[0]
    return str(doc.get(DAY)), settlement["trade"], settlement.get("settled") is True, reason


def recorded_endings(record_file: Path | None) -> set[tuple[str, str, bool, str]]:
    """The settlement endings (`ending_of`) the record file holds; a line it cannot read holds none."""
    return {ending for doc in records_in(record_file) if (ending := ending_of(doc)) is not None}


def has_records(record_file: Path | None) -> bool:
    """Whether the record file holds a record (one well-formed line): a start without one is the MG's first
    (`agent_day.Calendar.resume_from`'s `first_start`)."""
    return next(records_in(record_file), None) is not None


def records_in(record_file: Path | None) -> Iterator[dict[str, Any]]:
    """The record file's records, in order: each line that reads as a JSON object (`record_object`); one it
    cannot read is none, and said by the readers that need it."""
    for line in record_lines(record_file):
        if line.strip() and (doc := record_object(line)[0]) is not None:
            yield doc


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
    record_file: Path | None,
    mg: Microgrid,
    dt: float,
    intervals: int,
    t: int,
    day: str | None = None,
    day_before: str | None = None,
) -> MgState | None:
    """The conventional counterfactual's state at chain interval t: where the last well-formed record of `day`
    before t left it, or, where `day` has none yet, the last of `day_before` (the stamp of the run's day before,
    `agent_day.Calendar.day_before`; None: the run's first day), carried through the intervals missed since,
    each planned at its profile index to its day's end (`interval_plan.profile_index`; `intervals`: the
    scenario's n a day) (None: no record to start from, or carrying it failed: logged, and the agent starts the
    counterfactual from its own state).
    Why the day before: the counterfactual is the same MG had it traded only with the DSO, one path over the
    run, so day k's starts where that MG stood at day k - 1's end, as the running agent carries it
    (`agent_day.next_day` keeps `conv_state`); the day's last record values no stored energy (its `cost_to_go`
    is 0 at a day's end), so a path started again from the real battery would forget what P2P did to it the day
    before. R44: a restart before the new day's first record read the day's own lines only and started from the
    real battery, so `cost_conventional` (and the lab's p2p_not_dearer) differed between a running and a
    restarted MGMC for the same day. Only the run's day before on the same chain: an MGMC down a whole day has
    no day before's end to start from, and a new chain per day (intervals numbered again, review18 K-1) is a
    new run whose day before is another's; both start afresh."""
    lines = record_lines(record_file)
    last, errors = counterfactual_of(lines, t, mg, day, day_before)
    for error in errors:
        log.warning("record %s: %s", record_file, error)
    if last is None:
        return None
    start, state = last
    try:
        for k in range(start + 1, t):
            i = profile_index(k, intervals)
            conv = MgSchedule(mg, dt, start=i, horizon=intervals - i, state=state)
            conv.solve()
            conv.dispatch(0.0)
            _, state = conv.first_interval_cost_and_state()
    except Exception:  # a comparison's start, never worth the agent's start (review15 M3)
        log.exception(
            "record %s: the conventional counterfactual of interval %d could not be carried to interval %d; "
            "it starts afresh", record_file, start, t,
        )  # fmt: skip
        return None
    return state


def counterfactual_of(
    lines: Iterable[str], t: int, mg: Microgrid, day: str | None = None, day_before: str | None = None
) -> tuple[tuple[int, MgState] | None, list[str]]:
    """The last (interval, state) before t that the records' `conv_state` lines of `day` hold for `mg` (its
    batteries and gensets), else the last of `day_before` (None: none is read), and why a line that may have
    held one was skipped or is damaged (one per line)."""
    last: dict[bool, tuple[int, MgState]] = {}  # keyed by whether it is the day before's
    errors: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        found, why = _conv_line(line, t, mg, day, day_before)
        damaged = DAMAGED if REPLACED in line else ""
        if why is not None or damaged:
            errors.append(f"line {number}{damaged}: {why or 'read as it stands'}")
        if found is not None:
            stamp, k, state = found
            last[day is not None and stamp != day] = (k, state)
    return last.get(False, last.get(True)), errors


def _conv_line(
    line: str, t: int, mg: Microgrid, day: str | None, day_before: str | None = None
) -> tuple[tuple[Any, int, MgState] | None, str | None]:
    """One record line's (day stamp, interval, conventional state) if it holds one of `day` or `day_before`
    before t, and why it was skipped."""
    doc, refused = record_object(line)
    if doc is None:
        return None, f"{refused}: skipped"
    wanted = of_day(doc, day) or (day_before is not None and of_day(doc, day_before))
    if "conv_state" not in doc or not wanted:
        return None, None
    k = doc.get("interval")
    if not isinstance(k, int) or isinstance(k, bool):
        return None, f"a conv_state of interval {k!r:.40}, not an interval number: skipped"
    if k >= t:
        return None, None
    state = _mg_state(doc["conv_state"], mg)
    if isinstance(state, str):
        return None, f"interval {k}'s conv_state {state}: skipped"
    return (doc.get(DAY), k, state), None


def _mg_state(c: Any, mg: Microgrid) -> MgState | str:
    """`conv_state` (`asdict(MgState)`) as an MgState of `mg`, or what is wrong with it."""
    shape = {
        "soc_kwh": (len(mg.batteries), finite),
        "genset_on": (len(mg.gensets), lambda v: isinstance(v, bool)),
        "genset_kw": (len(mg.gensets), finite),
        "genset_intervals_in_state": (len(mg.gensets), lambda v: type(v) is int),
    }
    if not isinstance(c, dict):
        return "is not an object"
    for name, (size, good) in shape.items():
        values = c.get(name)
        if not isinstance(values, list) or len(values) != size or not all(good(v) for v in values):
            return f"has no {name} of {size} for this MG ({values!r:.60})"
    return MgState(tuple(c["soc_kwh"]), tuple(c["genset_on"]), tuple(c["genset_kw"]),
                   tuple(c["genset_intervals_in_state"]))  # fmt: skip


def finite(value: Any) -> bool:
    """A JSON number a float can hold: not a bool, NaN or infinity, and no integer beyond a float's range (whose
    math.isfinite raised OverflowError: a damaged record line crashed the restart that should refuse it, RR2)."""
    if type(value) is int:
        return abs(value) <= sys.float_info.max  # int against float compares exactly, never overflows
    return type(value) is float and math.isfinite(value)


def record_lines(record_file: Path | None) -> list[str]:
    """The record file's lines (split at each newline, so numbered as the file is), each decoded on its own:
    a byte that is not UTF-8 becomes U+FFFD (`REPLACED`), and the line's reader says so. Empty when there is
    no file, or it cannot be read (logged as an error: the agent starts without what it held)."""
    if record_file is None:
        return []
    try:
        raw = record_file.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.error("record %s cannot be read (%s): the agent starts without its records", record_file, exc)
        return []
    return [line.decode("utf-8", errors="replace") for line in raw.split(b"\n")]


def recorded_verdicts(record_file: Path | None, intervals: range, day: str | None = None) -> dict[int, bool]:
    """The dispatch verdicts (`PLAN_CONFIRMED`) the agent's records of `day` hold for `intervals`; an interval
    without one (not recorded, or its record unreadable: logged as an error) is left out."""
    verdicts, errors = verdicts_of(record_lines(record_file), intervals, day)
    for error in errors:
        log.error("record %s: %s", record_file, error)
    return verdicts


def verdicts_of(
    lines: Iterable[str], intervals: range, day: str | None = None
) -> tuple[dict[int, bool], list[str]]:
    """The `PLAN_CONFIRMED` verdicts of `intervals` in the record's lines of `day`, and why any line could not be
    read. An interval whose verdict is not a bool, or whose records disagree, has none (never a guess); a line
    that is not a JSON object may have held one, so it is an error too, whichever interval it was."""
    verdicts: dict[int, bool] = {}
    spoilt: set[int] = set()
    errors: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        damaged = DAMAGED if REPLACED in line else ""
        found, why = _verdict_line(line, intervals, day)
        if found is not None:
            t, verdict = found
            if verdict is None:
                spoilt.add(t)
            elif verdicts.get(t, verdict) != verdict:
                why = f"interval {t}'s {PLAN_CONFIRMED} contradicts an earlier record"
                spoilt.add(t)
            else:
                verdicts[t] = verdict
        if why is not None or damaged:  # once per line: a verdict read from a damaged line stands (the
            # damage hit a string: the writer's JSON is ASCII), one it held may be lost
            errors.append(f"line {number}{damaged}: {why or 'read as it stands'}")
    return {t: v for t, v in verdicts.items() if t not in spoilt}, errors


def _verdict_line(
    line: str, intervals: range, day: str | None
) -> tuple[tuple[int, bool | None] | None, str | None]:
    """One record line's (interval, verdict) if it holds one of `intervals` (verdict None: not a bool), and
    why it could not be read. A line that is not a JSON object may have held one: that is an error too."""
    doc, refused = record_object(line)
    if doc is None:
        return None, f"{refused}: a dispatch verdict it held is lost"
    if PLAN_CONFIRMED not in doc or not of_day(doc, day):
        return None, None
    t, verdict = doc.get("interval"), doc[PLAN_CONFIRMED]
    if not isinstance(t, int) or isinstance(t, bool):
        return None, f"{PLAN_CONFIRMED} of interval {t!r:.40}, not an interval number"
    if t not in intervals:
        return None, None
    if not isinstance(verdict, bool):
        return (t, None), f"interval {t}'s {PLAN_CONFIRMED} is {verdict!r:.40}, not true or false"
    return (t, verdict), None


def record_object(line: str) -> tuple[dict[str, Any] | None, str]:
    """One record line as its JSON object, or None and why not (not JSON, or JSON but not an object): the
    two refusals every reader of the record shares; each says what the refusal costs it."""
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError) as exc:
        return None, f"it is not JSON ({exc})"
    if not isinstance(doc, dict):
        return None, "it is not a JSON object"
    return doc, ""
