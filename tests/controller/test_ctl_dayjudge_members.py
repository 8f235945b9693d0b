"""An owner-rules day run by members that see each other only through the chain: each holds its own MG
(model, `OwnRules`, tariff spread, unrounded answer) and computes everything public from the chain (the
positions, the verdicts' count, the judgements, the rules of `market_state.rules_for`), calling the same
functions an MGMC would (dayexchange `Book`, `answer`, `anchor`, `settled`; dayjudge `judge_own`, `due`,
`Coordination.settle`, `enact`). It ends on `allocate`'s prices and positions, with the very same exchange
transactions as `allocate` on the chain venue: the rules' timing needs nothing private from anyone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from test_ctl_dayjudge_chain import Bounded, ban_day

from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.dayahead import allocate, starting_prices
from peergrid_controller.dayexchange import Book, DayAheadConfig, anchor, answer, nano, settled
from peergrid_controller.dayjudge import (
    Coordination,
    Judgement,
    Outcome,
    OwnJudgement,
    OwnRules,
    binds,
    demand,
    due,
    enact,
    judge_own,
)
from peergrid_controller.daymodel import DayModel
from peergrid_controller.dayrounds import Exchange
from peergrid_controller.market import Rejected
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.synth import synthetic_scenario
from peergrid_ledger.contracts import exchange as contract
from peergrid_ledger.contracts.market_state import rules_for


@dataclass
class Member:
    """One MG's private side: nothing here is read by anyone else."""

    mg: Microgrid
    model: DayModel
    rules: OwnRules
    spread: list[float]
    own: tuple[float, ...] = ()
    verdict: bool = False
    mine: OwnJudgement | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def rules_day() -> Scenario:
    """A small owner-rules day without gensets (one phase, as on the edge without `dayahead_gensets`)."""
    scenario = synthetic_scenario(4, 8, seed=0, interval_hours=3.0, rules=True)
    return replace(scenario, microgrids=tuple(replace(mg, gensets=()) for mg in scenario.microgrids))


def run_members(
    scenario: Scenario, cfg: DayAheadConfig, models: Sequence[Any] = (), prices: Sequence[float] = ()
) -> ChainVenue:
    venue = ChainVenue(scenario)
    chain = venue.exchange
    dt, n, size = scenario.interval_hours, scenario.intervals, len(scenario.microgrids)
    members = [
        Member(
            mg,
            models[i] if models else DayModel(mg, dt),
            OwnRules(mg, dt, n, cfg.fee_margin, cfg.resolution_kwh),
            [r - f for r, f in zip(mg.tariff.retail, mg.tariff.feed_in, strict=True)],
        )
        for i, mg in enumerate(scenario.microgrids)
    ]
    names = [m.mg.name for m in members]
    keys = [venue.keys[name].public for name in names]
    # public, from the chain: the rules every member set, the book of positions and prices
    public = Coordination(
        lambda i, t, side: demand(rules_for(venue.chain.view, keys[i], t), side),
        n,
        ruled=any(binds(rules_for(venue.chain.view, key, t)) for key in keys for t in range(n)),
    )
    book = Book(cfg, [nano(p) for p in prices or starting_prices(scenario)], size)
    book.final_phase = True  # one phase, no decision after it (as `allocate` and the edge set it)
    assert not isinstance(chain.open(names, book.prices, book.rho), Rejected)

    def posted(k: int) -> list[tuple[int, ...]]:
        """Every member's positions at k, read from the chain (the session's current iteration)."""
        out = []
        for key in keys:
            record = contract.position(venue.chain.view, chain.session, key)
            assert record is not None and record["iteration"] == k
            out.append(tuple(record["positions"]))
        return out

    for m in members:  # iteration 0: first responses
        m.own, q = answer(m.model, book.price_floats, m.rules.bounds(), m.rules.fees())
        assert not isinstance(chain.position(m.mg.name, 0, q), Rejected)
    book.take(posted(0))
    assert not isinstance(chain.step(0, book.rho), Rejected)
    k, kwh, near, judging = 0, False, False, False
    while True:
        # every member answers k + 1 with its verdict on k and its judgement on k (if it has one)
        if not (kwh and not judging):
            for m in members:
                m.own, q = answer(
                    m.model,
                    book.price_floats,
                    m.rules.bounds(),
                    m.rules.fees(),
                    (book.rho_float, anchor(m.own, book.mean), cfg.resolution_kwh),
                )
                mine = m.mine.public if m.mine is not None and not m.mine.public.empty else None
                says = m.verdict and k + 1 >= 2
                assert not isinstance(
                    chain.position(m.mg.name, k + 1, q, settled=says, judged=mine), Rejected
                )
        # after the posts of k + 1, from the chain: were the verdicts on k all settled, and the judgements?
        count = chain.settled(k + 1)
        assert not isinstance(count, Rejected)
        all_settled = cfg.value_per_kwh > 0 and count == size
        outcome = Outcome((), False)
        if due(judging, near, all_settled):
            judged = chain.judgements(k + 1)
            assert not isinstance(judged, Rejected)
            outcome = public.settle([j if j is not None else Judgement() for j in judged], book.prices)
            for i, m in enumerate(members):
                enact(m.rules, i, m.mine, near, outcome)
        if (kwh or all_settled) and not outcome.changed:
            assert not isinstance(chain.close(k + 1), Rejected)
            return venue
        # the step of k + 1, then each member's verdict and judgement on it
        k += 1
        kwh, moves = book.advance(posted(k), cfg.tolerance_kwh)
        assert not isinstance(chain.step(k, book.rho), Rejected)
        ratios = book.imbalance_ratios()
        near, judging = book.rules_near(), public.judging(book.prices)
        for i, m in enumerate(members):
            m.verdict = cfg.value_per_kwh > 0 and settled(
                m.spread, moves[i], book.q[i], ratios, cfg.value_per_kwh, cfg.tolerance_kwh, size / 2000,
                cfg.value_floor_kwh if book.final_phase else 1.0,
            )  # fmt: skip
            m.mine = judge_own(m.rules, book.prices, book.q[i], near=near, settled=m.verdict, judging=judging)
        assert k < cfg.max_iterations


def exchange_txs(venue: ChainVenue) -> list[tuple[str, str, Any]]:
    chain = venue.chain
    return [
        (tx.kind, venue.names[tx.sender], tx.body)
        for height in range(1, chain.height + 1)
        for tx in chain.block(height).txs
        if tx.kind.startswith("exchange.")
    ]


def test_members_that_see_each_other_only_through_the_chain_end_on_allocates_day() -> None:
    scenario = rules_day()
    for cfg in (DayAheadConfig(), DayAheadConfig(value_per_kwh=0.0)):  # the value stop, the kWh stops
        alone = run_members(scenario, cfg)
        coordinated = ChainVenue(scenario)
        allocation = allocate(scenario, cfg, recorder=coordinated.exchange)
        # the very same transactions: positions with their verdicts and judgements, steps, the close
        txs = exchange_txs(alone)
        assert txs == exchange_txs(coordinated)
        assert any("judged" in body for kind, _, body in txs if kind == "exchange.position")
        session = contract.session(alone.chain.view, alone.exchange.session)
        assert session is not None and session["closed"]
        assert tuple(round(p / 10**9, 9) for p in session["prices"]) == allocation.prices
        for name, key in ((mg.name, alone.keys[mg.name].public) for mg in scenario.microgrids):
            last = contract.stepped(alone.chain.view, alone.exchange.session, key)
            assert last is not None
            assert tuple(round(v / 1000, 9) for v in last["positions"]) == allocation.positions[name]


def test_a_ban_and_its_let_back_run_alike_by_members_alone_and_by_the_coordinator() -> None:
    # the seller's floor of 0 forbids its sale below 0: banned, the buyers' excess lifts the price across
    # the floor, it asks back, the coordination lets it back (two rounds after its ask), the day converges
    scenario = ban_day()
    cfg = DayAheadConfig(value_per_kwh=0.0)
    opening = [-0.01, -0.005]

    def models() -> list[Bounded]:
        return [Bounded(1.0, 2), Bounded(-0.5, 2), Bounded(-0.5, 2)]

    alone = run_members(scenario, cfg, models(), opening)
    coordinated = ChainVenue(scenario)
    ex = Exchange(scenario, cfg, opening, coordinated.exchange)
    mine = models()
    ex.open()
    ex.first_responses(mine)  # type: ignore[arg-type]
    assert ex.run(mine, cfg.max_iterations, cfg.tolerance_kwh)  # type: ignore[arg-type]
    ex.close(mine)  # type: ignore[arg-type]
    txs = exchange_txs(alone)
    assert txs == exchange_txs(coordinated)
    judged = [body["judged"] for kind, _, body in txs if kind == "exchange.position" and "judged" in body]
    assert [j["banned"] for j in judged if j["banned"]] == [[0, 2]] and any(j["asks"] for j in judged)
    assert ex.coordination.returned == {(0, 0, "sell"), (0, 1, "sell")}
