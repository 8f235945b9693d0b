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
The value stop (the default, as in `allocate`): each member judges every stepped iteration itself
(`dayexchange.settled`: the book's public moves and imbalance ratios, its own tariff spread and position)
and posts its verdict with its next position (`exchange.position`'s `settled`); once the chain counts every
member's post of k settled (`exchange.settled_count`) the coordinator closes at k without stepping it (the
contract's `exchange_closed` says `settled`), so the result is iteration k − 1's, `allocate`'s to the nano
and the Wh. How it decides without private data: `allocate` uses the value stop when every DSO connection
is unlimited (rules days too); an MGMC only knows
its own connection, so one whose connection is limited (or whose `value_per_kwh` is 0) never says settled,
and no value stop happens while it is a member: the kWh stops then, as `allocate`'s.
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
Gensets: with `phases` (some member has one; not on the chain, so every member is configured alike) the
session runs `allocate`'s three phases: ADMM on the LP relaxation to its own stop, each genset MG's
commitment MILP alone at the prices found, ADMM with commitments fixed; decided once (`recommits` 1). The
value stop ends the relaxed phase one iteration later than `allocate` does: a member learns the others'
verdicts on k only from their posts of k + 1, which it has answered relaxed, so the coordinator steps k + 1
and every member, reading the stepped posts' `settled` (public transactions), starts the commitment there;
the verdicts on the last relaxed iteration go with the first committed posts, as in `allocate`, and never
close the session. So a genset day with the value stop is not `allocate`'s to the Wh (with `value_per_kwh`
0 it is).
Owner floors and caps (`dayahead_rules`, dayjudge's timing as `dayrounds.Exchange` runs it): after each
step every member judges its own rules (its bounds and fees less its bans and dropped fees: private) and
posts its judgement with its next position (`exchange.position`'s `judged`); once every post of that
iteration is in, each computes who is let back from the posted judgements and the rules on its replica
(`Coordination.settle`, once per round) and puts its own part in force. A stop (kWh or value) closes the
session after that round only if the judgements changed nothing (a kWh stop on a day that is judged posts
that round first, abandoned by the close), so the session is `allocate`'s on the chain venue to the nano
and the Wh, every judgement the same. A member whose own coordination says the session stops where the
coordinator steps, or goes on where it closes, fails the stage naming it. The genset phases with rules: the
judgement on the last relaxed step goes with the first committed posts (with `value_per_kwh` 0 the day is
`allocate`'s; with the value stop the relaxed phase ends one iteration later, as above).
Scope, refused up front with the reason: its floor or cap on the chain other than its own config (the
let-back queue is the chain's); a rejoin without a usable checkpoint past iteration 1 of a day where some
floor or cap binds (its judgement state is in its checkpoint alone); a genset MG without `phases`, or `recommits` > 1 (whether another
MG's commitment changed is private). Maximum quantity and clean-only are each MG's own bounds. Never reads
another MG's private data; never blocks the loop longer than one MG solve.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from peergrid_controller.dayexchange import (
    Book,
    DayAheadConfig,
    anchor,
    answer,
    settled,
)
from peergrid_controller.daymodel import DayModel
from peergrid_controller.model import Microgrid
from peergrid_edge.dayahead_restart import found_closed, rejoin, resume
from peergrid_edge.dayahead_rules import SessionRules, own_rules_differ
from peergrid_edge.dayahead_state import Checkpoint, save
from peergrid_edge.dayahead_submit import Submitter
from peergrid_edge.dayahead_view import SessionView
from peergrid_edge.exchange_io import ROLE, Deadline, Replica, SessionFailed, SessionOutcome
from peergrid_ledger import keys
from peergrid_ledger.contracts import exchange
from peergrid_ledger.contracts.exchange import MAX_ITERATIONS

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
        alone, anchored at its rounded post)."""
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
        self.own: tuple[float, ...] = ()  # its last unrounded answer (kWh): its private anchor
        self.relaxed = phases  # in the relaxed phase (with the genset phases)
        self.commitment: tuple[tuple[bool, ...], ...] | None = None  # its genset on/off, once decided
        self.n = mg.intervals
        self.book: Book | None = None
        self.iteration = 0  # the session's iteration this MGMC is at (its next post's)
        self.posted: tuple[int, ...] = ()
        self.stop = ""
        self.phases = phases
        # this MG's own range (kW) per interval (physical limits, maximum quantity, clean-only, less the sides
        # it banned) and its rule fees (less the ones it dropped), its judgement of its floors and caps, and
        # the public coordination of everyone's (`dayahead_rules`; joined once the session is on the chain)
        self.rules = SessionRules(mg, interval_hours, self.cfg)
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
        """Raise SessionFailed when this session is beyond the edge's scope (the module contract)."""
        cfg, mg = self.cfg, self.mg
        if len(self.members) < 2 or len(set(self.members)) != len(self.members):
            raise SessionFailed(
                f"refused up front: {len(self.members)} members, at least two distinct needed"
            )
        if self.key.public not in self.members:
            raise SessionFailed("refused up front: this MGMC's trading key is not among the members")
        started = self.view.record() is not None  # a restart: the session is judged as the chain holds it
        if self.deadline is not None and not started and self.clock() >= self.deadline.close_s:
            raise SessionFailed(
                f"refused up front: the day-ahead deadline ({self.deadline.close_s:.3f}, wall s) has passed "
                "(the stage must end before the first interval it trades)"
            )
        if mg.gensets and not self.phases:
            raise SessionFailed(
                f"refused up front: {mg.name} has gensets and the session is configured without the "
                "commitment phases (every member must be configured with them)"
            )
        if self.phases and cfg.recommits != 1:
            raise SessionFailed(
                f"refused up front: recommits {cfg.recommits}; the edge session decides genset on/off once "
                "(whether another MG's commitment changed is private)"
            )
        differ = own_rules_differ(mg, self.ledger.state(ROLE), self.key.public, self.first_interval)
        if differ:
            raise SessionFailed(
                f"refused up front: {differ} (the coordination orders let-backs by the chain's rules)"
            )
        if self.is_coordinator:
            if self.opening is None or len(self.opening) != self.n:
                got = None if self.opening is None else len(self.opening)
                raise SessionFailed(f"refused up front: {got} opening prices for {self.n} intervals")
            bad = [t for t, p in enumerate(self.opening) if not math.isfinite(p)]
            if bad:
                raise SessionFailed(f"refused up front: the opening price of interval {bad[0]} is not finite")

    async def _play(self) -> str:
        if self.is_coordinator and self.view.record() is None:
            self.opened_here = await self.submitter.open()
        record = await self.view.opened()
        self.rules.join(self.ledger.state(ROLE), record["members"], self.key.public, self.first_interval)
        if record["closed"]:  # this MGMC restarted after the close: the session ended as the chain shows
            return found_closed(self, record)
        resumed = await resume(self, record)
        if resumed is not None:  # from its checkpoint, at its post: as if it had not restarted
            return await self._phases(*resumed)
        if record["iteration"] > 0 or exchange.posted(self.ledger.state(ROLE), self.session, self.key.public):
            return await rejoin(self, record)
        book = self.book = Book(self.cfg, record["prices"], len(self.members))
        model = self._first_model()
        self.own, posted = answer(model, book.price_floats, self.rules.bounds(), self.rules.fees())
        await self._post(0, posted)
        return await self._phases(model, self.own, 0)

    async def _phases(self, model: DayModel, own: tuple[float, ...], k: int | None) -> str:
        """The session on from this MGMC's post of iteration k (None: from its next answer) to the stop.
        With the phases: 1. on the LP relaxation of genset on/off, to its own stop; 2. each genset MG
        commits alone (its MILP at the prices found, its proximal term at commit_weight·ρ); 3. on with
        commitments fixed."""
        cfg, book = self.cfg, self.book
        assert book is not None
        if self.relaxed:
            own = await self._run(model, own, cfg.relaxed_iterations, cfg.relaxed_tolerance_kwh, True, k)
            k = None
            if self.mg.gensets:
                model = self._commit(own)
            # the judgement on the last relaxed step goes with the first committed posts, as in `allocate`
            self.relaxed, self.final_from, self.kwh = False, book.iterations + 1, False
        # a day where some member's floor or cap binds keeps the tight stop, as `allocate`'s
        tolerance = cfg.tolerance_kwh if self.rules.ruled else cfg.free_tolerance_kwh
        await self._run(model, own, cfg.max_iterations, tolerance, first=k)
        return await self._finish()

    async def _finish(self) -> str:
        """At the stop: the coordinator closes; every member waits for the close in a final block."""
        if self.is_coordinator:
            await self.submitter.close(self.iteration, self.rejoined)
        await self.view.closed(self.iteration)
        return self.stop

    def _first_model(self) -> DayModel:
        """This MG's day model for the first (or only) phase: genset on/off relaxed where it has gensets."""
        return DayModel(self.mg, self.dt, relaxed=bool(self.mg.gensets))

    async def _run(
        self,
        model: DayModel,
        own: tuple[float, ...],
        until: int,
        tolerance: float,
        relaxed: bool = False,
        first: int | None = None,
    ) -> tuple[float, ...]:
        """Iterate (as `Exchange.run`) until the kWh stop within `tolerance`, the value stop or `until`
        iterations in all; this MG's last unrounded answer (its anchor). A stop closes the session at the
        iteration after the step that reached it: every member's post of k said settled on k - 1 (the value
        stop), or k - 1 was the kWh stop; where the rules are judged those posts carry the judgements on
        k - 1, and the session goes on instead if they change something (a kWh stop with nothing to judge
        closes at k with no post). In the `relaxed` phase a stop ends the phase after the step that shows
        it instead (`allocate` ends it on a value stop at k - 1, but each member learns the others' verdicts
        on k - 1 only from their posts of k, which it answered relaxed)."""
        book = self.book
        assert book is not None
        self.stop = "cap"
        while True:
            if first is not None:  # posted already (the first responses, or before a restart)
                k, first = first, None
            else:
                if self.kwh and not self.rules.judging:
                    self.stop = "kwh"  # nothing judged on it: closed without a final round
                    break
                if book.iterations >= until and not self.kwh:
                    break
                self.view.in_time(self.iteration)
                if not self.view.open_now():
                    raise SessionFailed(
                        f"the coordinator closed the session at iteration {self.iteration} before the stop"
                        + self.view.past_deadline()
                    )
                k = book.iterations + 1
                proximal = (book.rho_float, anchor(own, book.mean), self.cfg.resolution_kwh)
                bounds, fees = self.rules.bounds(), self.rules.fees()
                self.own, posted = answer(model, book.price_floats, bounds, fees, proximal)
                own = self.own
                await self._post(k, posted, says_settled=self.values and k >= 2 and self.verdict)
                if (
                    self.posted != posted
                ):  # its earlier process's post of k landed instead: that one is priced
                    own = tuple(q / 1000 for q in self.posted)
            stop = await self._round(k, tolerance, until, relaxed)
            if stop:  # closed at k, unstepped
                self.stop = stop
                break
            if relaxed and self.kwh:
                self.stop = "kwh"
                break
            if relaxed and self.view.all_settled(k) and not self.rules.last.changed:
                self.stop = "value"
                break
        return own

    def _commit(self, own: tuple[float, ...]) -> DayModel:
        """Genset on/off decided by this MG alone at the prices found (`allocate`'s step 2, once)."""
        book, cfg = self.book, self.cfg
        assert book is not None
        fresh = DayModel(self.mg, self.dt)
        fresh.trade(book.price_floats, *self.rules.bounds(), *self.rules.fees())
        at = anchor(own, book.mean)
        fresh.proximal(
            book.price_floats, cfg.commit_weight * book.rho_float, at, cfg.resolution_kwh, recommit=True
        )
        fresh.solve()
        self.commitment = tuple(tuple(bool(on) for on in row) for row in fresh.commitment())
        return DayModel(self.mg, self.dt, commitment=self.commitment)

    async def _round(self, k: int, tolerance: float, until: int, relaxed: bool) -> str:
        """Iteration k once this MGMC posted it: the coordinator waits for every member's post, settles the
        judgements they carry (`_stop_at`) and closes at a stop, else steps with ρ from the public balancing;
        every member waits for that step or close in a final block and computes the same, so a coordinator
        that closes or steps otherwise fails the stage with the reason. Each computes the step itself from the
        posted positions, checks the chain's prices and ρ (`SessionView.check`) and judges it (`_judge`). The stop
        ("kwh", "value", "cap") when the session closes at k, else "" (stepped; `kwh` says whether the step
        was the kWh stop within `tolerance`)."""
        book = self.book
        assert book is not None

        def public() -> None:
            positions = self.view.positions(k)
            if k == 0:  # the first responses move no price
                book.take(positions)
                self.kwh = False
                return
            self.kwh, moves = book.advance(positions, tolerance)
            self._judge(moves, tolerance)

        if self.is_coordinator and self.view.iteration_now() == k:  # (resumed after its step: as a member)
            await self.view.all_posted(k)
            stop = self._stop_at(k, until, relaxed)
            if stop:
                return stop
            public()
            body = {"session": self.session, "iteration": k, "rho": book.rho}
            await self.submitter.submit(
                "exchange.step", body, lambda: self.view.iteration_now() > k, self.rejoined
            )
            await self._stepped(k)
        else:
            stepped = await self._stepped(k)
            record = self.view.record()
            assert record is not None
            # a close before every post of k was in is no stop (a member silent, the deadline)
            complete = stepped or record["posted"] == len(self.members)
            stop = self._stop_at(k, until, relaxed) if complete else ""
            if not stepped:
                if stop:
                    return stop
                raise SessionFailed(
                    f"the coordinator closed the session at iteration {k} instead of stepping it "
                    f"(its posts abandoned): the stage failed{self.view.past_deadline()}"
                )
            if stop:
                raise SessionFailed(
                    f"the coordinator stepped iteration {k} where this MGMC's coordination of the posts "
                    f"says the session stops there ({stop} stop): not followed"
                )
            public()
        self.view.check(book)
        return ""

    async def _stepped(self, k: int) -> bool:
        """Wait until iteration k is stepped in a final block (`SessionView.stepped`), this MGMC then at the
        session's iteration; False if the coordinator closed at k instead."""
        now = await self.view.stepped(k)
        if now == k:  # closed instead of stepped
            return False
        self.iteration = now
        return True

    def _stop_at(self, k: int, until: int, relaxed: bool) -> str:
        """Every post of k is in: the judgements on k - 1 they carry settled (`SessionRules.settle`, once per
        round, in order), and whether the session closes at k: the kWh stop at k - 1 or every verdict on it
        settled (in the final phase), and nothing the judgements changed; at the cap a final round that
        changed something closes too, as `allocate` stops there. "" to step k."""
        all_settled = self.view.all_settled(k)
        record = self.view.record()
        assert record is not None
        outcome = self.rules.settle(self.view.posts(k, record["members"]), all_settled)
        if relaxed:  # the relaxed phase ends after its step (`_run`), never closing the session
            return ""
        if not outcome.changed and (self.kwh or (all_settled and self._closes_by_value(k))):
            return "kwh" if self.kwh else "value"
        if self.kwh and self.book is not None and self.book.iterations >= until:
            return "cap"
        return ""

    def _judge(self, moves: list[list[float]], tolerance: float) -> None:
        """This MG's verdict on the iteration just stepped (`dayexchange.settled`: the public moves and
        imbalance ratios of the book, its own spread and position; or it alone within the kWh stop's
        `tolerance`, as `Exchange.step` judges it), and its judgement of its own rules there
        (`SessionRules.judge`), to post with its next position."""
        book = self.book
        assert book is not None
        me = self.members.index(self.key.public)
        if not self.values:
            self.verdict = False
        else:
            ratios = book.imbalance_ratios()
            rounding = len(book.q) / 2000  # half a Wh per member: what posting whole Wh alone makes
            self.verdict = settled(
                self.spread, moves[me], book.q[me], ratios, self.cfg.value_per_kwh, tolerance, rounding
            )
        self.rules.judge(book, me, self.verdict)

    def _closes_by_value(self, k: int) -> bool:
        """Whether every member's verdict posted with k settled closes the session: it judges k - 1, an
        iteration of the final phase (verdicts on the last relaxed one go with the first committed posts, as
        in `allocate`, and the session goes on)."""
        return k >= 2 and k - 1 >= self.final_from

    # --- writing ---------------------------------------------------------------------------------------

    async def _post(self, k: int, positions: tuple[int, ...], says_settled: bool = False) -> None:
        self.iteration = k
        if self.checkpoint is not None:  # before the post: a restart finds what it answered and against what
            book = self.book
            assert book is not None
            save(self.checkpoint, Checkpoint(
                self.session, k, tuple(float(v) for v in self.own), tuple(positions), says_settled,
                self.relaxed, self.final_from, self.commitment, tuple(book.prices), book.rho,
                tuple(book.q_wh) if k > 0 else (), self.rules.snapshot(), self.kwh,
            ))  # fmt: skip
        judged = self._judged()
        self.posted = await self.submitter.post(k, positions, says_settled, judged, self.rejoined)

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
            self.session, completed, reason, self.is_coordinator, stepped, stop, prices, positions
        )
