"""The exchange ADMM's rounds where one process holds every MG: the simulation's, with or without a recorder.

Promises: `Exchange` is the public `Book` (dayexchange.py) plus every MG's private side (its DayModel's
`answer` within its own bounds and fees, its unrounded answer as its proximal `anchor`, its value-stop
verdict `settled`, its `OwnRules`) and the rules' public `Coordination` (dayjudge.py), in the chain's units,
so that a recorder's arithmetic and this one are the same to the last digit. `run` iterates to a stop (the
kWh stop, the value stop, or a cap), judging the owners' rules on the way; `close` ends the session on the
recorder. With a recorder (`ExchangeRecorder`) every move is posted as it is made and each MG posts its
verdict and its rules' judgement on an iteration with its next position; before every step and the close
the recorder's prices, count of verdicts and judgements must be ours, or the allocation stops with
DayAheadError (a chain that disagrees is never silently followed).
The owners' rules, who does what and when (each MGMC could run its part alone from the chain):
- after the step of iteration k each MG judges its own rules (`OwnRules.judge`) where they may be due:
  near convergence (both residuals within `rules_within_kwh`, public) or where its own verdict on k is
  settled; on a day where no rule can bind (no floor or cap in force, no negative price, no side banned)
  nobody judges;
- it posts its judgement with its position of k + 1 (`exchange.position`'s `judged`; nothing when empty);
- near convergence its own fee changes and bans are in force for that very answer (every MG knows the
  judgement is due); on a value stop alone (every verdict on k settled: an MG learns it only from the
  posts of k + 1) its whole judgement is in force from the answers of k + 2;
- who is let back (`Coordination.settle`, from every member's judgement on k: public) answers from k + 2;
- the run stops only where the judgements due change nothing (no ban, no fee, no let-back); a recorder's
  session then has a final round, posted with the verdicts and judgements on the last iteration and
  abandoned by the close, so that anyone reading the chain sees why it stopped.
Before, a coordinator judged every MG's rules at once, with every part in force from the next answers;
the lag (a value stop's judgement and the let-backs one round later) is what MGs that learn the others'
judgements only from their posts can do. Measured: the allocations are the same to the byte on the 20-MG
rules days, seeds 1-8, and the 4-12-MG days of /work/notes/exp/ident.py (nothing is banned or let back on
those days, and the one judgement due on a value stop alone, seed 2's, changed nothing); a ban and its
let-back go through the chain in the tests.
On a clean session (`clean`, cleanbook.py) the book runs over 2n prices and positions, general then clean,
with one ρ; the owners' rules are judged on the general half (`general`), a clean-only buyer's purchases are
open (all clean) with its cap at cap + premium, and a recorder that keeps a clean book gets both halves apart.
Deterministic (HiGHS single-threaded, MGs in scenario order). Never reads clocks or I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from peergrid_controller.cleanbook import clean_buy_kw, clean_kind
from peergrid_controller.dayexchange import (
    Book,
    DayAheadConfig,
    DayAheadError,
    ExchangeRecorder,
    Stop,
    anchor,
    answer,
    at_stake,
    keeps_clean,
    nano,
    settled,
    unfollowed,
)
from peergrid_controller.dayjudge import (
    Coordination,
    Judgement,
    Outcome,
    OwnJudgement,
    OwnRules,
    binds,
    demand_on_tick,
    due,
    enact,
    judge_own,
    same_judgement,
)
from peergrid_controller.daymodel import DayModel
from peergrid_controller.dayrules import Fees, chain_rules, clean_cap_fees
from peergrid_controller.exchange_fee import Margins, with_fee
from peergrid_controller.market import Rejected
from peergrid_controller.model import Scenario


class Exchange(Book):
    """The exchange-ADMM state shared by the phases of `allocate`, where one process holds every MG: the
    public `Book` plus what is private to each MG (its unrounded answer, its `OwnRules`: bounds, fees, bans)
    and the rules' public `Coordination`. Kept in the chain's units, so that a recorder's arithmetic
    and this one are the same to the last digit."""

    def __init__(
        self,
        scenario: Scenario,
        cfg: DayAheadConfig,
        prices: Sequence[float],
        recorder: ExchangeRecorder | None = None,
        clean: bool = False,
    ) -> None:
        """`clean`: a clean session (cleanbook.py): the book runs over 2n prices, general then clean, the
        clean ones starting at the general ones; the owners' rules are judged on the general half."""
        prices = [*prices, *prices] if clean else list(prices)
        super().__init__(cfg, [nano(p) for p in prices], len(scenario.microgrids), cfg.exchange_fee)
        self.mgs = scenario.microgrids
        self.recorder = recorder
        self.stepped = 0  # steps the recorder accepted: its current iteration
        self.stop: Stop = "cap"  # which stop ended the last `run`
        self.clean = clean
        self.intervals, self.dt = scenario.intervals, scenario.interval_hours  # n: the book's 2n if clean
        self.solves = 0
        # each MG's own floors and caps (private: bounds, fees, bans; nothing outside its window), and their
        # public coordination
        windows = [cfg.window_of(mg.name) for mg in self.mgs]
        self.own_rules = [
            OwnRules(
                mg, self.dt, self.intervals, cfg.fee_margin, cfg.resolution_kwh, cfg.exchange_fee, window
            )
            for mg, window in zip(self.mgs, windows, strict=True)
        ]
        demands = [demand_on_tick(mg) for mg in self.mgs]
        self.coordination = Coordination(
            lambda i, t, side: demands[i](t, side),
            self.intervals,
            ruled=any(binds(chain_rules(mg.rules)) for mg in self.mgs),
        )
        # each MG's judgement on the last stepped iteration (None: none), posted with its next answer and in
        # force once those are all posted if `due` (`_judge`, `_enact`), with the MGs the coordination let back
        self.judged: list[OwnJudgement | None] = [None] * len(self.mgs)
        self.due = False
        self.near = False  # ... judged near convergence (its fees and bans already in force)
        self.outcome = Outcome((), False)  # ... and what the coordination made of them
        self.posted_judged: list[Judgement | None] = [None] * len(self.mgs)  # what went to the recorder
        self.own: list[tuple[float, ...]] = []  # each MG's own answer before rounding (kWh): its anchor
        # what a kWh traded P2P can be worth to each MG against the DSO (its retail less its feed-in)
        self.spread = [
            [r - f for r, f in zip(mg.tariff.retail, mg.tariff.feed_in, strict=True)] * (2 if clean else 1)
            for mg in self.mgs
        ]
        # a clean-only buyer buys P2P on a clean session (all of it clean: cleanbook.py's c ≤ x)
        buys = [clean_buy_kw(mg, self.dt, self.intervals) if clean else None for mg in self.mgs]
        self.clean_buy_kw = {i: self.own_rules[i].within(b) for i, b in enumerate(buys) if b is not None}
        self.settled = False  # set by `step`: every MG's verdict on it settled (`settled`)
        # each MG's verdict on the last stepped iteration, posted with its next position where the value stop
        # is judged (`run`'s by_value); none on iteration 0 (the first responses) or before any step
        self.verdicts = [False] * len(self.mgs)
        self.by_value = False
        self.verdict_round = False  # the session ended with a round that posted the verdicts, abandoned
        self.said = 0  # posts of the recorder's current iteration that said settled
        # with an exchange fee, what each MG's moves are worth to it (private: its own marginal values); not
        # on a clean session (2n positions, n balance rows): its moves stay at the spread
        self.margins = Margins(0 if clean else cfg.exchange_fee, self.spread, [mg.tariff for mg in self.mgs])

    def bounds(self, i: int) -> tuple[list[float], list[float]]:
        lo, hi = self.own_rules[i].bounds()
        return (list(self.clean_buy_kw[i]) if i in self.clean_buy_kw else lo), hi

    def general(self, values: Sequence[Any]) -> list[Any]:
        """The general book's half of a 2n list on a clean session (the whole list otherwise): the owners'
        floors and caps are judged there."""
        return list(values[: self.intervals])

    def anchor(self, i: int) -> list[float]:
        """MG i's proximal anchor (`anchor`)."""
        return anchor(self.own[i], self.mean)

    def open(self) -> None:
        if self.recorder is not None and self.clean and not keeps_clean(self.recorder):
            raise DayAheadError("the exchange recorder keeps no clean book: a clean session runs without one")
        if self.recorder is not None:
            names = [mg.name for mg in self.mgs]
            if self.clean and keeps_clean(self.recorder):
                n = self.intervals
                book = self.prices[n:]
                verdict = self.recorder.open(names, tuple(self.prices[:n]), self.rho, clean_prices=book)
            else:
                verdict = self.recorder.open(names, tuple(self.prices), self.rho)
            if isinstance(verdict, Rejected):
                raise DayAheadError(f"the chain refused to open the exchange: {verdict.reason}")

    def close(self, models: list[DayModel]) -> None:
        """End the session on the recorder after the last step. After the value stop, or a stop where the
        rules were judged, the MGs first post the next iteration's answers with their verdicts and
        judgements on the last one (each MG says settled, and what its rules changed, on the chain, so the
        coordinator decides from nothing private), the recorder must have them as posted, and the close
        abandons that iteration: the allocation stays the last stepped one. Otherwise nobody has posted the
        next iteration."""
        if self.recorder is not None:
            if self.stop == "value" or (self.stop == "kwh" and self.due):
                self._answers(models, self.iterations + 1)
                self.verdict_round = True
                self._check_verdicts(self.iterations + 1)
                self._check_judged(self.iterations + 1)
            verdict = self.recorder.close(self.stepped)
            if isinstance(verdict, Rejected):
                raise DayAheadError(f"the chain refused to close the exchange: {verdict.reason}")

    def abandon(self) -> str:
        """Close the session of an allocation that stopped on an error, at the recorder's current iteration
        (its posts so far are abandoned, not priced), so that it is not left open; what the recorder said
        (a close that raises is reported, never put in place of the error that stopped the allocation)."""
        if self.recorder is None:
            return ""
        try:
            verdict = self.recorder.close(self.stepped)
        except Exception as exc:  # the first error is the one to raise
            return f"; closing it raised too: {type(exc).__name__}: {exc}"
        return (
            f"; the chain refused to close it too: {verdict.reason}" if isinstance(verdict, Rejected) else ""
        )

    def _post(
        self, i: int, iteration: int, answered: tuple[tuple[float, ...], tuple[int, ...]]
    ) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """MG i's `answer` at `iteration`, its position posted to the recorder (a refusal stops the
        allocation)."""
        if self.recorder is not None:
            name = self.mgs[i].name
            judged = self.judged[i]
            public = judged.public if judged is not None and not judged.public.empty else None
            self.posted_judged[i] = public
            says = self._says_settled(i, iteration)
            self.said += says
            # as before verdicts and judgements: a recorder that knows neither takes a post without them
            extra: dict[str, Any] = {"settled": True} if says else {}
            if public is not None:
                extra["judged"] = public
            posted = answered[1]
            if self.clean:  # both books: general positions, and the clean ones with the seller's declaration
                n = self.intervals
                extra["clean_positions"] = posted[n:]
                extra["clean"] = clean_kind(self.mgs[i]) == "seller"
                posted = posted[:n]
            verdict = self.recorder.position(name, iteration, posted, **extra)
            if isinstance(verdict, Rejected):
                raise DayAheadError(
                    f"the chain refused {name}'s position at iteration {iteration}: {verdict.reason}"
                )
        return answered

    def _says_settled(self, i: int, iteration: int) -> bool:
        """Whether MG i's post at `iteration` says settled: its verdict on the iteration before, where the
        value stop is judged (the verdicts stand from the step before: this post's iteration follows it)."""
        return self.by_value and iteration >= 2 and self.verdicts[i]

    def _check_verdicts(self, iteration: int) -> None:
        """The recorder's count of settled posts at `iteration` must be ours (a chain that counts otherwise
        would close, or not, on verdicts nobody posted)."""
        assert self.recorder is not None
        ours, self.said = self.said, 0
        theirs = self.recorder.settled(iteration)
        if isinstance(theirs, Rejected):
            raise DayAheadError(
                f"the chain refused to count the verdicts of iteration {iteration}: {theirs.reason}"
            )
        if theirs != ours:
            raise DayAheadError(
                f"the chain counts {theirs} settled verdicts posted at iteration {iteration} where the MGs "
                f"posted {ours}: not followed"
            )

    def _check_judged(self, iteration: int) -> None:
        """The recorder's judgements of `iteration` must be the ones the MGs posted (a chain that records
        others would let back, or go on, on judgements nobody made)."""
        assert self.recorder is not None
        theirs = self.recorder.judgements(iteration)
        if isinstance(theirs, Rejected):
            raise DayAheadError(
                f"the chain refused to read the judgements of iteration {iteration}: {theirs.reason}"
            )
        for mg, mine, recorded in zip(self.mgs, self.posted_judged, theirs, strict=True):
            if not same_judgement(mine, recorded):
                raise DayAheadError(
                    f"the chain records {mg.name}'s judgement at iteration {iteration} as {recorded} where "
                    f"it posted {mine}: not followed"
                )

    def _record_step(self) -> None:
        """End the iteration on the recorder with the ρ to go on with; its prices must be ours exactly."""
        if self.recorder is None:
            return
        self._check_verdicts(self.iterations)
        self._check_judged(self.iterations)
        chain = self.recorder.step(self.iterations, self.rho)
        if isinstance(chain, Rejected):
            raise DayAheadError(f"the chain refused the step of iteration {self.iterations}: {chain.reason}")
        self.stepped += 1  # the recorder's iteration now
        why = unfollowed(chain, self.prices, self.iterations, "the coordinator's is")
        if why is not None:
            raise DayAheadError(why)

    def _take(self, answers: list[tuple[tuple[float, ...], tuple[int, ...]]]) -> list[int]:
        """Make `answers` (`answer`'s) the current positions, each MG's own answer its anchor; the sums (Wh)."""
        self.own = [own for own, _ in answers]
        return self.take([posted for _, posted in answers])

    def first_responses(self, models: list[DayModel]) -> None:
        """x^0 (iteration 0): each MG's own best response at the current prices (no proximal term)."""
        prices = self.price_floats
        answers = [
            self._post(i, 0, answer(model, prices, self.bounds(i), self.fees(i)))
            for i, model in enumerate(models)
        ]
        self.solves += len(models)
        self._take(answers)
        self._record_step()  # iteration 0 moves no price

    def _answers(
        self, models: list[DayModel], iteration: int
    ) -> list[tuple[tuple[float, ...], tuple[int, ...]]]:
        """Every MG's proximal answer at the current prices, each posted at `iteration` with its verdict."""
        cfg, prices, rho = self.cfg, self.price_floats, self.rho_float
        answers = [
            self._post(
                i,
                iteration,
                answer(
                    model,
                    prices,
                    self.bounds(i),
                    self.fees(i),
                    (rho, self.anchor(i), cfg.resolution_kwh),
                ),
            )
            for i, model in enumerate(models)
        ]
        self.solves += len(models)
        return answers

    def step(self, models: list[DayModel], tolerance: float) -> bool:
        """One ADMM iteration (x-update of every MG, then the price update: `Book.advance`); True once both
        residuals are within `tolerance` (kWh) beyond what rounding every MG's answer to the Wh can make.
        Then each MG's verdict on it (`settled`, with its own spread; with an exchange fee a move that only
        unwinds its position at its own margin: exchange_fee.Margins; in the last phase never while its position
        loses against the DSO at the closing ticks, `Margins.loses`; never while a fee's drift holds the book, ρ
        below the config's or the imbalance over half what it was when ρ first halved, `Book.lowered`), and
        the value stop if every one is."""
        cfg = self.cfg
        answered_at, before = self.price_floats, self.q
        answers = self._answers(models, self.iterations + 1)
        self._enact()
        self.own = [own for own, _ in answers]
        converged, moves = self.advance([posted for _, posted in answers], tolerance)
        if cfg.value_per_kwh > 0:
            ratios, worth = self.imbalance_ratios(), self.margins.worth(models, answered_at, before, self.q)
            self.verdicts = [
                settled(
                    self.spread[i],
                    moves[i],
                    qi,
                    ratios,
                    cfg.value_per_kwh,
                    tolerance,
                    len(self.q) / 2000,
                    cfg.value_floor_kwh if self.final_phase else 1.0,
                    worth[i],
                )
                and not (self.final_phase and self.margins.loses(i, qi, self.prices))
                and not self.lowered
                for i, qi in enumerate(self.q)
            ]
        self.settled = cfg.value_per_kwh > 0 and all(self.verdicts)
        self._record_step()
        return converged

    def at_stake(self, i: int, moves: Sequence[float], ratios: Sequence[float]) -> float:
        """MG i's `at_stake`, with its own spread and position."""
        return at_stake(self.spread[i], moves, self.q[i], ratios)

    def run(self, models: list[DayModel], until: int, tolerance: float, by_value: bool = False) -> bool:
        """Iterate until converged within `tolerance` (or, `by_value`, once `settled`) with the owners' rules
        holding at the prices found, or `until` iterations in all. `by_value` also has every MG post its verdict
        with its next position (`_says_settled`)."""
        self.by_value = by_value
        while self.iterations < until:
            by_kwh = self.step(models, tolerance)
            converged = by_kwh or (by_value and self.settled)
            self.stop = "kwh" if by_kwh else "value"
            # the rules are judged from near convergence on (each judgement that changes something sends
            # ADMM off again, so waiting for the last digits every time cost hundreds of iterations), and
            # once more at convergence: the allocation is only converged with nothing left to change
            # (and whenever the value stop fires, whatever the residuals: it never stops on rules that the
            # prices found would judge otherwise)
            changed = self._judge()
            if converged and not changed:
                return True
        self.stop = "cap"
        return False

    def _judge(self) -> bool:
        """Each MG's judgement of its own rules on the iteration just stepped (`judge_own`), posted with its
        next answer; due near convergence or on a value stop (`due`); who is let back settled publicly
        (`Coordination.settle`), in force once those answers are all posted (`_enact`). True if the
        judgements are due and change something (a ban, a fee, a let-back): the exchange then goes on."""
        self.near = self.rules_near()
        prices = self.general(self.prices)
        judging = self.coordination.judging(prices)
        self.judged = [
            judge_own(
                own,
                prices,
                self.general(self.q[i]),
                near=self.near,
                settled=self.by_value and self.verdicts[i],
                judging=judging,
            )
            for i, own in enumerate(self.own_rules)
        ]
        self.due = due(judging, self.near, self.by_value and self.settled)
        if not self.due:
            self.outcome = Outcome((), False)
            return False
        self.outcome = self.coordination.settle(
            [j.public if j is not None else Judgement() for j in self.judged], prices
        )
        return self.outcome.changed

    def _enact(self) -> None:
        """Once the answers that carried the judgements are all posted: if they were due, each MG's `enact`;
        none pending after."""
        if self.due:
            for i, own in enumerate(self.own_rules):
                enact(own, i, self.judged[i], self.near, self.outcome)
        self.judged = [None] * len(self.mgs)
        self.due = self.near = False
        self.outcome = Outcome((), False)

    def judge_rules(self) -> bool:
        """Every MG judges its own floors and caps at the price found, on the chain's tick, and the public
        `Coordination` lets one asking MG per interval and side back, all in force at once (what `run` does
        with the timing of `judge_own`, `due` and `enact`). True if anything changed."""
        prices = self.general(self.prices)
        judged = [own.judge(prices, self.general(self.q[i])) for i, own in enumerate(self.own_rules)]
        outcome = self.coordination.settle([j.public for j in judged], prices)
        for i, own in enumerate(self.own_rules):
            enact(own, i, judged[i], False, outcome)
        return outcome.changed

    def fees(self, i: int) -> Fees:
        """MG i's rule fees as they stand (dropped ones zero); a clean-only buyer's cap at cap + premium on a
        clean session; the exchange fee on both sides (exchange_fee.with_fee)."""
        sell, buy = self.own_rules[i].fees()
        if i in self.clean_buy_kw:
            buy = clean_cap_fees(self.mgs[i], buy)
        return with_fee((sell, buy), self.cfg.exchange_fee, self.intervals)
