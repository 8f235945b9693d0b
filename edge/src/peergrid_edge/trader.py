"""The MGMC's trading agent: the design's trading interval, one after another, on the accelerated clock.

Promises, per interval t (`agent_interval.py`; starting at `t0 + (t - first_interval) * interval_s` or when the
previous one ended; the day around its intervals, where a restarted agent joins and what follows the last, is
`agent_day.py`'s; t is the chain's interval number throughout, which every model call reads at its profile index
t mod the scenario's n intervals, planning to t's day's end: `interval_plan.profile_index`):
  0.   with `market.dayahead`, before the first interval: the day-ahead session and, once it completed, its
       forward trades (`day_stages.py`). An interval the clear closed is traded by its forward trades:
       planned with them fixed (every later forward trade is fixed in the day's plan too), not bargained
       (steps 4 and the rounds skipped), its injection submitted and its purchases settled as below; the
       record's `forward` names the session. Where the MG's state cannot meet its forward trades (review8
       F2) it plans with fewer of them held, and an interval whose own trade it cannot deliver in full is
       dispatched with what it can (the rest its imbalance, the record's `shortfall_kwh`; the trades are
       still settled as agreed): never failed for it (`interval_plan.py`);
  1-3. prepares its offer (`interval_offer.py`): schedules this MG with the controller (state from its own
       battery readings when it (re)starts, then from the plan it dispatched; no PV, battery or genset that
       is quarantined or stale, named in the record's `uncounted`), derives its price-quantity curve and its
       role at the mid price, and a seller's opening price (the previous interval's agreed price, within this
       interval's [feed-in, retail]; past retail only for a buyer's clean premium, `seller_ceiling`); with
       `market.rationality` strict or trades the curve (and, strict, the dispatch of the agreed trade) is held
       by the owner's individual-rationality guard (`guard.py`: the day ends within its conventional cost plus
       `risk_allowance` plus the clean premiums its owner paid, the record's `clean_premium_paid` where it
       paid one; the budget kept across restarts);
  4.   bargains on the MGMC chain under its anonym (`chain_bargaining.py`): every offer, bid and move is a signed transaction, and
       each bargaining phase waits for the peers' moves in a FINAL block (sellers move, then buyers), so every
       MGMC decides from the same chain state; rounds end when a round repeats the previous one (no one
       moved) or at `max_rounds`; then the lowest-keyed seller submits `trade` and the contract computes the
       agreed trades (anyone closes after a timeout). While this MG owes on the chain it asks for nothing
       (`debts.py`; the record's `owed`): it buys nothing, and steps 5-8 plan and dispatch it so;
  5.   submits its equivalent injection (one number) to the DSO chain, signed by its node key, and at once
       dispatches its DERs to the agreed plan (read-back confirmed by the actuator), without waiting for the
       DSO: the slot is metered from its start, and until a dispatch the DERs would run the previous
       interval's setpoints (the first interval: the safe state; L4 measured 44-54 % of a battery's sale
       delivered). Until the verdict the MG runs that agreed plan. Safe: the DSO checks the trades, which are
       agreed and final, and this plan's injection is the very one it checks; the previous interval's
       setpoints were never checked for this interval at all. Where the feeder cannot carry it the DSO's
       adjustment arrives in the same seconds as before and is dispatched at once after the verdict;
  6.   waits for the DSO's verdict (MQTT, `peergrid/<feeder>/dso/verdict`, filed by `verdict_inbox.py`; one
       that does not parse is a log line), answering each iteration: its adjustment contract of that
       iteration (DSO chain, sealed to its key) is opened, the interval the DSO reopened is re-bargained, and
       a revised injection meets the limit (`dso_verdicts.py`, `dso_answers.py`); after the final verdict the
       interval is closed (a backup closer) and its latest closing read again, so every MG ends on the same
       trades;
  8.   dispatches its DERs again where the DSO's answer changed the plan (an adjustment, a re-bargain, a
       re-plan on a changed closing; never an adjusted plan left undispatched; an unchanged plan is not
       written twice; PLAN_CONFIRMED: the dispatch that carried the final plan left it held in full, every
       controllable device fresh, no alarm, each setpoint confirmed or already reported) and settles its trades
       (`agent_settlement.py`, `settlement.py`: a refused settle is retried with back-off while the agent is
       idle, until it settles, is refused for good, or the day ends; a restarted agent picks up what its last
       run left unsettled from the chain; a failure of the Settler is logged and never ends this loop).
       Without genesis `settle_by_both` it pays its purchases at once with the agreed quantity, as before;
       with it, it states each trade it bought or sold once the interval ended and its PCC meter was
       read after the end (`pcc_readings.py`: its meter's counter over the interval, its share pro rata over
       its trades of the interval on that side, the DSO's own rule; an MG without a PCC meter states the agreed
       quantity only when dispatch read-back confirmed the interval's plan in full), waits for a silent
       counterparty until the trade's deadline (also after the day's last interval) and then states again,
       and on a dispute posts its sealed PCC readings to the DSO (where its market settings name the DSO's
       API as `dso_api_url`; without it a dispute is only logged), also on a dispute between other MGs
       whose settling reads them: one where it bought from the seller or sold to the buyer
       (`agent_settlement.watch_counterparties`; the DSO shares by the counterparties' meters).
It keeps a conventional counterfactual (same MG, no P2P) to report what the DSO-only market would have cost.
A dead peer costs a phase timeout, never a stall. Never writes to another MG's devices; never reveals its
curve or DER data (only positions, the injection, and commitments).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from peergrid_controller.adjustment import Adjustment
from peergrid_controller.builder import MgState
from peergrid_controller.model import Microgrid
from peergrid_controller.moves import BargainingConfig
from peergrid_controller.scenario import ScenarioError, load_scenario
from peergrid_controller.schedule import MgSchedule, Plan
from peergrid_edge import (
    agent_day,
    agent_dispatch,
    agent_interval,
    agent_settlement,
    day_stages,
    dso_verdicts,
    guard,
    interval_plan,
    own_nonce,
)
from peergrid_edge.config import MarketSettings, slot_start
from peergrid_edge.day_stages import dayahead_deadline  # noqa: F401 - T1's test_edge_forward_skew imports it here
from peergrid_edge.dso_answers import DsoAnswers, Market
from peergrid_edge.exchange_io import SessionOutcome
from peergrid_edge.forward_chain import ForwardOutcome
from peergrid_edge.pcc_readings import MgMetering
from peergrid_edge.replicas import Submission
from peergrid_edge.resume import ending_of, record_day, recorded_endings, stamped
from peergrid_edge.resume_spend import RecordedSpend
from peergrid_edge.verdict_inbox import file_verdict, parse_verdict  # noqa: F401 - test_json_depth imports it
from peergrid_ledger import keys
from peergrid_ledger.records import append_record

if TYPE_CHECKING:
    from peergrid_edge.agent_day import Calendar
    from peergrid_edge.agent_settlement import SealedStatements
    from peergrid_edge.daemon import EdgeDaemon

log = logging.getLogger("peergrid.edge.trader")


class MarketAgent:
    dispatched: Any = None  # the setpoints of the agent's last dispatch (`_dispatch`); None: none yet
    # the last dispatch left its plan confirmed in full (`_dispatch`); None: a dispatch that does not say
    held: bool | None = None
    # (interval, owed): the last interval this MG bought nothing in because it owed (`debts.note`); None: none
    debt_noted: tuple[int, int] | None = None
    # what its Settler states through (`agent_settlement.sealed_for`), pruned at the day's end; None: no such
    sealed: SealedStatements | None = None
    # the individual-rationality guard's day budget (`guard.py`), started at the first interval run; None: not yet
    budget: guard.DayBudget | None = None
    resumed: RecordedSpend | None = None  # what its records said of the day's spend at its start (`guard`)
    uplift_claim_refused = False  # its claim refused for good this run: not retried (`day_stages`)
    uplift_claim_said: str | None = None  # the claim outcome (reason) this run recorded last (`day_stages`)
    # what its last retry of the claim took (s; None: none timed): the idle it needs (`agent_day.claim_in_idle`)
    claim_needs_s: float | None = None
    uplift_retry: asyncio.Task[Any] | None = None  # unsettled earlier uplifts (`day_stages`)
    # the interval its loop is on, from its idle wait to its record (None: before the first, after the day): the
    # schedule holder bridges a plan past its slots while this is its interval or the next (`agent_dispatch`)
    working_on: int | None = None
    # its devices not counted on in the interval last planned (name -> quarantined or stale: `interval_offer`)
    uncounted: dict[str, str] = {}  # replaced whole (`interval_offer.counted_for`), never changed in place
    # (a later day's first interval, when the days before end for its Settler): set by `agent_day.day_before_ends`,
    # `agent_day.work_idle` gives up then what is still refused of them; None: no day before to end
    day_before_end: tuple[int, float] | None = None
    # the MG as the interval in hand counts on it (`interval_offer`), what it is planned and dispatched on; None:
    # the scenario's (`mg`)
    counted: Microgrid | None = None
    # its days (`agent_day.run_day` sets it): each record line's stamp is its interval's day's; None: the day's
    calendar: Calendar | None = None
    # the interval its run joined after that interval's slot had started (`interval_offer.note_join`), offered in
    # only while the time left holds its rounds (`interval_offer.late_rules`); None: joined at a slot's start or not yet
    joined_late: int | None = None
    # the settlement endings its record file holds (`resume.ending_of`), read at the first one it writes: a
    # restart writes none again (U7's finding 11); None: not read yet
    endings: set[tuple[str, str, bool, str]] | None = None

    def __init__(self, daemon: EdgeDaemon, settings: MarketSettings) -> None:
        self.d, self.s = daemon, settings
        self.scenario = load_scenario(settings.scenario)
        mgs, mg = {m.name: m for m in self.scenario.microgrids}, daemon.settings.mg
        if mg not in mgs:  # one line naming both, not a bare StopIteration (review25 F7)
            raise ScenarioError(f"{settings.scenario}: no mg {mg!r} (it has {', '.join(mgs)})")
        self.mg = mgs[mg]
        self.dt = self.scenario.interval_hours
        self.anonym = keys.read_keyfile(settings.anonym_key_file)
        self.name = self.anonym.public.hex()
        self.cfg = (
            BargainingConfig()
            if settings.max_rounds is None
            else BargainingConfig(max_rounds=settings.max_rounds)
        )
        self.state: MgState | None = None
        self.conv_state: MgState | None = None
        self.interval: int | None = None
        self.phase = "starting"
        self.done = 0
        self.verdicts: dict[int, dict[str, Any]] = {}
        self._verdict_event = asyncio.Event()
        self.last: dict[str, Any] = {}
        self.dayahead: SessionOutcome | None = None  # the day-ahead stage's outcome (`run_dayahead`)
        self.forward: ForwardOutcome | None = None  # its forward trades' accept and clear (`run_forward`)
        self.forward_traded: list[int] = []  # intervals traded by their forward trades, not bargained
        self.sealed = agent_settlement.sealed_for(self, daemon)
        self.settler = agent_settlement.settler_for(self, settings, self.sealed)
        self.metering: MgMetering | None = None  # `_metering()`
        # the dispatch verdicts of the intervals before a restart, read back from their records (`run`)
        self.recalled: dict[int, bool] = {}

    # --- plumbing --------------------------------------------------------------------------------------

    @property
    def ledger(self) -> Any:
        assert self.d.ledger is not None
        return self.d.ledger

    def status(self) -> dict[str, Any]:
        doc = {"interval": self.interval, "phase": self.phase, "done": self.done, "last": self.last}
        if self.dayahead is not None:
            o = self.dayahead
            doc["dayahead"] = {"completed": o.completed, "reason": o.reason, "iterations": o.iterations,
                               "stop": o.stop}  # fmt: skip
        if self.forward is not None:
            f = self.forward
            doc["forward"] = {"cleared": f.cleared, "reason": f.reason, "decision": f.decision,
                              "intervals": list(f.intervals), "traded": list(self.forward_traded)}  # fmt: skip
        if self.budget is not None:
            doc["rationality"] = self.budget.status()
        return doc

    def _on_verdict(self, _topic: str, payload: bytes) -> None:
        """A DSO verdict message (MQTT callback), filed newest per interval (`verdict_inbox.file_verdict`)."""
        file_verdict(self, payload)

    async def _submit(self, role: str, key: keys.Keypair, kind: str, body: dict[str, Any]) -> bool:
        return (await self._submit_outcome(role, key, kind, body)).landed

    async def _submit_outcome(
        self, role: str, key: keys.Keypair, kind: str, body: dict[str, Any]
    ) -> Submission:
        """Sign with the sender's next nonce and wait for a final block: landed, or the chain's reason why not.
        Never on a nonce this MGMC's own pending transaction holds (a make-whole claim not final in time, the
        background settle of an earlier uplift): it waits up to a phase for that one to land or be evicted; lost
        all the same to another transaction of this sender (NONCE_TAKEN: it never lands), it is signed again once
        (`own_nonce.submit_own`; review19 F5: an interval's first move was lost so and the MG sat it out)."""
        self._stopped()  # a stopped agent reads nothing of its ledger or settings (test_rebargain_live)
        timeout_s = self.s.phase_timeout_s
        return await own_nonce.submit_own(
            self.ledger, role, key, kind, body, timeout_s + 2.0, timeout_s, self._stopped
        )

    def _stopped(self) -> None:
        """Raise CancelledError once the daemon is stopping. Its `stop()` cancels this task, but Python 3.11's
        asyncio.wait_for loses a cancellation that arrives in the loop turn the awaited event fires (it returns
        the result instead), and the agent waits on a chain event every block: under load a stopped MGMC
        traded on, answered the DSO and kept its daemon (which awaits this task) alive. Checked before every
        transaction, DSO wait and dispatch, so a lost cancellation ends the task at the next of them."""
        if self.d.stopping.is_set():
            raise asyncio.CancelledError("the daemon is stopping")

    @property
    def day(self) -> str:
        """The day its records are stamped with and read back by (`resume.record_day`: t0, first interval)."""
        return record_day(self.s.t0, self.s.first_interval)

    def _start_of(self, t: int) -> float:
        return slot_start(self.s, t)

    def _last_interval(self) -> int:
        """The chain interval its day ends with: the last of its first interval's day (`interval_plan.day_end`),
        or where `intervals` ends first."""
        end = interval_plan.day_end(self.s.first_interval, self.scenario.intervals)
        if self.s.intervals is not None:
            end = min(end, self.s.first_interval + self.s.intervals)
        return end - 1

    async def _previous_cleared(self, t: int) -> None:
        """Start interval t only once the DSO's final verdict for t - 1 is out (`dso_verdicts`)."""
        await dso_verdicts.previous_cleared(self, t)

    # --- the loop --------------------------------------------------------------------------------------

    async def run(self) -> None:
        """The agent's day: its intervals one after another from where it joins (`agent_day.run_day`)."""
        await agent_day.run_day(self)

    async def run_dayahead(self) -> SessionOutcome:
        """The day-ahead exchange session before the first interval (`day_stages.run_dayahead`)."""
        return await day_stages.run_dayahead(self)

    async def run_forward(self) -> ForwardOutcome:
        """The completed session's forward trades (`day_stages.run_forward`)."""
        return await day_stages.run_forward(self)

    async def run_interval(self, t: int) -> None:
        """Interval t, steps 1-8 (`agent_interval.run_interval`), its record written."""
        await agent_interval.run_interval(self, t)

    def _owed_in(self, t: int) -> int:
        """What this MG owed when its debt kept it from buying in interval t (micro-units; 0: it did not)."""
        return self.debt_noted[1] if self.debt_noted is not None and self.debt_noted[0] == t else 0

    def _schedule(self, t: int, fixed: list[float] | None) -> tuple[MgSchedule, Plan]:
        """The MG's day (as chain interval t counts on it: `counted`) from t to its day's end and its state, with
        the forward trades of t on fixed (`interval_plan.plan_day` at t's profile index)."""
        prices = guard.forecast_for(self, t)
        n = self.scenario.intervals
        return interval_plan.plan_day(self.counted or self.mg, self.dt, n, interval_plan.profile_index(t, n),
                                      self.state, fixed, MgSchedule, prices)  # fmt: skip

    def _start_budget(self, t: int, resumed: RecordedSpend | None) -> guard.DayBudget:
        """The guard's day budget from interval t (`guard.start_budget`), kept as `budget`."""
        self.budget = guard.start_budget(self, t, resumed)
        return self.budget

    # --- the DSO, dispatch, records --------------------------------------------------------------------

    async def _await_dso(
        self, t: int, sched: MgSchedule, market: Market, answers: DsoAnswers
    ) -> dict[str, Any] | None:
        """The DSO's final verdict of interval t, its iterations answered (`dso_verdicts.await_dso`)."""
        return await dso_verdicts.await_dso(self, t, sched, market, answers)

    def meet_limit(
        self, t: int, sched: MgSchedule, p2p_net_kw: float, limit: dict[str, Any] | None
    ) -> Adjustment:
        """Re-plan interval t within the DSO's limits (`interval_plan.meet_limit`)."""
        return interval_plan.meet_limit(t, sched, p2p_net_kw, limit)

    async def _open_contract(self, t: int, iteration: int) -> tuple[dict[str, Any], bytes] | None:
        """This MGMC's adjustment contract of interval t and `iteration` (`dso_verdicts.open_contract`)."""
        return await dso_verdicts.open_contract(self, t, iteration)

    async def _dispatch(self, t: int, plan: Any) -> int:
        """Dispatch interval t's plan to the DERs (`agent_dispatch`): the writes confirmed; keeps the setpoints
        written (`dispatched`) and whether the plan was held in full (`held`). The PV available is the model's
        it was planned on (`counted`; read with getattr: an agent stand-in may dispatch with none)."""
        planned_on = getattr(self, "counted", None) or self.mg
        schedule, views = agent_dispatch.plan_schedule(self.d, planned_on, self.s.interval_s, t, plan)
        # followed past its slots while the agent works on t or t + 1 (`agent_dispatch.set_plan`)
        agent_dispatch.set_plan(self.d, schedule, lambda: self.working_on)
        self.dispatched = schedule.setpoints
        confirmed, self.held = await agent_dispatch.dispatch_held(self.d, views)
        return confirmed

    # --- settlement on both parties' statements --------------------------------------------------------

    def _metering(self) -> MgMetering:
        """This MG's metering for its statements and disputes, made on first use (`agent_settlement`)."""
        if self.metering is None:
            self.metering = agent_settlement.metering_for(self)
        return self.metering

    def background(self) -> list[asyncio.Task[Any]]:
        """The tasks this agent started beside its own (dispute and counterparty followers, which read the
        daemon's store): the daemon's shutdown ends them before the store closes."""
        retry = [] if self.uplift_retry is None else [self.uplift_retry]
        return retry + ([] if self.metering is None else list(self.metering.following))

    def _record(self, doc: dict[str, Any]) -> None:
        """One line of the record file, stamped with the agent's day (`resume.stamped`: the file serves every
        day, and a restart reads back only its own day's lines, review18 K-1)."""
        if self.s.record_file is None:
            return
        line = stamped(doc, self.stamp_for(doc.get("interval")))
        ending = ending_of(line)
        if ending is not None:
            if self.endings is None:
                self.endings = recorded_endings(self.s.record_file)
            if ending in self.endings:  # its last run recorded how this trade ended (a day's end, a dispute)
                return
            self.endings.add(ending)
        append_record(self.s.record_file, line)

    def stamp_for(self, interval: Any) -> str:
        """The day stamp of a record of `interval`: the agent's day, or the day of an earlier interval's (a
        settlement of the day before given up or settled in this day's idles: U7's finding 11, interval 5's
        line stamped day 1's and read back as day 1's)."""
        earlier = isinstance(interval, int) and interval < self.s.first_interval
        return self.calendar.stamp_of(interval) if earlier and self.calendar is not None else self.day
