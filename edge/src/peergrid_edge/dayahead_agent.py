"""One MGMC's side of the day-ahead exchange session, run from its own replica of the MGMC chain.

Promises: `DayAheadAgent.run()` plays the session of the controller's `dayahead.allocate` as one member
among independent MGMCs: the coordinator (the lowest member key, as the intraday closer is chosen) opens it
(members: the MGMCs' trading keys); every member posts its first response at the opening prices, then per
iteration waits for the step in a FINAL block, recomputes the step from the positions the chain holds as
the step priced them (`exchange.stepped`: a faster member may already have posted the next iteration;
`dayexchange.Book`: the mean, the residuals, the prices, ρ's balancing, the kWh stop), checks the chain's
prices and ρ against its own (a difference stops it with an error naming both), answers from its own
DayModel (`dayexchange.answer`, its anchor its own unrounded answer) and posts. The coordinator steps once
its replica shows every member posted, with ρ from the public residual balancing, and closes at the stop.
What each MGMC posts and reads is public; its DER data, bounds, tariff and unrounded answers never leave it.
The result is typed (`SessionOutcome`): completed, or failed with why (the MGMC then trades intraday as
before). Each MGMC starts the stage when its own trader comes up: with a deadline, the opening and the
first responses are waited for until its close, so MGMCs that start apart still meet. Failures: a member
that has not posted within `timeout_s` (the coordinator closes the session, the
half-posted iteration abandoned by the contract, and every agent reports it); any refusal by the chain
(named, never retried); a session that does not look like the one configured; a price or ρ that is not
this MGMC's own computation. A coordinator that fails closes the session where it stands, if this process
opened it. Restarts (review8 F3): an MGMC that starts again with the same session finds it on the chain and
resumes, rejoins or takes the outcome it shows (`dayahead_restart`).
Cover prices first (review12 F6): on a `settle_by_both` chain the coordinator opens only once the DSO's
cover prices (`market.tariff`) of every member are on the chain for the intervals it trades (`priced`), or
when its bounded wait ends (`tariff_wait_s`, and with a deadline at most `TARIFF_SHARE` of the time left to
the close): then one warning line names what is unpriced, kept in `unpriced`, and the day goes on (a trade
in an interval still unpriced when the clear closes it settles without imbalance compensation).
A member that owes (review13 N5's debts: `debts.owed_on`, more than genesis `owed_limit`) may post no
purchase (the chain refuses it, and a refused post fails its stage after the coordinator waited for it):
while its replica shows it so, its answers are solved with its buying side closed (`_bounds`) and its posts
carry no purchase (`_post`: a debt that landed after the answer), so it sells or stays out; paid off, it
buys again from its next answer. One log line each way. The same two places keep it within the connection
capacity the DSO posted for its trading key (`connection.py`; the chain refuses a post above it): its range
within ±capacity, and a post above one posted after the range was read cut to it (one warning line); a post
the chain refused for a capacity that landed ahead of it is cut to it and posted once more (`dayahead_capacity`).
The value stop, the genset phases and the owners' floors and caps are the rounds' (`dayahead_rounds`).
An MGMC that states a trading window (`window`: the chain intervals it trades, the forward accept's) answers the
session as a day that trades only there: its range is [0, 0] outside (`SessionRules`), so its day is solved
with nothing traded outside, as `allocate` solves an MG of `DayAheadConfig.windows`, to the Wh.
A clean session (opened with `clean_prices`: `dayahead_clean`): the coordinator opens one exactly where
`allocate` on the chain venue would (`DayAheadConfig.clean_book` and a clean-only member on the chain); every
member follows the session as opened: its book over both books, its clean model, `clean_positions` and its
clean-seller declaration, each clean seller's switch decided after the relaxed phase and again after each
of the `clean_decisions` − 1 re-decision runs (`dayahead_rounds.play_phases`).
The exchange fee (issue #7's fee-funded make-whole): the session's record on the chain carries the fee it was
opened with (`market_fee.session_fee`: `exchange.open` copies the one in force; absent = 0), which every member
reads when it joins (`SessionRules.join`: a restarted MGMC too, so it resumes with the same fee) and puts on both sides
of its answers, its genset commitment and its clean switch (`SessionRules.fees`), and into its value-stop
verdict as `dayrounds.Exchange` does (`exchange_fee.unwinding_worth` from its own marginal values: `margins`,
kept in its checkpoint). Fee 0: every answer and verdict as before, to the Wh and the nano.
Scope, refused up front with the reason: its floor or cap on the chain other than its own config (the
let-back queue is the chain's); a rejoin without a usable checkpoint past iteration 1 of a day where some
floor or cap binds (its judgement state is in its checkpoint alone); a genset MG without `phases`, or `recommits` > 1 (whether another
MG's commitment changed is private); a clean session with `recommits` other than 1 (the same: whether
another seller's switch changed is private; its `clean_decisions` re-decide by count, so they are followed). Maximum quantity and clean-only are each MG's own bounds. Never reads
another MG's private data; never blocks the loop longer than one MG solve.
The parts: what it reads of its session on its replica (`dayahead_view`), how it writes to the chain
(`dayahead_submit`), the rounds and their stop rules (`dayahead_rounds`), a restart (`dayahead_restart`,
`dayahead_rejoin`, `dayahead_state`), its own floors and caps (`dayahead_rules`), what it refuses up front
(`dayahead_scope`), the coordinator's wait for cover prices (`dayahead_tariffs`). This module holds the
agent's state and its seams (`_post`, `_bounds`, `_judged`, `_stop_at`, `_judge`, `_finish`, `_first_model`: every
part goes through them, so a subclass overriding one is obeyed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from peergrid_controller.dayahead import model_for
from peergrid_controller.dayexchange import Book, DayAheadConfig, answer
from peergrid_controller.daymodel import DayModel
from peergrid_controller.model import Microgrid
from peergrid_edge import debts
from peergrid_edge.connection import capacity_row, connected_bounds
from peergrid_edge.dayahead_capacity import cut_after_refusal, cut_as_built
from peergrid_edge.dayahead_clean import declares_clean, opens_clean, session_prices
from peergrid_edge.dayahead_clean import refusal as clean_refusal
from peergrid_edge.dayahead_clean import side as clean_side
from peergrid_edge.dayahead_restart import found_closed, rejoin, resume
from peergrid_edge.dayahead_rounds import judge, play_phases, stop_at
from peergrid_edge.dayahead_rules import SessionRules
from peergrid_edge.dayahead_scope import refusal
from peergrid_edge.dayahead_state import Checkpoint, save
from peergrid_edge.dayahead_submit import Submitter
from peergrid_edge.dayahead_tariffs import TARIFF_SHARE as TARIFF_SHARE
from peergrid_edge.dayahead_tariffs import await_tariffs, tariff_wait
from peergrid_edge.dayahead_view import SessionView
from peergrid_edge.exchange_io import ROLE, Deadline, NotFinal, Replica, SessionFailed, SessionOutcome
from peergrid_ledger import keys
from peergrid_ledger.contracts import exchange
from peergrid_ledger.contracts.exchange import MAX_ITERATIONS
from peergrid_ledger.contracts.market_fee import session_fee

log = logging.getLogger("peergrid.edge.dayahead")


class DayAheadAgent:
    def __init__(
        self,
        ledger: Replica,
        key: keys.Keypair,
        mg: Microgrid,
        interval_hours: float,
        members: Sequence[bytes],
        session: str,
        first_interval: int = 0,
        opening_prices: Sequence[float] | None = None,
        config: DayAheadConfig | None = None,
        timeout_s: float = 10.0,
        before_submit: Callable[[], None] = lambda: None,
        phases: bool = False,
        deadline: Deadline | None = None,
        clock: Callable[[], float] = time.time,
        checkpoint: Path | None = None,
        tariff_wait_s: float = 0.0,
        priced: Sequence[int] | None = None,
        window: range | None = None,
    ) -> None:
        """`members`: every MGMC's trading key (public); `opening_prices` (currency per kWh, one per interval)
        are what the coordinator opens at (a member reads them off the chain); `timeout_s`: how long a
        member's post (the coordinator), the opening and each step (a member: twice as long) are waited for;
        `before_submit` is called before every transaction (the daemon's stop check: it may raise); `phases`:
        the session runs `allocate`'s genset phases because some member has a genset (not on the chain: every
        member must be configured alike, or the stage fails at the phase change); `deadline`: when the
        coordinator closes the session however far it got (the stage fails, saying so) and the clear deadline
        the open puts on the chain (every member must be configured alike: it is checked as the rest of the
        session); `clock`: wall time in seconds, on the scale of the chain's block time (ms ÷ 1000);
        `checkpoint`: a file in the MGMC's state directory where it keeps its side of the session before each
        post (`dayahead_state`), so that after a restart it resumes exactly (None: it rejoins from the chain
        alone, anchored at its rounded post); `tariff_wait_s`: on a `settle_by_both` chain, how long the
        coordinator waits for the DSO's cover prices of every member before it opens (0: it does not; every
        member must be configured alike: a member waits that much longer for the opening), for the intervals
        `priced` (those the MGMC trades, the forward clear's; None: the session's); `window`: the chain
        intervals this MGMC trades, the window its first forward accept states (None: the session's): it
        answers the session as a day that trades P2P only there, nothing outside (as `allocate` answers for an
        MG of `DayAheadConfig.windows`)."""
        self.key, self.mg, self.dt = key, mg, interval_hours
        self.members = list(members)
        self.session, self.first_interval = session, first_interval
        self.opening = None if opening_prices is None else list(opening_prices)
        self.cfg = config or DayAheadConfig()
        self.timeout_s = timeout_s
        self.before_submit = before_submit
        self.deadline, self.clock = deadline, clock
        # how it reads its session on its replica, and how it writes to the chain (one replica: `ledger`)
        self.view = SessionView(ledger, key.public, session, self.members, mg.intervals, first_interval,
                                self.cfg, self.opening, deadline, clock, timeout_s)  # fmt: skip
        self.submitter = Submitter(self.view, key, timeout_s, before_submit)
        self.coordinator, self.is_coordinator = self.view.coordinator, self.view.is_coordinator
        # the coordinator closes a failed session only if this process opened it: one restarted mid-session
        # rejoins it and never abandons it (review8 F3)
        self.opened_here = False
        self.rejoined = False  # this MGMC found its session under way on the chain (it restarted)
        self.checkpoint = checkpoint
        self.tariff_wait_s = tariff_wait_s
        self.priced = list(range(first_interval, first_interval + mg.intervals) if priced is None else priced)
        # per member, the intervals of `priced` the DSO had not priced when the coordinator opened after its
        # wait ({}: all priced; None: it did not wait: not the coordinator, no wait set, or not settle_by_both)
        self.unpriced: dict[bytes, tuple[int, ...]] | None = None
        self.own: tuple[float, ...] = ()  # its last unrounded answer (kWh): its private anchor
        self.owed = 0  # what it owed at its last read when that barred its purchases (`debts`); 0: it may buy
        self.relaxed = phases  # in the relaxed phase (with the genset phases)
        self.commitment: tuple[tuple[bool, ...], ...] | None = None  # its genset on/off, once decided
        # a clean session (opened with clean_prices: `dayahead_clean`): the book over both books' 2n, and a
        # clean seller's switch once decided (kept in the checkpoint's commitment: a seller has no genset)
        self.clean = False
        self.switch: tuple[bool, ...] | None = None
        self.redecided = 0  # of its clean_decisions - 1 re-decision runs, those done (in its checkpoint)
        self.n = mg.intervals
        self.book: Book | None = None
        self.iteration = 0  # the session's iteration this MGMC is at (its next post's)
        self.posted: tuple[int, ...] = ()
        self.stop = ""
        self.phases = phases
        # this MG's own range (kW) per interval (physical limits, maximum quantity, clean-only, less the sides
        # it banned) and its rule fees (less the ones it dropped), its judgement of its floors and caps, and
        # the public coordination of everyone's (`dayahead_rules`; joined once the session is on the chain)
        inside = None if window is None else [t for t in range(mg.intervals) if first_interval + t in window]
        self.rules = SessionRules(mg, interval_hours, self.cfg, inside)
        # the last step was the kWh stop: the session closes at the next iteration, after a final round
        # carrying the judgements on it where they are judged (and goes on if they change something)
        self.kwh = False
        # the value stop: this MG's verdict on the last stepped iteration (`settled`, with its own tariff
        # spread), posted with its next position from iteration 2 on (as `allocate` posts them)
        self.spread = [r - f for r, f in zip(mg.tariff.retail, mg.tariff.feed_in, strict=True)]
        # behind a limited DSO connection a P2P kWh can be worth more than the spread (`allocate` then runs
        # the kWh stops): such an MG never says settled, so no value stop happens while it is a member
        limited = math.isfinite(mg.tariff.max_import_kw) or math.isfinite(mg.tariff.max_export_kw)
        self.values = self.cfg.value_per_kwh > 0 and not limited
        self.verdict = False
        # with an exchange fee, this MG's own marginal values (balance duals, currency per kWh) at its answers of
        # the last two steps (None: no step answered yet, or a solve gave none), and the prices it answered the
        # step being judged at and its position before it: its verdict values a move that only unwinds its
        # position at its own margin (`dayahead_rounds.judge`, `exchange_fee.unwinding_worth`)
        self.margins: tuple[tuple[float, ...] | None, tuple[float, ...] | None] | None = None
        self.answered: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        # the first iteration of the phase whose value stop closes the session (after the commitment with
        # the phases): a close needs every verdict on an iteration of it, never on a relaxed one
        self.final_from = (
            MAX_ITERATIONS + 1 if phases else 1
        )  # set when the phase after the commitment begins

    @property
    def ledger(self) -> Replica:
        """The replica the agent reads and submits to (the view's: one for every part, also when replaced)."""
        return self.view.ledger

    @ledger.setter
    def ledger(self, ledger: Replica) -> None:
        self.view.ledger = ledger

    # --- the session -----------------------------------------------------------------------------------

    async def run(self) -> SessionOutcome:
        try:
            self.refusal()
            stop = await self._play()
        except SessionFailed as failure:
            reason = str(failure)
        except Exception as exc:  # a solver or replica error: the stage fails, the MGMC trades on intraday
            log.exception("day-ahead session %s: unexpected error", self.session)
            reason = f"{type(exc).__name__}: {exc}"
        else:
            return self._outcome(True, "", stop)
        if self.is_coordinator and self.opened_here and self.view.open_now():
            reason += await self.submitter.abandon(self.rejoined)
        elif "deadline" not in reason:  # a member refused or stopped by the close: say why it came
            reason += self.view.past_deadline()
        log.warning("day-ahead session %s failed: %s", self.session, reason)
        return self._outcome(False, reason, "")

    def refusal(self) -> None:
        """Raise SessionFailed when this session is beyond the edge's scope (`dayahead_scope.refusal`)."""
        refusal(self)

    async def _play(self) -> str:
        if self.is_coordinator and self.view.record() is None:
            clean = opens_clean(self.cfg, self.ledger.state(ROLE), self.members, self.first_interval, self.n)
            if clean and clean_refusal(self.cfg):  # refused before anything is opened
                raise SessionFailed(
                    f"refused up front: the session is a clean one and {clean_refusal(self.cfg)}"
                )
            await await_tariffs(self)
            self.opened_here = await self.submitter.open(clean)
        # without a deadline a member waits for the opening one phase timeout, and the coordinator's wait more
        record = await self.view.opened(self._tariff_wait() if self.deadline is None else 0.0)
        # the chain's exchange fee of the session (its record's, never this MGMC's config): a restart reads it again
        self.rules.join(self.ledger.state(ROLE), record["members"], self.key.public, self.first_interval,
                        session_fee(record))  # fmt: skip
        if record.get("clean"):
            self._clean_session()
        if record["closed"]:  # this MGMC restarted after the close: the session ended as the chain shows
            return found_closed(self, record)
        resumed = await resume(self, record)
        if resumed is not None:  # from its checkpoint, at its post: as if it had not restarted
            return await play_phases(self, *resumed)
        if record["iteration"] > 0 or exchange.posted(self.ledger.state(ROLE), self.session, self.key.public):
            return await rejoin(self, record)
        book = self.book = Book(self.cfg, session_prices(record), len(self.members), self.fee)
        model = self._first_model()
        self.own, posted = answer(model, book.price_floats, self._bounds(), self.rules.fees())
        await self._post(0, posted)
        return await play_phases(self, model, self.own, 0)

    def _tariff_wait(self) -> float:
        """How long the coordinator may wait for the DSO's cover prices now (`dayahead_tariffs.tariff_wait`)."""
        return tariff_wait(self)

    @property
    def fee(self) -> int:
        """The session's exchange fee (nano per kWh per side; 0 before it joined or without one)."""
        return self.rules.fee

    def _clean_session(self) -> None:
        """The session is a clean one (whoever opened it: a member follows the chain): the book, this MG's
        model, bounds, fees and verdict over both books, as `dayrounds.Exchange` plays it."""
        why = clean_refusal(self.cfg)
        if why:
            raise SessionFailed(f"refused: session {self.session!r} is a clean one and {why}")
        self.clean = True
        self.rules.clean_session(self.mg, self.dt)
        self.spread = self.spread * 2  # a kWh in either book is worth its spread (`Exchange.spread`)

    async def _finish(self) -> str:
        """At the stop: the coordinator closes; every member waits for the close in a final block."""
        if self.is_coordinator:
            await self.submitter.close(self.iteration, self.rejoined)
        await self.view.closed(self.iteration)
        return self.stop

    # --- its seams (every part goes through them: a subclass overriding one is obeyed) -----------------

    def _first_model(self) -> DayModel:
        """This MG's day model for the first (or only) phase: genset on/off relaxed where it has gensets; on a
        clean session with its clean column (`dayahead.model_for`: a seller's switch relaxed until decided)."""
        return model_for(self.mg, self.dt, self.clean, clean_side(self.cfg), relaxed=bool(self.mg.gensets))

    def _stop_at(self, k: int, until: int, relaxed: bool) -> str:
        """Whether the session closes at k once every post of k is in (`dayahead_rounds.stop_at`)."""
        return stop_at(self, k, until, relaxed)

    def _judge(self, moves: list[list[float]], tolerance: float) -> None:
        """This MG's verdict and rules judgement on the iteration just stepped (`dayahead_rounds.judge`)."""
        judge(self, moves, tolerance)

    def _bounds(self) -> tuple[list[float], list[float]]:
        """This MG's range for its next answer (`SessionRules.bounds`) within the connection capacity the DSO
        posted for its trading key (`connection`), its buying side closed while it owes more than the chain
        lets a buyer owe (`_owes`)."""
        bounds = connected_bounds(self.rules.bounds(), self._capacities(), self.dt)
        return debts.sales_only_bounds(bounds) if self._owes() else bounds

    def _capacities(self) -> list[int | None]:
        """The connection capacity (Wh) standing for this MG's trading key in each interval of the session."""
        return capacity_row(self.ledger.state(ROLE), self.key.public, self.first_interval, self.n)

    def _owes(self) -> int:
        """What this MG owes when its replica shows that bars its purchases (`debts.owed_on`), else 0; logs
        once when that starts and once when it ends."""
        owed = debts.owed_on(self.ledger, self.key.public)
        if owed and not self.owed:
            log.warning("day-ahead session %s: this MG owes %d micro-units on the MGMC chain and may not buy "
                        "while it does: its positions carry no purchase (it may sell; its sales pay the debt "
                        "first)", self.session, owed)  # fmt: skip
        elif self.owed and not owed:
            log.info("day-ahead session %s: this MG's debt is paid off: it may buy again", self.session)
        self.owed = owed
        return owed

    async def _post(self, k: int, positions: tuple[int, ...], says_settled: bool = False) -> None:
        if min(positions, default=0) < 0 and self._owes():  # a debt that landed after its answer was solved
            log.warning("day-ahead session %s: iteration %d's answer buys, and this MG owes: posted without "
                        "its purchases", self.session, k)  # fmt: skip
            positions = debts.sales_only(positions)
            self.own = debts.sales_only(self.own)  # its anchor: what it posts
        # a capacity the DSO posted after this answer's bounds were read, and one landing ahead of the post
        positions = cut_as_built(self, k, positions)
        try:
            await self._send(k, positions, says_settled)
        except SessionFailed as refused:  # not final (it may still land) or not the capacity's: never retried
            if isinstance(refused, NotFinal) or (again := cut_after_refusal(self, k, positions)) is None:
                raise
            await self._send(k, again, says_settled)  # once: a second refusal is the stage's failure

    async def _send(self, k: int, positions: tuple[int, ...], says_settled: bool) -> None:
        self.iteration = k  # its side (the checkpoint) kept, then iteration k's `positions` posted
        if self.checkpoint is not None:  # before the post: a restart finds what it answered and against what
            book = self.book
            assert book is not None
            save(self.checkpoint, Checkpoint(
                self.session, k, tuple(float(v) for v in self.own), tuple(positions), says_settled,
                self.relaxed, self.final_from,
                self.commitment if self.switch is None else (self.switch,), tuple(book.prices), book.rho,
                tuple(book.q_wh) if k > 0 else (), self.rules.snapshot(), self.kwh, self.redecided, self.margins,
                book.drift_from,
            ))  # fmt: skip
        judged = self._judged()
        clean = declares_clean(self.mg) if self.clean else None
        self.posted = await self.submitter.post(k, positions, says_settled, judged, self.rejoined, clean)

    def _judged(self) -> dict[str, object] | None:
        """The `judged` of this MGMC's next post: its judgement of its own rules (`SessionRules.posting`)."""
        return self.rules.posting()

    def _outcome(self, completed: bool, reason: str, stop: str) -> SessionOutcome:
        record = self.view.record()
        prices = () if record is None else tuple(record["prices"])
        stepped = 0 if self.book is None else self.book.iterations
        positions = self.posted
        if completed:  # what the step priced: after a value stop, not the abandoned verdict round's post
            priced = exchange.stepped(self.ledger.state(ROLE), self.session, self.key.public)
            assert priced is not None  # a member of the completed session
            positions = tuple(priced["positions"])
        return SessionOutcome(
            self.session, completed, reason, self.is_coordinator, stepped, stop, prices, positions, self.fee
        )
