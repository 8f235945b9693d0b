"""Owner-rules days on the chain venue: every MG's judgement of its own rules goes on the chain with its next
position (`exchange.position`'s `judged`), the allocation is the memory venue's to the nano and the Wh, the
public coordination (who is let back) is computable from the chain alone, and a chain that records another
judgement, or one the contract refuses, stops the allocation with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ctl_dayahead_chain import Passing

from peergrid_controller.chain_venue import ChainExchange, ChainVenue
from peergrid_controller.dayahead import allocate
from peergrid_controller.dayexchange import DayAheadConfig, DayAheadError
from peergrid_controller.dayjudge import SIDES, Cell, Coordination, Judgement, binds, decode, demand, encode
from peergrid_controller.dayrounds import Exchange
from peergrid_controller.market import Rejected, Verdict
from peergrid_controller.model import ContractRules, Scenario
from peergrid_controller.synth import synthetic_scenario
from peergrid_ledger.contracts import exchange as contract
from peergrid_ledger.contracts.market_state import rules_for


def judged_posts(venue: ChainVenue) -> list[tuple[int, str, dict[str, Any]]]:
    """(iteration, MG, judged) of every position in the venue's sealed blocks that carries a judgement."""
    chain = venue.chain
    return [
        (tx.body["iteration"], venue.names[tx.sender], tx.body["judged"])
        for height in range(1, chain.height + 1)
        for tx in chain.block(height).txs
        if tx.kind == "exchange.position" and "judged" in tx.body
    ]


def judged_at(venue: ChainVenue) -> dict[int, list[int]]:
    """The prices (nano/kWh) each iteration's posts answered, and so judged at, replayed from the venue's
    sealed blocks alone: the opening prices, then `next_prices` of each stepped iteration's posts."""
    chain, out = venue.chain, {}
    prices: list[int] = []
    sums: list[int] = []
    rho = size = 0
    for tx in (tx for height in range(1, chain.height + 1) for tx in chain.block(height).txs):
        if tx.kind == "exchange.open":
            prices, rho, size = list(tx.body["prices"]), tx.body["rho"], len(tx.body["members"])
            sums = [0] * len(prices)
        elif tx.kind == "exchange.position":
            out[tx.body["iteration"]] = prices
            sums = [s + q for s, q in zip(sums, tx.body["positions"], strict=True)]
        elif tx.kind == "exchange.step":
            if tx.body["iteration"] > 0:
                prices = list(contract.next_prices(prices, sums, size, rho))
            rho, sums = tx.body["rho"], [0] * len(prices)
    return out


def posts_of(venue: ChainVenue, name: str) -> dict[int, list[int]]:
    """`name`'s positions by iteration, from the venue's sealed blocks."""
    chain = venue.chain
    return {
        tx.body["iteration"]: tx.body["positions"]
        for height in range(1, chain.height + 1)
        for tx in chain.block(height).txs
        if tx.kind == "exchange.position" and venue.names[tx.sender] == name
    }


@pytest.mark.parametrize(("n", "k", "seed", "dt"), [(4, 8, 0, 3.0), (5, 12, 1, 2.0), (8, 12, 2, 2.0)])
def test_a_rules_day_on_the_chain_is_the_memory_allocation_with_every_judgement_on_the_chain(
    n: int, k: int, seed: int, dt: float
) -> None:
    scenario = synthetic_scenario(n, k, seed=seed, interval_hours=dt, rules=True)
    memory = allocate(scenario)
    venue = ChainVenue(scenario)
    chain = allocate(scenario, recorder=venue.exchange)
    assert chain.prices == memory.prices and chain.positions == memory.positions
    assert (chain.stop, chain.iterations) == (memory.stop, memory.iterations + 1)  # the final round
    posts = judged_posts(venue)
    assert posts, "these days drop fees: their judgements are on the chain"
    assert all(iteration >= 2 and not decode(body).empty for iteration, _, body in posts)
    session = contract.session(venue.chain.view, venue.exchange.session)
    assert session is not None and session["closed"]


def test_a_rules_day_stopped_by_kwh_on_the_chain_has_a_final_round_with_the_judgements() -> None:
    # without the value stop the judgements on the last iteration still go on the chain (nobody could
    # otherwise tell that they changed nothing), with the next positions, abandoned by the close
    scenario = synthetic_scenario(4, 8, seed=0, interval_hours=3.0, rules=True)
    cfg = DayAheadConfig(value_per_kwh=0.0)
    memory = allocate(scenario, cfg)
    venue = ChainVenue(scenario)
    chain = allocate(scenario, cfg, recorder=venue.exchange)
    assert chain.stop == memory.stop == "kwh"
    assert chain.prices == memory.prices and chain.positions == memory.positions
    assert chain.iterations == memory.iterations + 1
    session = contract.session(venue.chain.view, venue.exchange.session)
    assert session is not None and session["closed"] and session["posted"] == len(scenario.microgrids)
    assert session["iteration"] == memory.iterations + 1


class Bounded:
    """A stand-in MG model that answers the same net export (kWh) every interval, within its bounds."""

    def __init__(self, kwh: float, n: int) -> None:
        self.kwh, self.n = kwh, n
        self.lo: Sequence[float] = [-1e9] * n
        self.hi: Sequence[float] = [1e9] * n

    def trade(self, prices: object, lo: Sequence[float], hi: Sequence[float], *fees: object) -> None:
        self.lo, self.hi = lo, hi

    def proximal(self, *args: object, **kwargs: object) -> None: ...

    def solve(self) -> tuple[float, ...]:
        # the bounds are kW over 12-h intervals: a bound of 0 is 0 kWh, and none binds otherwise here
        return tuple(
            min(max(self.kwh, lo * 12.0), hi * 12.0) for lo, hi in zip(self.lo, self.hi, strict=True)
        )


def ban_day() -> Scenario:
    """Three MGs, two 12-h intervals, a floor of 0 (under every feed-in: no fee, a ban judges it) and a cap
    above retail; the first sells 1 kWh whatever the price, the others buy 2."""
    scenario = synthetic_scenario(3, 2, seed=0, interval_hours=12.0)
    rules = ContractRules(floor_price=0.0, cap_price=0.5)
    return replace(scenario, microgrids=tuple(replace(mg, rules=rules) for mg in scenario.microgrids))


def run_ban_day(recorder: Any = None) -> tuple[Exchange, list[Bounded]]:
    scenario = ban_day()
    # opening below 0: the seller's floor forbids its sale; the buyers' excess then lifts the price across it
    ex = Exchange(scenario, DayAheadConfig(value_per_kwh=0.0), [-0.01, -0.005], recorder)
    models = [Bounded(1.0, 2), Bounded(-1.5, 2), Bounded(-0.5, 2)]
    ex.open()
    ex.first_responses(models)  # type: ignore[arg-type]
    ex.run(models, 16, 0.01)  # type: ignore[arg-type]
    ex.close(models)  # type: ignore[arg-type]
    return ex, models


def test_a_ban_and_its_let_back_go_through_the_chain_with_the_let_back_two_rounds_later() -> None:
    scenario = ban_day()
    venue = ChainVenue(scenario)
    ex, _ = run_ban_day(venue.exchange)
    memory, _ = run_ban_day()
    assert ex.prices == memory.prices and ex.q_wh == memory.q_wh
    seller = scenario.microgrids[0].name
    posts = judged_posts(venue)
    bans = [(k, body) for k, name, body in posts if name == seller and body["banned"]]
    asks = [(k, body) for k, name, body in posts if name == seller and body["asks"]]
    assert [body["banned"] for _, body in bans] == [[0, 2]]  # both its sales, at once
    assert asks, "the price crossed the floor: it asks its sales back"
    banned_at, asked_at = bans[0][0], asks[0][0]
    mine = posts_of(venue, seller)
    # banned: its own fees and bans are in force for the answer it posts the ban with
    assert mine[banned_at - 1] == [1000, 1000] and mine[banned_at] == [0, 0]
    # asked back with a post of k: the coordination lets it back from every post of k, so from k + 1 on
    first_back = min(k for k, q in mine.items() if k > banned_at and q != [0, 0])
    assert first_back == asked_at + 1
    assert ex.own_rules[0].banned == set() and ex.coordination.returned == {(0, 0, "sell"), (0, 1, "sell")}


def test_the_let_backs_are_computable_from_the_chain_alone() -> None:
    """Anyone holding the chain: the members' rules (`market_state.rules_for`) and the judgements posted
    give the same let-backs as the coordinator's (here every judgement is due: near convergence)."""
    scenario = ban_day()
    venue = ChainVenue(scenario)
    ex, _ = run_ban_day(venue.exchange)
    view = venue.chain.view
    members = [venue.keys[mg.name].public for mg in scenario.microgrids]

    public = Coordination(lambda i, t, side: demand(rules_for(view, members[i], t), side), 2)
    assert any(binds(rules_for(view, m, t)) for m in members for t in range(2))  # a cap: judged
    by_iteration: dict[int, list[Judgement]] = {}
    order = {mg.name: i for i, mg in enumerate(scenario.microgrids)}
    for k, name, body in judged_posts(venue):
        by_iteration.setdefault(k, [Judgement()] * len(members))[order[name]] = decode(body)
    prices = judged_at(venue)
    outcomes = [public.settle(js, prices[k]) for k, js in sorted(by_iteration.items())]
    assert not any(o.ignored for o in outcomes)  # every ban and ask is what the member's rule says there
    let_back = [o.let_back for o in outcomes]
    # the two intervals' prices cross the floor at different iterations: one let-back each
    assert sorted(x for lb in let_back for x in lb) == [(0, (0, "sell")), (0, (1, "sell"))]
    assert public.returned == ex.coordination.returned and public.closed == ex.coordination.closed


class Forging(Passing):
    """The chain's recorder, but reading one MG's judgement back with a ban it never posted."""

    def __init__(self, inner: ChainExchange, member: int) -> None:
        super().__init__(inner)
        self.member = member

    def judgements(self, iteration: int) -> Sequence[Judgement | None] | Rejected:
        recorded = self.inner.judgements(iteration)
        if isinstance(recorded, Rejected) or all(j is None for j in recorded):
            return recorded
        forged = list(recorded)
        forged[self.member] = Judgement(banned=((0, "buy"),))
        return forged


def test_a_chain_that_records_another_judgement_stops_the_allocation() -> None:
    scenario = synthetic_scenario(4, 8, seed=0, interval_hours=3.0, rules=True)
    venue = ChainVenue(scenario)
    with pytest.raises(DayAheadError, match=r"records .*'s judgement at iteration \d+ as .* where it posted"):
        allocate(scenario, recorder=Forging(venue.exchange, 2))
    session = contract.session(venue.chain.view, venue.exchange.session)
    assert session is not None and session["closed"]  # closed where it stood, not left open


class IllFormed(Passing):
    """The chain's recorder, but one MG's judgement posted with a side both banned and asked back."""

    def position(
        self,
        name: str,
        iteration: int,
        positions_wh: Sequence[int],
        settled: bool = False,
        judged: Judgement | None = None,
    ) -> Verdict:
        if judged is not None:
            judged = Judgement(banned=((0, "sell"),), asks=((0, "sell"),))
        return self.inner.position(name, iteration, positions_wh, settled=settled, judged=judged)


def test_a_judgement_the_contract_refuses_stops_the_allocation_with_the_contracts_reason() -> None:
    scenario = synthetic_scenario(4, 8, seed=0, interval_hours=3.0, rules=True)
    venue = ChainVenue(scenario)
    with pytest.raises(
        DayAheadError, match=r"refused .*'s position at iteration \d+: .*both banned and asked"
    ):
        allocate(scenario, recorder=IllFormed(venue.exchange))


cells = st.lists(st.tuples(st.integers(0, 7), st.sampled_from(SIDES)), unique=True, max_size=16)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells, cells, st.booleans())
def test_any_judgement_goes_through_the_chain_and_back_unchanged(
    banned: list[Cell], asks: list[Cell], fees: bool
) -> None:
    asks = [cell for cell in asks if cell not in banned]
    judgement = Judgement(tuple(banned), tuple(asks), fees)
    scenario = synthetic_scenario(3, 8, seed=0, interval_hours=3.0)
    venue = ChainVenue(scenario)
    names = [mg.name for mg in scenario.microgrids]
    recorder = venue.exchange
    assert not isinstance(recorder.open(names, [50_000_000] * 8, 5_000_000), Rejected)
    for k in range(2):
        for name in names:
            assert not isinstance(recorder.position(name, k, [0] * 8), Rejected)
        assert not isinstance(recorder.step(k, 5_000_000), Rejected)
    verdict = recorder.position(names[1], 2, [0] * 8, judged=judgement)
    if judgement.empty:  # nothing to say is posted as none: the contract refuses an empty one
        assert isinstance(verdict, Rejected) and "empty judgement" in verdict.reason
        return
    assert not isinstance(verdict, Rejected)
    recorded = recorder.judgements(2)
    assert not isinstance(recorded, Rejected)
    assert recorded[0] is None and recorded[2] is None
    back = recorded[1]
    assert back is not None and sorted(back.banned) == sorted(banned) and sorted(back.asks) == sorted(asks)
    assert back.fees is fees and encode(back) == encode(judgement)
