"""The rounds of one MGMC's day-ahead session and their stop rules: post, step (or wait for the step), judge.

Promises: from this MGMC's post of an iteration on (`play_phases`), every round goes as `dayrounds.Exchange` runs
it with every MG in one process: the coordinator waits for every member's post, settles the judgements
they carry and closes at a stop, else steps with ρ from the public residual balancing; every member waits
for that step or close in a final block, recomputes the step from the positions the chain holds as the step
priced them (`dayexchange.Book`), checks the chain's prices and ρ against its own (`SessionView.check`: a
difference stops it with an error naming both), judges it and answers from its own DayModel
(`dayexchange.answer`, its anchor its own unrounded answer). A coordinator that closes or steps where this
MGMC's own computation says otherwise fails the stage, naming it.
The value stop (the default, as in `allocate`): each member judges every stepped iteration itself
(`dayexchange.settled`: the book's public moves and imbalance ratios, its own tariff spread and position)
and posts its verdict with its next position (`exchange.position`'s `settled`); once the chain counts every
member's post of k settled (`exchange.settled_count`) the coordinator closes at k without stepping it (the
contract's `exchange_closed` says `settled`), so the result is iteration k − 1's, `allocate`'s to the nano
and the Wh. How it decides without private data: `allocate` uses the value stop when every DSO connection
is unlimited (rules days too); an MGMC only knows
its own connection, so one whose connection is limited (or whose `value_per_kwh` is 0) never says settled,
and no value stop happens while it is a member: the kWh stops then, as `allocate`'s.
Gensets: with `phases` (some member has one; not on the chain, so every member is configured alike) the
session runs `allocate`'s three phases: ADMM on the LP relaxation to its own stop, each genset MG's
commitment MILP alone at the prices found, ADMM with commitments fixed; decided once (`recommits` 1). The
value stop ends the relaxed phase one iteration later than `allocate` does: a member learns the others'
verdicts on k only from their posts of k + 1, which it has answered relaxed, so the coordinator steps k + 1
and every member, reading the stepped posts' `settled` (public transactions), starts the commitment there;
the verdicts on the last relaxed iteration go with the first committed posts, as in `allocate`, and never
close the session. So a genset day with the value stop is not `allocate`'s to the Wh (with `value_per_kwh`
0 it is).
A clean session (`dayahead_clean`): the book is both books' (2n), and where some member declared itself a
clean seller (public, in its first post) the session runs the same phases: ADMM with each seller's switch
relaxed, each seller's switch decided alone at the prices found (`switch`, `allocate`'s `_switch`), then
`clean_decisions` − 1 times (by count, whatever changed: public) a run with the switches fixed that ends as the
relaxed phase does and each seller's switch decided again at its prices, and last ADMM with the switches fixed
(the kWh stops: `allocate`'s to the Wh; the value stop as for gensets, above). How many re-decision runs are
done is in this MGMC's checkpoint (`redecided`), so a restart resumes in the run it was in.
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
Each function acts on the agent's side of the session (its book, anchor, verdict, phase, iteration) and
goes through the agent's seams (`_post`, `_bounds`, `_stop_at`, `_judge`, `_finish`), so that a subclass
overriding one is obeyed (`_bounds`: its range closed to purchases while it owes, `dayahead_agent`).
Never reads another MG's private data; never blocks the loop longer than one MG solve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from peergrid_controller.cleanbook import decide_switch
from peergrid_controller.dayahead import model_for
from peergrid_controller.dayexchange import anchor, answer, settled
from peergrid_controller.daymodel import DayModel
from peergrid_controller.exchange_fee import loses_to_dso, unwinding_worth
from peergrid_edge.dayahead_clean import declares_clean, phased, redecisions, side
from peergrid_edge.exchange_io import SessionFailed
from peergrid_ledger.contracts.exchange import MAX_ITERATIONS

if TYPE_CHECKING:
    from peergrid_edge.dayahead_agent import DayAheadAgent


async def play_phases(agent: DayAheadAgent, model: DayModel, own: tuple[float, ...], k: int | None) -> str:
    """The session on from this MGMC's post of iteration k (None: from its next answer) to the stop.
    With the phases: 1. on the LP relaxation of genset on/off, to its own stop; 2. each genset MG
    commits alone (its MILP at the prices found, its proximal term at commit_weight·ρ); 3. on with
    commitments fixed."""
    cfg, book = agent.cfg, agent.book
    assert book is not None
    # a clean seller's switch runs `allocate`'s phases: whether anyone declared itself one is public once
    # every first response is in (from its post of iteration 0, before any stop is judged)
    if agent.clean and k == 0 and not agent.relaxed and phased(cfg, await agent.view.declarations()):
        agent.relaxed, agent.final_from = True, MAX_ITERATIONS + 1
    if agent.relaxed:
        own = await iterate(agent, model, own, cfg.relaxed_iterations, cfg.relaxed_tolerance_kwh, True, k)
        k = None
        if agent.mg.gensets:
            model = commit(agent, own)
        elif agent.clean and declares_clean(agent.mg) and cfg.clean_side == "fixed":
            model = switch(agent, own)
        # the judgement on the last relaxed step goes with the first committed posts, as in `allocate`
        agent.relaxed, agent.final_from, agent.kwh = False, book.iterations + 1, False
    # a day where some member's floor or cap binds keeps the tight stop, as `allocate`'s
    tolerance = cfg.tolerance_kwh if agent.rules.ruled else cfg.free_tolerance_kwh
    # each clean seller decides its switch again at the prices found, clean_decisions - 1 times by count
    # (public), each after a run that ends as the relaxed phase does (after its stop's step, never closing)
    # (how many are done is in its checkpoint: a restarted MGMC resumes in the run it was in)
    again = redecisions(cfg, await agent.view.declarations()) if agent.clean else 0
    if agent.redecided > again:
        raise SessionFailed(
            f"its checkpoint says {agent.redecided} re-decision runs done of session {agent.session!r}, "
            f"which has {again}: not resumed"
        )
    while agent.redecided < again:
        own = await iterate(agent, model, own, cfg.max_iterations, tolerance, True, k)
        k = None
        if declares_clean(agent.mg) and cfg.clean_side == "fixed":
            model = switch(agent, own)
        agent.redecided += 1
        agent.final_from, agent.kwh = book.iterations + 1, False
    book.final_phase = True  # no decision follows: the value stop's floor applies, as in `allocate`
    await iterate(agent, model, own, cfg.max_iterations, tolerance, first=k)
    return await agent._finish()


async def iterate(
    agent: DayAheadAgent,
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
    book = agent.book
    assert book is not None
    agent.stop = "cap"
    while True:
        if first is not None:  # posted already (the first responses, or before a restart)
            k, first = first, None
        else:
            if agent.kwh and not agent.rules.judging:
                agent.stop = "kwh"  # nothing judged on it: closed without a final round
                break
            if book.iterations >= until and not agent.kwh:
                break
            agent.view.in_time(agent.iteration)
            if not agent.view.open_now():
                raise SessionFailed(
                    f"the coordinator closed the session at iteration {agent.iteration} before the stop"
                    + agent.view.past_deadline()
                )
            k = book.iterations + 1
            proximal = (book.rho_float, anchor(own, book.mean), agent.cfg.resolution_kwh)
            bounds, fees = agent._bounds(), agent.rules.fees()
            agent.own, posted = answer(model, book.price_floats, bounds, fees, proximal)
            own = agent.own
            margin(agent, model)
            await agent._post(k, posted, says_settled=agent.values and k >= 2 and agent.verdict)
            if agent.posted != posted:  # its earlier process's post of k landed instead: that one is priced
                own = tuple(q / 1000 for q in agent.posted)
        stop = await play_round(agent, k, tolerance, until, relaxed)
        if stop:  # closed at k, unstepped
            agent.stop = stop
            break
        if relaxed and agent.kwh:
            agent.stop = "kwh"
            break
        if relaxed and agent.view.all_settled(k) and not agent.rules.last.changed:
            agent.stop = "value"
            break
    return own


def commit(agent: DayAheadAgent, own: tuple[float, ...]) -> DayModel:
    """Genset on/off decided by this MG alone at the prices found (`allocate`'s step 2, once)."""
    book, cfg = agent.book, agent.cfg
    assert book is not None
    fresh = model_for(agent.mg, agent.dt, agent.clean, side(cfg))
    fresh.trade(book.price_floats, *agent._bounds(), *agent.rules.fees())
    at = anchor(own, book.mean)
    fresh.proximal(
        book.price_floats, cfg.commit_weight * book.rho_float, at, cfg.resolution_kwh, recommit=True
    )
    fresh.solve()
    agent.commitment = tuple(tuple(bool(on) for on in row) for row in fresh.commitment())
    return model_for(agent.mg, agent.dt, agent.clean, side(cfg), commitment=agent.commitment)


def switch(agent: DayAheadAgent, own: tuple[float, ...]) -> DayModel:
    """A clean seller's switch decided alone at the prices found (`allocate`'s `_switch`: after the relaxed
    phase and after each re-decision run)."""
    book = agent.book
    assert book is not None
    bounds, fees = agent._bounds(), agent.rules.fees()
    cfg = agent.cfg
    agent.switch, model = decide_switch(
        agent.mg, agent.dt, book.price_floats, book.rho_float, bounds, fees, anchor(own, book.mean),
        cfg.commit_weight, cfg.resolution_kwh,
    )  # fmt: skip
    return model


async def play_round(agent: DayAheadAgent, k: int, tolerance: float, until: int, relaxed: bool) -> str:
    """Iteration k once this MGMC posted it: the coordinator waits for every member's post, settles the
    judgements they carry (`_stop_at`) and closes at a stop, else steps with ρ from the public balancing;
    every member waits for that step or close in a final block and computes the same, so a coordinator
    that closes or steps otherwise fails the stage with the reason. Each computes the step itself from the
    posted positions, checks the chain's prices and ρ (`SessionView.check`) and judges it (`_judge`). The stop
    ("kwh", "value", "cap") when the session closes at k, else "" (stepped; `kwh` says whether the step
    was the kWh stop within `tolerance`)."""
    book = agent.book
    assert book is not None

    def public() -> None:
        positions = agent.view.positions(k)
        if k == 0:  # the first responses move no price
            book.take(positions)
            agent.kwh = False
            return
        # what its verdict values its move by with a fee: the prices it answered at, its position before
        agent.answered = (tuple(book.price_floats), tuple(book.q[agent.members.index(agent.key.public)]))
        agent.kwh, moves = book.advance(positions, tolerance)
        agent._judge(moves, tolerance)

    if agent.is_coordinator and agent.view.iteration_now() == k:  # (resumed after its step: as a member)
        await agent.view.all_posted(k)
        stop = agent._stop_at(k, until, relaxed)
        if stop:
            return stop
        public()
        body = {"session": agent.session, "iteration": k, "rho": book.rho}
        await agent.submitter.submit(
            "exchange.step", body, lambda: agent.view.iteration_now() > k, agent.rejoined
        )
        await await_step(agent, k)
    else:
        stepped = await await_step(agent, k)
        record = agent.view.record()
        assert record is not None
        # a close before every post of k was in is no stop (a member silent, the deadline)
        complete = stepped or record["posted"] == len(agent.members)
        stop = agent._stop_at(k, until, relaxed) if complete else ""
        if not stepped:
            if stop:
                return stop
            raise SessionFailed(
                f"the coordinator closed the session at iteration {k} instead of stepping it "
                f"(its posts abandoned): the stage failed{agent.view.past_deadline()}"
            )
        if stop:
            raise SessionFailed(
                f"the coordinator stepped iteration {k} where this MGMC's coordination of the posts "
                f"says the session stops there ({stop} stop): not followed"
            )
        public()
    agent.view.check(book)
    return ""


async def await_step(agent: DayAheadAgent, k: int) -> bool:
    """Wait until iteration k is stepped in a final block (`SessionView.stepped`), this MGMC then at the
    session's iteration; False if the coordinator closed at k instead."""
    now = await agent.view.stepped(k)
    if now == k:  # closed instead of stepped
        return False
    agent.iteration = now
    return True


def stop_at(agent: DayAheadAgent, k: int, until: int, relaxed: bool) -> str:
    """Every post of k is in: the judgements on k - 1 they carry settled (`SessionRules.settle`, once per
    round, in order), and whether the session closes at k: the kWh stop at k - 1 or every verdict on it
    settled (in the final phase), and nothing the judgements changed; at the cap a final round that
    changed something closes too, as `allocate` stops there. "" to step k."""
    all_settled = agent.view.all_settled(k)
    record = agent.view.record()
    assert record is not None
    outcome = agent.rules.settle(agent.view.posts(k, record["members"]), all_settled)
    if relaxed:  # the relaxed phase ends after its step (`iterate`), never closing the session
        return ""
    if not outcome.changed and (agent.kwh or (all_settled and closes_by_value(agent, k))):
        return "kwh" if agent.kwh else "value"
    if agent.kwh and agent.book is not None and agent.book.iterations >= until:
        return "cap"
    return ""


def judge(agent: DayAheadAgent, moves: list[list[float]], tolerance: float) -> None:
    """This MG's verdict on the iteration just stepped (`dayexchange.settled`: the public moves and
    imbalance ratios of the book, its own spread and position; or it alone within the kWh stop's
    `tolerance`, as `Exchange.step` judges it; never while a fee's drift holds the book, ρ below the config's
    or the imbalance over half what it was when ρ first halved, `Book.lowered`), and its judgement of its own
    rules there (`SessionRules.judge`), to post with its next position."""
    book = agent.book
    assert book is not None
    me = agent.members.index(agent.key.public)
    if not agent.values:
        agent.verdict = False
    else:
        ratios = book.imbalance_ratios()
        rounding = len(book.q) / 2000  # half a Wh per member: what posting whole Wh alone makes
        cfg = agent.cfg
        agent.verdict = settled(
            agent.spread, moves[me], book.q[me], ratios, cfg.value_per_kwh, tolerance, rounding,
            cfg.value_floor_kwh if book.final_phase else 1.0, worth(agent, book.q[me]),
        ) and not (
            # with a fee, never while its position loses against the DSO at the closing ticks, as
            # `Exchange.step` (`Margins.loses`): in the last phase, not on a clean session
            book.final_phase and agent.fee and not agent.clean
            and loses_to_dso(agent.mg.tariff, book.q[me], book.prices, agent.fee)
        ) and not book.lowered  # fmt: skip
    agent.rules.judge(book, me, agent.verdict)


def margin(agent: DayAheadAgent, model: DayModel) -> None:
    """After its answer to a step, with an exchange fee (not on a clean session, as `dayrounds.Exchange`'s
    `Margins`): this MG's own marginal values at it, beside those at its answer to the step before (at its
    first step the same twice, as `Margins.worth` starts)."""
    if agent.fee and not agent.clean:
        now = model.marginal_values()
        agent.margins = (now if agent.margins is None else agent.margins[1], now)


def worth(agent: DayAheadAgent, after: Sequence[float]) -> list[float] | None:
    """What a kWh of this MG's move to `after` (its position as stepped) is worth to it, for its verdict
    (`exchange_fee.unwinding_worth`: a move that only unwinds its position at its own margin); None (its
    spread) without a fee, on a clean session, or where a solve gave no marginal values (a MILP)."""
    margins, answered = agent.margins, agent.answered
    if not agent.fee or agent.clean or margins is None or answered is None or None in margins:
        return None
    before, now = margins
    assert before is not None and now is not None
    prices, position = answered
    return unwinding_worth(agent.spread, (before, now), (position, after), prices, agent.fee)


def closes_by_value(agent: DayAheadAgent, k: int) -> bool:
    """Whether every member's verdict posted with k settled closes the session: it judges k - 1, an
    iteration of the final phase (verdicts on the last relaxed one go with the first committed posts, as
    in `allocate`, and the session goes on)."""
    return k >= 2 and k - 1 >= agent.final_from
