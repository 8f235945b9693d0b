"""Everything the console needs at run time, built once in the app's lifespan and reached via `Depends`.

Promises: `build_console(settings, dso)` loads the user file (a bad one raises `UserError` naming it, so the
server refuses to start rather than run without its users) and builds the feeder view and operations on the
DSO engineer's services (`peergrid_dso.services.container.DsoServices`: feeder, switch state, DSO chain,
switching executor, enrolment); `start_market` runs the lab market simulation on a daemon thread (the market
view says "computing" until it is done, and shows the error if the controller is missing).
With the closed loop's node (`peergrid_dso.live.EmbeddedLoop`) the console is live instead: explorers read the
node's replicas of both chains, the market view reads the MGMC chain (`console.live_market`), operator
actions take the relays' lock the loop switches under, and each interval the loop finishes (`on_interval`)
updates the feeder view (injections, the loop's verdict, alarms naming the interval's market day and clock time,
`market_days.named`; an interval the node missed, over while it
was down, as missed with why and an alarm, never as an unchecked `secure: None`; those missed before the
console's start are read back from the node's record file, its recent end: `read_back_missed`, D10) and is
announced to SSE clients: the view draws only finished intervals' outcomes, never an iteration's figures
mid-interval (`tick`). The
node's relay watch (`switching_watch`, `console.relay_watch`) stands in the feeder view's alarms and in the
operations view (`relay_watch_view`: which branch reports what, and the adoption it allows) while its alarm
stands (and on the diagram's switches: `relay_reports`), and leaves them when the watch lifts it. The node's
own records on the DSO chain (its reconfiguration plans, the relay watch's read-back records:
`console.node_records`) join the Operations view's audit trail in height order, beside the operators' (U3-7):
read on a daemon thread every second while the node runs (`follow_node_records`), never on the server's event
loop (the feed's) or the node's; the server's stop ends that thread before the node's stop closes the store it
reads (`stop_node_records`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peergrid_dso.auth.security import SecurityLog
from peergrid_dso.auth.sessions import LoginThrottle, SessionStore
from peergrid_dso.auth.store import ConsoleDb, console_db_path
from peergrid_dso.auth.users import UserStore
from peergrid_dso.console.chains import ChainExplorer
from peergrid_dso.console.grid import GridView, lab_injections
from peergrid_dso.console.market_days import check_listed, day_fields, named
from peergrid_dso.console.node_records import NodeRecords
from peergrid_dso.console.operations import Operations
from peergrid_dso.console.relay_watch import standing, watch_of, watch_view
from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.console.switchgear import DsoSwitchgear
from peergrid_dso.services.enrolment_file import EnrolmentFile, enrolment_file_path
from peergrid_dso.services.enrolment_tokens import TokenStore, token_store_path

log = logging.getLogger("peergrid_dso.console")


@dataclass
class ConsoleState:
    settings: ConsoleSettings
    users: UserStore
    sessions: SessionStore
    throttle: LoginThrottle
    security: SecurityLog
    grid: GridView
    ops: Operations
    explorers: dict[str, ChainExplorer]
    dso: Any
    market: dict[str, Any] = field(default_factory=lambda: {"status": "computing"})
    live_market: Any = None  # console.live_market.LiveMarket when the console shows the closed loop
    live: bool = False
    intervals: list[dict[str, Any]] = field(default_factory=list)  # the loop's latest interval summaries
    relay_watch: Callable[[], Any] = lambda: None  # the node's `RelayWatch` (None: no closed loop)
    drawn: int | None = None  # the latest interval the loop finished whose outcome the feeder view draws
    node_records: NodeRecords | None = None  # the node's own records on the DSO chain (closed loop only)
    interval_hours: float | None = None  # the closed loop's interval length (`interval_minutes` / 60)
    _step: int = -1
    # the run of missed intervals the newest missed alarm names: first, last, why, the alarm's words
    _missed_run: tuple[int, int, str, str] | None = None
    # held while the node's records are heard (`on_interval`, the node's thread) or read back at start: one at a time
    _hearing: threading.RLock = field(default_factory=threading.RLock)
    # one read of the node's records at a time; whether the last one failed (told once, not every second)
    _reading: threading.Lock = field(default_factory=threading.Lock)
    _unread: bool = False
    # set before the node closes its stores (`stop_node_records`); the thread that reads them
    _stop_reading: threading.Event = field(default_factory=threading.Event)
    _follower: threading.Thread | None = None

    def standing_alarms(self) -> tuple[str, ...]:
        """The feeder view's alarms that stand only while their cause does: the relay watch's."""
        found = standing(self.relay_watch())
        alarm = found.alarm() if found is not None else None
        return (alarm,) if alarm else ()

    def relay_reports(self) -> dict[int, str]:
        """For the one-line diagram: each branch the standing relay watch finds off, and what it reports."""
        found = standing(self.relay_watch())
        if found is None:
            return {}
        return dict(found.off) | {b: "unreadable" for b, _ in found.unreadable}

    def relay_watch_view(self) -> dict[str, Any] | None:
        """The relay watch's standing finding for the Relay positions card, or None while none stands."""
        found = standing(self.relay_watch())
        return watch_view(found, self.grid.feeder) if found is not None else None

    def operations_version(self) -> int:
        """Changes when the Operations view's plans, enrolment queue or audit trail do (the relay watch it
        also shows moves the feeder snapshot's version instead), so the SSE stream can announce them. Cheap:
        ids, statuses and counts, no view built; each dict copied in one step (other threads add to them)."""
        plans = [(p.id, p.status, len(p.steps), len(p.chain), p.alarm) for p in list(self.ops.plans.values())]
        enrolled = [(e.mgmc, e.status) for e in list(self.dso.enrolment.enrolments.values())]
        node = 0 if self.node_records is None else self.node_records.changes  # a plan's line changed in place
        return hash((tuple(plans), tuple(enrolled), self.ops.audit_added, node)) & 0xFFFFFFFF

    def follow_node_records(
        self, running: Callable[[], bool], every_s: float = 1.0
    ) -> threading.Thread | None:
        """Read the node's records on a daemon thread every `every_s` while `running()` (the node's), until
        `stop_node_records`."""
        if self.node_records is None:
            return None

        def follow() -> None:
            while running() and not self._stop_reading.is_set():
                self.read_node_records()
                self._stop_reading.wait(every_s)

        thread = threading.Thread(target=follow, name="console-node-records", daemon=True)
        thread.start()
        self._follower = thread
        return thread

    def stop_node_records(self, timeout_s: float = 10.0) -> None:
        """Stop reading the node's records and wait until no read is under way (a scan stops before its next
        block): called before the node stops, which closes the DSO chain's LevelDB store; closed under a read on
        this thread, the store crashed the server with SIGSEGV (R42: 9 of 20 closes during the first scan)."""
        self._stop_reading.set()
        if self._follower is not None:
            self._follower.join(timeout_s)

    def read_node_records(self) -> int:
        """Put the node's records new on the DSO chain into the audit trail, by height among the operators'
        (appended in height order: `OperatorAudit.seal`); how many lines were made or changed so far. A failed
        read is logged and tried again at the next call."""
        if self.node_records is None:
            return 0
        with self._reading:
            try:
                lines = self.node_records.scan(self._stop_reading.is_set)
            except Exception:  # the view goes on without them; the chain keeps them
                if not self._unread:
                    log.exception("the DSO node's records on the DSO chain were not read; trying again")
                self._unread, lines = True, []
            else:
                self._unread = False
            for line in lines:  # by height among the operators' (`seal` appends); the route copies its tail
                self.ops.add_audit(line, by_height=True)
            return self.node_records.changes

    def market_view(self, day: int | None = None) -> dict[str, Any]:
        """The Market view of market day `day` (None: the one it follows); LookupError: no interval of it listed."""
        if self.live_market is not None:
            try:
                view: dict[str, Any] = self.live_market.report(day)
                return view
            except LookupError:
                raise
            except Exception as exc:  # shown to the operator; the server keeps running
                log.exception("live market view failed")
                return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]}
        if (listed := self.market.get("days")) is not None:  # the lab's (one still computing has no days)
            check_listed(day, listed)
        return self.market

    def on_interval(self, record: dict[str, Any]) -> None:
        """Called by the DSO node (its thread) with each interval's record, as written to dso.jsonl."""
        with self._hearing:
            self._on_interval(record)

    def read_back_missed(self, record_file: Any) -> int:
        """At start: the intervals the node missed before it, from its record file (`missed_records.read_back`),
        in the Feeder view's alarms and the Market view as `on_interval` put them (D10: it heard of misses only
        live, so a restart forgot them); how many. `_console` holds the lock from adding `on_interval` to the
        node's listeners until this is done: a record the node makes meanwhile waits, and one both read here
        and heard then is shown once (`_alarm_missed`; `note_missed` keeps one entry per interval)."""
        from peergrid_dso.console.missed_records import read_back

        with self._hearing:
            records = read_back(record_file)
            for record in records:
                self._show_missed(int(record["interval"]), str(record["missed"]))
            return len(records)

    def _show_missed(self, t: int, why: str) -> None:
        self._alarm_missed(t, why)  # its trades went through without the network check: the operator is told
        if self.live_market is not None:  # and the Market view says so of that interval
            self.live_market.note_missed(t, why)

    def _on_interval(self, record: dict[str, Any]) -> None:
        t = int(record.get("interval", -1))
        plan = record.get("plan") or {}
        summary = {
            "interval": t,
            "secure": record.get("secure"),
            "error": record.get("error"),
            "open": (record.get("after") or {}).get("open"),
            "vmin_pu": (record.get("after") or {}).get("vmin_pu"),
            "switch_ops": len(plan.get("operations", [])),
            "adjustments": len(record.get("adjustments") or []),
            # what the network check found and whom the DSO asked (U3: the line said only "2 adjustment(s)")
            "vmin_before": (record.get("before") or {}).get("vmin_pu"),
            "adjusted": [_adjusted(a) for a in record.get("adjustments") or []],
            "rebargained": sum(1 for r in record.get("rebargain") or [] if r.get("reopened") is not None),
            # iterations the MGMCs answered by re-planning, the interval not reopened, and what they kept (U3: a
            # forward-traded day read 'rebargained x1' everywhere though nothing could be re-bargained)
            **_replanned(record.get("rebargain") or []),
            "height": record.get("height"),
            "missing": record.get("missing", []),
            # why the node never worked on it (`interval_missed`: it ended while the node was down), else None;
            # `secure` None beside it means not checked, which the line must not read as insecure (C5)
            "missed": record.get("missed"),
            # its market day and hours in it where the loop's interval length is known (U7-10: no day was shown)
            **({} if self.interval_hours is None else day_fields(t, self.interval_hours)),
        }
        # what it ended with is what the view draws (`tick`); a failed one has none: the last stays
        if isinstance(record.get("injections_kw"), dict):
            self.grid.set_injections({mg: float(kw) for mg, kw in record["injections_kw"].items()})
            self.drawn = t
        summary["drawn"] = self.drawn
        self.intervals = [*self.intervals[-19:], summary]
        self.ops.interval = t + 1  # operator plans belong to the interval the loop works on next
        if "error" in record:
            self.grid.alarm(f"{named(t, None, self.interval_hours)}: the DSO failed ({record['error']})")
        if record.get("missed"):
            self._show_missed(t, str(record["missed"]))
        for text in [
            *(record.get("after") or {}).get("violations", []),
            record.get("unmet"),
            plan.get("alarm"),
            plan.get("error"),
        ]:
            if text:
                self.grid.alarm(f"{named(t, None, self.interval_hours)}: {text}")
        self.grid.set_interval(summary)

    def _alarm_missed(self, t: int, why: str) -> None:
        """One alarm for a run of missed intervals, grown as the node records each (an outage of a day is 96
        intervals: one alarm each would push every other alarm out of the feeder view's last 20)."""
        run = self._missed_run
        if run is not None and run[0] <= t <= run[1] and run[2] == why:
            return  # read back at start and heard too (`read_back_missed`): its run's alarm says it already
        first = run[0] if run is not None and run[1] == t - 1 and run[2] == why else t
        text = (
            f"{named(first, t, self.interval_hours)}: missed, {why}: not checked, no contract, no switching"
        )
        self.grid.alarm(text, replacing=run[3] if run is not None and first != t else None)
        self._missed_run = (first, t, why, text)

    def tick(self, now: float | None = None) -> None:
        """MG injections for the feeder view. With the closed loop: those the latest interval the loop finished
        ended with (its outcome, `on_interval`; none before the first), never an interval's still being checked:
        the node keeps each iteration's there, and their power flow painted buses red and raised voltage alarms
        mid-interval for an interval that ended secure (U3-2). Without it: the latest interval the MGMCs
        reported to the DSO, or in the lab without MGMC reports a drifting noon picture so the live view
        moves."""
        if self.live:  # set by `on_interval`
            return
        if self.dso.injections:
            latest = self.dso.injections[max(self.dso.injections)]
            self.grid.set_injections({mg: p_mw * 1000.0 for mg, (p_mw, _q) in latest.items()})
            return
        if not self.settings.lab_drift:
            return
        step = int((time.monotonic() if now is None else now) // 5.0)
        if step != self._step:
            self._step = step
            self.grid.set_injections(lab_injections(self.grid.feeder, step * 0.7))

    def start_market(self) -> threading.Thread | None:
        if self.live:
            if self.live_market is None:
                self.market = {"status": "failed", "error": "the DSO node does not follow the MGMC chain"}
            return None
        if not self.settings.lab_market:
            self.market = {
                "status": "failed",
                "error": "no market source configured (console.lab_market is off)",
            }
            return None

        def run() -> None:
            try:
                from peergrid_dso.console.market import run_lab_market

                report, chain = run_lab_market(
                    sorted(self.grid.feeder.mg_buses), self.settings.market_intervals
                )
                self.explorers["mgmc"] = ChainExplorer("mgmc", chain)
                self.market = report | {"status": "ready"}
            except Exception as exc:  # shown to the operator; the server keeps running
                log.exception("market simulation failed")
                self.market = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}

        thread = threading.Thread(target=run, name="console-market", daemon=True)
        thread.start()
        return thread


def build_console(settings: ConsoleSettings, dso: Any, loop: Any = None) -> ConsoleState:
    """`dso`: the DSO engineer's `DsoServices` (feeder, switch state, DSO chain, switching, enrolment);
    `loop`: the embedded closed-loop node (`peergrid_dso.live.EmbeddedLoop`), or None in the lab. A build that
    fails after the console database was opened (a damaged token or enrolment file, a bad user file) closes it
    before it raises: the server's start ends there, and nothing else holds it."""
    db = ConsoleDb.open(path) if (path := console_db_path(settings.users_file)) is not None else None
    try:
        return _console(settings, dso, loop, db)
    except BaseException:
        if db is not None:
            db.close()
        raise


def _console(settings: ConsoleSettings, dso: Any, loop: Any, db: ConsoleDb | None) -> ConsoleState:
    live = loop is not None
    grid = GridView(dso.feeder, DsoSwitchgear(dso), {} if live else lab_injections(dso.feeder))
    for alarm in getattr(dso, "alarms", []):  # the node's start: relays it could not adopt
        grid.alarm(alarm)
    if (tokens := token_store_path(settings.users_file)) is not None:  # issued tokens outlive a restart
        dso.enrolment.store = TokenStore.open(tokens)
    if (queue := enrolment_file_path(settings.users_file)) is not None:  # and so does the enrolment queue
        dso.enrolment.keep_in(EnrolmentFile(queue))
        if (chain_word := getattr(loop, "chain_word", None)) is not None:  # what the file missed (a crash)
            queued = [(e.mgmc, e.anonym) for e in list(dso.enrolment.enrolments.values())]
            for e in dso.enrolment.follow_chain(*chain_word(queued)):
                log.warning(
                    "enrolment of %s (MGMC %s): %s on the DSO chain", e.label, e.mgmc.hex()[:12], e.status
                )
        # auto mode: what is pending still never got its approval, and its MGMC, told pending, never asks again
        for e in dso.enrolment.forget_unapproved():
            log.warning(
                "enrolment of %s (MGMC %s): its automatic approval never landed; dropped, its MGMC asks again",
                e.label, e.mgmc.hex()[:12],
            )  # fmt: skip
        # The loop's keys beside this queue are not judged here: `serve` judged them before the web server started
        # (`enrolment_file.check_at_start`, with the chains' word read from their stores), stopping on a fault
        # in one line and saying each warning once; this start would only say them again (D9).
    ops = Operations(grid, dso, db=db, plans_kept=settings.plans_kept)
    explorers = {"dso": ChainExplorer("dso", dso.chain, None if live else ops.lock)}
    live_market = None
    if loop is not None:
        ops.lock = loop.lock  # one writer to the relays: operators wait for the loop's switching and back
        mgmc = loop.replica("mgmc")
        if mgmc is not None:
            from peergrid_dso.console.chains import StoreChain
            from peergrid_dso.console.live_market import LiveMarket, records_overdue

            explorers["mgmc"] = ChainExplorer("mgmc", StoreChain(mgmc.store))
            s = loop.node_settings
            anonyms = {entry.anonym: mg for mg, entry in s.mgs.items()}
            live_market = LiveMarket(
                mgmc, loop.call, anonyms, s.interval_minutes / 60, s.mgmc_records,
                overdue=lambda t: records_overdue(mgmc, t),
            )  # fmt: skip
    state = ConsoleState(
        settings=settings,
        users=UserStore(settings.users_file),
        sessions=SessionStore(settings.session_idle_s, settings.session_max_s, db=db),
        throttle=LoginThrottle(settings.login_max_failures),
        security=SecurityLog(db=db),
        grid=grid,
        ops=ops,
        explorers=explorers,
        dso=dso,
        live_market=live_market,
        live=live,
    )
    grid.standing_alarms, grid.relay_reports = state.standing_alarms, state.relay_reports
    if loop is not None:
        minutes = getattr(
            getattr(loop, "node_settings", None), "interval_minutes", None
        )  # a stand-in's: none
        state.interval_hours = None if minutes is None else minutes / 60
        state.node_records = NodeRecords(dso.chain)
        state.follow_node_records(lambda: bool(loop.running))
        state.relay_watch = lambda: watch_of(loop)  # late bound: read where the node keeps it now
        with state._hearing:  # the misses before this start first; a record the node makes meanwhile waits
            loop.listeners.append(state.on_interval)
            # (a test's stand-in node may have no settings)
            state.read_back_missed(getattr(getattr(loop, "node_settings", None), "record_file", None))
    return state


def _adjusted(contract: dict[str, Any]) -> dict[str, Any]:
    """One adjustment contract of an interval's record as the feeder view names it: the MG, the iteration, its
    injection limits in kW (None: no bound that way) and the contract's txid on the DSO chain (None in a record
    written before the node named it)."""
    kw = {
        k: None if contract.get(f"{k}_injection_w") is None else contract[f"{k}_injection_w"] / 1000
        for k in ("min", "max")
    }
    return {
        "mg": contract.get("mg"),
        "iteration": contract.get("iteration"),
        "min_kw": kw["min"],
        "max_kw": kw["max"],
        "txid": contract.get("txid"),
    }


def _replanned(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """`replanned`: how many of an interval's iterations the MGMCs answered by re-planning within their limits
    (the interval not reopened: `interval_node.answer`), and `replanned_kept`: what they kept, e.g. 'forward
    trades kept' (a record from before `answer`: 'trades kept')."""
    kept = [str(r.get("answer") or "re-planned, trades kept") for r in rounds if r.get("reopened") is None]
    said = [k.removeprefix("re-planned, ") for k in kept]
    return {"replanned": len(kept), "replanned_kept": ", ".join(dict.fromkeys(said))}
