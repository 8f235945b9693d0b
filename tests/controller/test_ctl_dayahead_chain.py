"""Every day-ahead ADMM move is a signed transaction on the MGMC chain (issue #7), the chain's prices are ours,
and the day's forward trades are the ones the exchange contract clears from the closed session.

The allocation posts through `ChainVenue.exchange` (the ledger's exchange contract): iteration 0, every MG's
positions every iteration, a step per iteration, a close; the contract computes the prices itself and the
allocation stops on any difference or refusal rather than follow or drop anything.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid_controller import baselines
from peergrid_controller.chain_venue import ChainExchange, ChainVenue, SealError
from peergrid_controller.cli import main, result_json
from peergrid_controller.dayahead import Allocation, allocate
from peergrid_controller.dayexchange import NANO, DayAheadConfig, DayAheadError, at_stake, settled
from peergrid_controller.dayjudge import Judgement
from peergrid_controller.dayrounds import Exchange
from peergrid_controller.forward import Commitment, ForwardError, clear, commit
from peergrid_controller.market import Accepted, Offer, Rejected, Trade, Verdict, wh
from peergrid_controller.matching import accepted_wh, match
from peergrid_controller.model import Scenario
from peergrid_controller.simrecords import SimulationConfig, SimulationResult
from peergrid_controller.simulate import simulate
from peergrid_controller.synth import synthetic_scenario
from peergrid_controller.venues import chain_venue, exchange_recorder, memory_venue
from peergrid_ledger.contracts import exchange as contract
from peergrid_ledger.contracts import exchange_clearing
from peergrid_ledger.contracts import market as market_contract
from peergrid_ledger.contracts.exchange_clearing import accepted, cleared


def small_day(rules: bool = False) -> Scenario:
    return synthetic_scenario(4, 8, seed=0, interval_hours=3.0, rules=rules)


def moves(venue: ChainVenue) -> Counter[tuple[str, str]]:
    """(kind, signer's MG name) of every exchange transaction in the venue's sealed blocks."""
    chain = venue.chain
    return Counter(
        (tx.kind, venue.names[tx.sender])
        for height in range(1, chain.height + 1)
        for tx in chain.block(height).txs
        if tx.kind.startswith("exchange.")
    )


def on_chain(scenario: Scenario) -> tuple[ChainVenue, Allocation]:
    venue = ChainVenue(scenario)
    return venue, allocate(scenario, recorder=venue.exchange)


def stepped(allocation: Allocation, mgs: int) -> Allocation:
    """A recorder's allocation less its verdict round (after the value stop every MG posted its answer with
    its settled verdict, abandoned by the close: one round and one solve per MG more): the memory venue's."""
    if allocation.stop != "value":
        return allocation
    return replace(allocation, iterations=allocation.iterations - 1, solves=allocation.solves - mgs)


@pytest.mark.parametrize("rules", [False, True])
def test_every_move_of_a_small_day_is_a_signed_transaction_and_the_chain_changes_nothing(rules: bool) -> None:
    # a genset MG among the four: the relaxed phase, the commitment and the phase after all post on one session
    scenario = small_day(rules)
    assert any(mg.gensets for mg in scenario.microgrids)
    venue, allocation = on_chain(scenario)
    # the chain changes nothing but the verdict round after a value stop
    assert stepped(allocation, len(scenario.microgrids)) == allocate(scenario)
    session = contract.session(venue.chain.view, venue.exchange.session)
    assert session is not None and session["closed"]
    # iteration 0: the first responses; a value stop's verdict round is posted, never stepped
    verdicts = allocation.stop == "value"
    assert session["iteration"] == allocation.iterations + 1 - verdicts
    assert session["first_interval"] == 0 and session["intervals"] == scenario.intervals
    assert session["prices"] == tuple(round(p * NANO) for p in allocation.prices)
    names = [mg.name for mg in scenario.microgrids]
    assert session["members"] == [venue.keys[name].public for name in names]
    assert session["coordinator"] == venue.keys[names[0]].public  # the first MG in scenario order
    rounds = allocation.iterations + 1
    first = names[0]
    expected = Counter({("exchange.position", name): rounds for name in names})
    expected += Counter(
        {
            ("exchange.open", first): 1,
            ("exchange.step", first): rounds - verdicts,
            ("exchange.close", first): 1,
        }
    )
    assert moves(venue) == expected
    assert venue.transactions == sum(expected.values())
    assert venue.chain.height == rounds - verdicts + 1  # a block per step, and the close's
    assert not venue.chain.pending
    for name in names:
        last = contract.stepped(venue.chain.view, venue.exchange.session, venue.keys[name].public)
        assert last is not None and last["iteration"] == allocation.iterations - verdicts
        assert last["positions"] == [round(q * 1000) for q in allocation.positions[name]]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 50),
    mgs=st.integers(2, 5),
    rho_nano=st.integers(1_000_001, 20_000_001),
    ceiling=st.integers(1, 40),
    adapt_every=st.sampled_from([1, 2, 10]),
    opening=st.lists(st.integers(20_000_001, 400_000_001), min_size=4, max_size=4),
)
def test_the_chain_accepts_every_step_and_agrees_on_every_price_whatever_the_config(
    seed: int, mgs: int, rho_nano: int, ceiling: int, adapt_every: int, opening: list[int]
) -> None:
    # odd ρ in nanos, halved and doubled as often as every iteration up to an arbitrary cap, and opening
    # prices off the tick: the contract's ρ rule ([ceil(ρ/2), 2ρ]) and its price arithmetic hold throughout
    scenario = synthetic_scenario(mgs, 4, seed=seed, interval_hours=6.0)
    cfg = DayAheadConfig(
        rho=rho_nano / NANO,
        rho_max=ceiling * rho_nano / NANO,
        adapt_every=adapt_every,
        max_iterations=60,
        relaxed_iterations=20,
    )
    prices = [p / NANO for p in opening]
    venue = ChainVenue(scenario)
    allocation = allocate(scenario, cfg, prices, recorder=venue.exchange)
    assert stepped(allocation, mgs) == allocate(scenario, cfg, prices)
    session = contract.session(venue.chain.view, venue.exchange.session)
    assert session is not None and session["closed"]
    assert session["iteration"] == allocation.iterations + 1 - (allocation.stop == "value")
    assert session["prices"] == tuple(round(p * NANO) for p in allocation.prices)


@given(
    low=st.integers(1, 10**9),
    span=st.integers(0, 10**4),
    at=st.floats(0, 1),
    primal=st.floats(0, 100),
    dual=st.floats(0, 100),
)
def test_residual_balancing_keeps_rho_within_the_contracts_rule_and_the_configs_bounds(
    low: int, span: int, at: float, primal: float, dual: float
) -> None:
    # any ρ between the config's and rho_max (odd ones too): the new one lies in [ceil(ρ/2), 2ρ], which the
    # contract's step demands, and between the same bounds; it moves only when one residual dominates
    high = low + span * low // 7
    ex = Exchange(small_day(), DayAheadConfig(rho=low / NANO, rho_max=high / NANO), [0.1] * 8)
    assert (ex.rho_min, ex.rho_max) == (low, high)
    ex.rho = rho = low + round(at * (high - low))
    ex.primal, ex.dual = primal, dual
    ex.balance_rho()
    assert -(-rho // 2) <= ex.rho <= 2 * rho and low <= ex.rho <= high
    if primal > 10 * dual:
        assert ex.rho == min(2 * rho, high)
    elif dual > 10 * primal:
        assert ex.rho == max(-(-rho // 2), low)
    else:
        assert ex.rho == rho


@given(
    low=st.integers(2, 10**9),
    floor_at=st.floats(0, 1),
    at=st.floats(0, 1),
    primal=st.floats(0, 100),
    dual=st.floats(0, 100),
    trading_less=st.booleans(),
)
def test_following_a_fees_drift_keeps_rho_within_the_contracts_rule_and_fee_rho_min_to_the_configs(
    low: int, floor_at: float, at: float, primal: float, dual: float, trading_less: bool
) -> None:
    # at any ρ between fee_rho_min and the config's: doubled back when below the config's with the imbalance
    # dominating, else halved while every MG trades less and the moves are at least the imbalance, always
    # within the contract's [ceil(ρ/2), 2ρ] and [fee_rho_min, the config's]; the balancing after it never
    # raises ρ by more than the contract's doubling
    floor = max(1, round(floor_at * low))
    cfg = DayAheadConfig(
        rho=low / NANO, rho_max=max(low / NANO, 0.5), fee_rho_min=floor / NANO, exchange_fee=10**6
    )
    ex = Exchange(small_day(), cfg, [0.1] * 8)
    assert ex.fee == 10**6 and ex.fee_rho_min == floor
    ex.rho = rho = floor + round(at * (low - floor))
    ex.primal, ex.dual = primal, dual
    ex.follow_fee(trading_less)
    assert -(-rho // 2) <= ex.rho <= 2 * rho and floor <= ex.rho <= low
    if primal > 10 * dual:
        assert ex.rho == min(2 * rho, low)
    elif trading_less and primal <= dual:
        assert ex.rho == max(-(-rho // 2), floor) if rho > floor else ex.rho == rho
    else:
        assert ex.rho == rho
    assert ex.lowered is (ex.rho < low)
    moved = ex.rho
    ex.balance_rho()
    assert -(-moved // 2) <= ex.rho <= 2 * moved


def moving_book(fee: int, unmatched_wh: int = 0, more_wh: int = 0) -> Exchange:
    """Iteration 1 (no balancing due) of a 4-MG book: two MGs trade 0.1 kWh less each, one of them
    `unmatched_wh` less again (the imbalance that leaves), a third `more_wh` more in another interval."""
    ex = Exchange(small_day(), DayAheadConfig(exchange_fee=fee), [0.1] * 8)
    ex.take([(0,) * 8] * 4)
    before = [(100_000, *(0,) * 7), (-100_000, *(0,) * 7), (0, 50_000, *(0,) * 6), (0, -50_000, *(0,) * 6)]
    after = [
        (99_900 - unmatched_wh, *(0,) * 7),
        (-99_900, *(0,) * 7),
        (0, 50_000 + more_wh, *(0,) * 6),
        (0, -50_000 - more_wh, *(0,) * 6),
    ]
    ex.take(before)
    converged, _ = ex.advance(after, 0.01)
    assert not converged and ex.primal == unmatched_wh / 1000 and ex.dual > 0.01
    return ex


@pytest.mark.parametrize("fee", [0, 10**6, 3 * 10**6])
def test_a_balanced_book_whose_positions_move_halves_rho_on_a_fee_day_only(fee: int) -> None:
    ex = moving_book(fee)
    assert ex.rho == (2_500_000 if fee else 5_000_000) and ex.lowered is bool(fee)


@pytest.mark.parametrize(("unmatched_wh", "halved"), [(320, True), (400, True), (401, False)])
def test_an_imbalance_within_the_moves_of_mgs_trading_less_halves_rho(
    unmatched_wh: int, halved: bool
) -> None:
    # out of the kWh stop (as when the proximal steps of 0.16 and 0.32 kWh leave 0.32 unmatched on
    # test_ctl_fee_scenario's midday day): halved while the largest move (0.1 kWh and the unmatched kWh u, less
    # the mean's motion u/4: 0.1 + 0.75·u) is at least the imbalance u, up to 0.4 kWh
    ex = moving_book(10**6, unmatched_wh)
    assert ex.rho == (2_500_000 if halved else 5_000_000)


@pytest.mark.parametrize(("more_wh", "halved"), [(10, True), (12, False), (500, False)])
def test_an_mg_trading_more_than_the_kwh_stop_lets_a_move_be_is_no_drift(more_wh: int, halved: bool) -> None:
    ex = moving_book(10**6, more_wh=more_wh)
    assert ex.rho == (2_500_000 if halved else 5_000_000)


def test_below_the_configs_rho_an_imbalance_that_dominates_doubles_it_back() -> None:
    # the drift has run out: 320 Wh unmatched, nothing moving (the same positions again)
    ex = moving_book(10**6, 320)
    ex.rho = 625_000
    ex.advance(list(ex.q_wh), 0.01)
    assert ex.dual == pytest.approx(0.0) and ex.rho == 1_250_000 and ex.lowered
    for _ in range(2):
        ex.advance(list(ex.q_wh), 0.01)
    assert ex.rho == 5_000_000  # never above the config's this way
    # the value stop still waits: the imbalance is what it was when ρ first halved, over half of it (M4)
    assert ex.drift_from == 0.32 and ex.lowered
    ex.advance(list(ex.q_wh), 0.01)
    assert ex.rho == 5_000_000  # nor halved while nothing moves


def test_fee_rho_min_below_one_nano_or_not_finite_is_refused() -> None:
    for bad in (0.0, 1e-12, float("nan"), float("inf")):
        with pytest.raises(DayAheadError, match="fee_rho_min"):
            DayAheadConfig(fee_rho_min=bad)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(-50, 50), min_size=2, max_size=2), min_size=2, max_size=24))
def test_mgs_that_stay_at_their_anchor_move_the_price_by_no_more_than_one_rounding_in_all(
    answers: list[list[float]],
) -> None:
    # every MG answers exactly its anchor for 40 iterations (no MG wants to move): the posted imbalances
    # telescope to the last rounding error less the first, within N Wh in all, so the price cannot drift.
    # Anchored at the rounded positions, one imbalance of up to N/2 Wh would repeat every iteration
    n = len(answers)
    ex = Exchange(synthetic_scenario(n, 2, seed=0, interval_hours=12.0), DayAheadConfig(), [0.1, 0.1])

    def posted(own: Sequence[float]) -> tuple[tuple[float, ...], tuple[int, ...]]:
        return tuple(own), tuple(wh(v) for v in own)

    ex._take([posted(own) for own in answers])
    total = [0, 0]
    for _ in range(40):
        sums = ex._take([posted(ex.anchor(i)) for i in range(n)])
        total = [a + b for a, b in zip(total, sums, strict=True)]
    assert all(abs(t) <= n for t in total), total


def test_the_same_day_twice_gives_the_same_chain() -> None:
    scenario = small_day()
    first, _ = on_chain(scenario)
    second, _ = on_chain(scenario)
    assert first.chain.height == second.chain.height
    assert first.chain.state.root == second.chain.state.root
    assert first.chain.tip.hash == second.chain.tip.hash
    other, _ = on_chain(replace(scenario, microgrids=scenario.microgrids[:3]))  # the root tells days apart
    assert other.chain.state.root != first.chain.state.root


def test_a_second_day_on_one_venue_is_a_session_of_its_own() -> None:
    scenario = small_day()
    venue, allocation = on_chain(scenario)
    again = allocate(scenario, recorder=venue.exchange)
    assert again == allocation
    names = [venue.exchange.session, f"dayahead/0/{scenario.name}"]
    assert venue.exchange.session == f"dayahead/1/{scenario.name}" != names[1]
    for name in names:
        session = contract.session(venue.chain.view, name)
        assert session is not None and session["closed"]
        assert session["iteration"] == allocation.iterations + 1 - (allocation.stop == "value")


class Passing:
    """The chain's recorder, every call passed through (the fakes below change one answer each)."""

    def __init__(self, inner: ChainExchange) -> None:
        self.inner = inner

    def open(self, names: Sequence[str], prices: Sequence[int], rho: int) -> Verdict:
        return self.inner.open(names, prices, rho)

    def position(
        self,
        name: str,
        iteration: int,
        positions_wh: Sequence[int],
        settled: bool = False,
        judged: Judgement | None = None,
    ) -> Verdict:
        return self.inner.position(name, iteration, positions_wh, settled=settled, judged=judged)

    def settled(self, iteration: int) -> int | Rejected:
        return self.inner.settled(iteration)

    def judgements(self, iteration: int) -> Sequence[Judgement | None] | Rejected:
        return self.inner.judgements(iteration)

    def step(self, iteration: int, rho: int) -> tuple[int, ...] | Rejected:
        return self.inner.step(iteration, rho)

    def close(self, iteration: int) -> Verdict:
        return self.inner.close(iteration)


class Skewed(Passing):
    """The chain's recorder, but a price one nano off in one interval after one iteration."""

    def __init__(self, inner: ChainExchange, iteration: int, interval: int) -> None:
        super().__init__(inner)
        self.iteration, self.interval = iteration, interval

    def step(self, iteration: int, rho: int) -> tuple[int, ...] | Rejected:
        prices = self.inner.step(iteration, rho)
        if isinstance(prices, Rejected) or iteration != self.iteration:
            return prices
        return tuple(p + (t == self.interval) for t, p in enumerate(prices))


def test_a_chain_whose_price_differs_stops_the_allocation_naming_the_interval() -> None:
    scenario = small_day()
    venue = ChainVenue(scenario)
    with pytest.raises(DayAheadError, match=r"price for interval 5 after iteration 3 is \d+ nano/kWh where"):
        allocate(scenario, recorder=Skewed(venue.exchange, 3, 5))
    # what was posted stays on the chain, and the session is closed where it stood (not left open)
    session = contract.session(venue.chain.view, venue.exchange.session)
    assert session is not None and session["closed"] and session["iteration"] == 4
    assert moves(venue)[("exchange.position", scenario.microgrids[1].name)] == 4


def test_a_position_the_chain_refuses_stops_the_allocation_with_the_chains_reason() -> None:
    # the chain holds the first MG to 1 Wh per interval where its model may trade its full limit
    scenario = small_day()
    first = scenario.microgrids[0]
    strict = replace(first, rules=replace(first.rules, max_quantity_kwh=0.001))
    venue = ChainVenue(replace(scenario, microgrids=(strict, *scenario.microgrids[1:])))
    with pytest.raises(
        DayAheadError, match=rf"refused {first.name}'s position at iteration 0: .*maximum 1\b"
    ):
        allocate(scenario, recorder=venue.exchange)
    assert not contract.posted(venue.chain.view, venue.exchange.session, venue.keys[first.name].public)
    session = contract.session(venue.chain.view, venue.exchange.session)
    assert session is not None and session["closed"] and session["iteration"] == 0  # abandoned, not open


class Refusing:
    """A recorder that accepts everything but the step of one iteration."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration
        self.prices: tuple[int, ...] = ()
        self.posted: list[tuple[str, int]] = []
        self.said: dict[int, int] = {}
        self.judged: dict[int, list[Judgement | None]] = {}

    def open(self, names: Sequence[str], prices: Sequence[int], rho: int) -> Verdict:
        self.prices = tuple(prices)
        return Rejected("not today") if self.iteration < 0 else Accepted()

    def position(
        self,
        name: str,
        iteration: int,
        positions_wh: Sequence[int],
        settled: bool = False,
        judged: Judgement | None = None,
    ) -> Verdict:
        self.posted.append((name, iteration))
        self.said[iteration] = self.said.get(iteration, 0) + settled
        self.judged.setdefault(iteration, []).append(judged)
        return Accepted()

    def settled(self, iteration: int) -> int | Rejected:
        return self.said.get(iteration, 0)

    def judgements(self, iteration: int) -> Sequence[Judgement | None] | Rejected:
        return self.judged.get(iteration, [])

    def step(self, iteration: int, rho: int) -> tuple[int, ...] | Rejected:
        return Rejected("rho out of range") if iteration == self.iteration else self.prices

    def close(self, iteration: int) -> Verdict:
        return Accepted()


def test_a_refused_step_or_opening_stops_the_allocation_with_the_reason() -> None:
    scenario = small_day()
    refusing = Refusing(0)  # iteration 0 moves no price, so the opening prices are the chain's
    with pytest.raises(DayAheadError, match="refused the step of iteration 0: rho out of range"):
        allocate(scenario, recorder=refusing)
    assert refusing.posted == [(mg.name, 0) for mg in scenario.microgrids]
    with pytest.raises(DayAheadError, match="refused to open the exchange: not today"):
        allocate(scenario, recorder=Refusing(-1))


def test_an_mg_the_chain_does_not_know_is_refused_at_the_opening() -> None:
    scenario = small_day()
    venue = ChainVenue(replace(scenario, microgrids=scenario.microgrids[1:]))
    with pytest.raises(DayAheadError, match=f"{scenario.microgrids[0].name} has no account on this chain"):
        allocate(scenario, recorder=venue.exchange)
    assert venue.transactions == 0


def test_simulate_records_the_day_ahead_moves_on_the_chain_venue_only() -> None:
    scenario = small_day()
    cfg = SimulationConfig(market="dayahead", with_central=False)
    venues: list[ChainVenue] = []

    def factory(s: Scenario) -> ChainVenue:
        venues.append(ChainVenue(s))
        return venues[-1]

    on = simulate(scenario, cfg, factory)
    off = simulate(scenario, cfg, memory_venue)
    assert exchange_recorder(memory_venue(scenario)) is None
    assert on.dayahead is not None and off.dayahead is not None
    verdicts = on.dayahead.stop == "value"  # the verdict round: posted, never stepped
    assert on.dayahead.iterations - verdicts == off.dayahead.iterations
    assert on.dayahead.prices == off.dayahead.prices
    session = contract.session(venues[0].chain.view, f"dayahead/0/{scenario.name}")
    assert session is not None and session["closed"]
    assert session["iteration"] == on.dayahead.iterations + 1 - verdicts


class NotClosing(Refusing):
    """Refuses one step, and the closing after it."""

    def close(self, iteration: int) -> Verdict:
        self.closed_at = iteration
        return Rejected("the chain is read-only")


def test_an_allocation_that_stops_closes_its_session_and_says_if_that_was_refused_too() -> None:
    recorder = NotClosing(1)  # its step 0 is right: iteration 0 moves no price
    with pytest.raises(
        DayAheadError,
        match=r"refused the step of iteration 1: rho out of range; .*close it too: the chain is read-only",
    ):
        allocate(small_day(), recorder=recorder)
    assert recorder.closed_at == 1  # the one step it accepted, iteration 0


class CloseRaises(Refusing):
    """Refuses one step; its close raises."""

    def close(self, iteration: int) -> Verdict:
        raise ConnectionError("broker gone")


def test_a_close_that_raises_never_hides_the_error_that_stopped_the_allocation() -> None:
    with pytest.raises(
        DayAheadError,
        match=r"refused the step of iteration 1: rho out of range; closing it raised too: "
        r"ConnectionError: broker gone",
    ):
        allocate(small_day(), recorder=CloseRaises(1))


def test_a_day_beyond_the_contracts_limits_is_refused_before_any_mg_solves() -> None:
    # 673 intervals: one more than an exchange session holds; named at the opening, nothing posted
    scenario = synthetic_scenario(2, 673, seed=0, interval_hours=0.25)
    venue = ChainVenue(scenario)
    with pytest.raises(DayAheadError, match="673 intervals, an exchange session holds 672"):
        allocate(scenario, recorder=venue.exchange)
    assert venue.transactions == 0


def test_the_result_says_whether_the_moves_were_on_a_chain() -> None:
    # the memory venue has no exchange recorder: the same day allocates off the chain, and says so
    scenario = small_day()
    config = SimulationConfig(market="dayahead", with_central=False)
    on_chain = simulate(scenario, config, chain_venue).dayahead
    off_chain = simulate(scenario, config, memory_venue).dayahead
    assert on_chain is not None and on_chain.moves_on_chain
    assert off_chain is not None and not off_chain.moves_on_chain
    # the chain changes nothing in the allocation (a value stop's verdict round is one round more)
    assert on_chain.iterations - (on_chain.stop == "value") == off_chain.iterations
    assert on_chain.prices == off_chain.prices


# --- the forward trades: the exchange contract's clear of the closed session (exchange.accept / .clear) ---


def chain_day(scenario: Scenario) -> tuple[SimulationResult, ChainVenue]:
    venues: list[ChainVenue] = []

    def factory(s: Scenario) -> ChainVenue:
        venues.append(ChainVenue(s))
        return venues[-1]

    return simulate(scenario, SimulationConfig(market="dayahead", with_central=False), factory), venues[0]


def kinds(venue: ChainVenue) -> Counter[str]:
    chain = venue.chain
    return Counter(tx.kind for height in range(1, chain.height + 1) for tx in chain.block(height).txs)


@pytest.mark.parametrize("rules", [False, True])
def test_the_forward_trades_of_a_seeded_day_are_the_contracts_clear(rules: bool) -> None:
    scenario = small_day(rules)
    result, venue = chain_day(scenario)
    d = result.dayahead
    assert d is not None and d.moves_on_chain
    done = kinds(venue)
    # every MG accepted (a declined one zeros), the coordinator cleared; nothing went through offers or bids
    assert done["exchange.accept"] == len(scenario.microgrids) and done["exchange.clear"] == 1
    assert done["offer"] == done["bid"] == done["move"] == done["trade"] == 0
    view, session = venue.chain.view, venue.exchange.session
    for mg in scenario.microgrids:
        taken = accepted(view, session, venue.keys[mg.name].public)
        assert taken is not None and (not any(taken["positions"]) or mg.name not in d.declined)
    traded = 0
    for r in result.intervals:
        record = market_contract.interval_record(view, r.interval)
        on_chain_trades = [market_contract.trade(view, tid) for tid in record["trades"]]
        read_back = sorted(
            (venue.names[t["seller"]], venue.names[t["buyer"]], t["quantity"], t["price"])
            for t in on_chain_trades
            if t is not None
        )
        ours = sorted((tr.seller, tr.buyer, wh(tr.quantity_kwh), round(tr.price * 1000)) for tr in r.trades)
        assert read_back == ours  # what the day played is what the chain recorded, to the Wh and the tick
        if r.trades:
            assert record["closed"] and record["session"] == session
        # each recorded trade settled once, by the delivery
        assert all(t is not None and t["settlement"] is not None for t in on_chain_trades)
        traded += len(r.trades)
    assert traded > 0 and venue.exchange.cleared == traded
    assert cleared(view, session) is not None


def committed_on_chain(scenario: Scenario) -> tuple[ChainVenue, Commitment]:
    venue, allocation = on_chain(scenario)
    return venue, commit(scenario, allocation, baselines.conventional(scenario))


def test_a_tampered_accept_is_refused_and_nothing_is_cleared() -> None:
    scenario = small_day()
    venue, committed = committed_on_chain(scenario)
    # one MG claims a Wh more than its final stepped position where it trades most
    name, row = max(committed.accepted.items(), key=lambda kv: max(map(abs, kv[1])))
    t = max(range(len(row)), key=lambda i: abs(row[i]))
    tampered = list(row)
    tampered[t] += 1 if row[t] > 0 else -1
    forged = replace(committed, accepted={**committed.accepted, name: tuple(tampered)})
    with pytest.raises(ForwardError, match=rf"refused {name}'s accepted positions: .*larger than its final"):
        clear(venue.exchange, scenario, forged, dict.fromkeys(committed.accepted, False))
    assert cleared(venue.chain.view, venue.exchange.session) is None
    assert accepted(venue.chain.view, venue.exchange.session, venue.keys[name].public) is None


class Misclearing:
    """The chain's clearing, but reporting one trade a Wh short: what `forward.clear` must catch."""

    def __init__(self, inner: ChainExchange) -> None:
        self.inner = inner

    def ready(self) -> bool:
        return self.inner.ready()

    def accept(self, name: str, positions_wh: Sequence[int], clean: bool) -> Verdict:
        return self.inner.accept(name, positions_wh, clean)

    def clear(self) -> tuple[tuple[Trade, ...], ...] | Rejected:
        days = self.inner.clear()
        if isinstance(days, Rejected):
            return days
        t = next(i for i, day in enumerate(days) if day)
        first = replace(days[t][0], quantity_kwh=days[t][0].quantity_kwh - 0.001)
        return (*days[:t], (first, *days[t][1:]), *days[t + 1 :])


def test_a_clear_that_differs_from_the_commitment_is_never_followed() -> None:
    scenario = small_day()
    venue, committed = committed_on_chain(scenario)
    clean = dict.fromkeys(committed.accepted, False)
    with pytest.raises(ForwardError, match=r"interval \d+: the exchange cleared other trades"):
        clear(Misclearing(venue.exchange), scenario, committed, clean)
    # the session is cleared now (the chain's trades stand, never followed here): a second clear is refused
    # by the contract for that reason, and so is any MG's accept after it (forward.clear stops at the first)
    second = venue.exchange.clear()
    assert isinstance(second, Rejected) and "is cleared" in second.reason
    with pytest.raises(ForwardError, match=r"refused mg\d+'s accepted positions: .*is cleared"):
        clear(venue.exchange, scenario, committed, clean)


def test_the_same_seeded_day_on_the_chain_twice_gives_the_same_bytes() -> None:
    scenario = small_day(rules=True)
    (one, first), (two, second) = chain_day(scenario), chain_day(scenario)
    assert first.chain.tip.hash == second.chain.tip.hash
    assert first.chain.state.root == second.chain.state.root
    assert json.dumps(result_json(one)) == json.dumps(result_json(two))


def test_the_memory_venue_keeps_offers_and_bids_and_matches_the_chains_trades() -> None:
    scenario = small_day()
    on, _ = chain_day(scenario)
    off = simulate(scenario, SimulationConfig(market="dayahead", with_central=False), memory_venue)
    assert [r.trades for r in on.intervals] == [r.trades for r in off.intervals]


def test_a_tie_breaks_by_chain_key_in_matching_as_in_the_contract() -> None:
    scenario = small_day()
    n, names = scenario.intervals, [mg.name for mg in scenario.microgrids]
    venue = ChainVenue(scenario)
    key = {name: venue.keys[name].public for name in names}
    # two sellers whose names and keys sort the other way round: 1001 Wh each to one buyer of 1001 Wh, so
    # one Wh of the pro-rata cut is a tie (equal remainders), which the key decides on both sides
    sellers, buyer = names[:3], names[3]  # the fourth cannot sell in every interval
    a, b = next((x, y) for x in sellers for y in sellers if x < y and key[x] > key[y])
    positions = {name: (0.0,) * n for name in names} | {
        a: (1.001,) * n,
        b: (1.001,) * n,
        buyer: (-1.001,) * n,
    }
    allocation = Allocation((0.1,) * n, positions, 1, 0.0, 0.0, True, 0, 0)
    matched = match(scenario, allocation)
    assert all({(tr.seller, wh(tr.quantity_kwh)) for tr in day} == {(b, 501), (a, 500)} for day in matched)
    exchange = venue.exchange
    assert isinstance(exchange.open(names, [100_000_000] * n, 5_000_000), Accepted)
    for name in names:
        assert isinstance(exchange.position(name, 0, [wh(q) for q in positions[name]]), Accepted)
    assert not isinstance(exchange.step(0, 5_000_000), Rejected)
    assert isinstance(exchange.close(1), Accepted)
    for name, row in accepted_wh(scenario, allocation).items():
        assert isinstance(exchange.accept(name, row, False), Accepted)
    assert exchange.clear() == matched


def test_the_cli_says_how_many_forward_trades_the_chain_cleared(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "simulate",
        "--synthetic",
        "3",
        "--intervals",
        "8",
        "--market",
        "dayahead",
        "--no-central",
        "--json",
    ]
    assert main([*argv, "--venue", "chain"]) == 0
    doc = json.loads(capsys.readouterr().out)
    chain = doc["total"]["chain"]
    assert chain["forward_trades_cleared"] == sum(len(i["trades"]) for i in doc["intervals"]) > 0
    assert chain["transactions"] > chain["forward_trades_cleared"]
    assert main([*argv, "--venue", "memory"]) == 0
    assert "chain" not in json.loads(capsys.readouterr().out)["total"]


# --- the value stop: each MG's own verdict on the chain (exchange.position's settled) ---


def value_day(gensets: bool = True) -> Scenario:
    """No owner rule, unlimited DSO connections: the value stop applies. With its genset MG both phases
    stop on it (the relaxed one at 28 iterations, the one after the commitment at 33); without, at 10."""
    scenario = synthetic_scenario(5, 12, seed=0, interval_hours=2.0)
    return (
        scenario
        if gensets
        else replace(scenario, microgrids=tuple(m for m in scenario.microgrids if not m.gensets))
    )


def position_posts(venue: ChainVenue) -> list[tuple[int, str, bool]]:
    """(iteration, MG, settled) of every exchange.position in the venue's sealed blocks, in chain order."""
    chain = venue.chain
    return [
        (tx.body["iteration"], venue.names[tx.sender], tx.body.get("settled", False))
        for height in range(1, chain.height + 1)
        for tx in chain.block(height).txs
        if tx.kind == "exchange.position"
    ]


@pytest.mark.parametrize("gensets", [True, False])
def test_a_value_stopped_day_ends_on_every_mgs_settled_verdict_posted_and_never_stepped(
    gensets: bool,
) -> None:
    scenario = value_day(gensets)
    names = [mg.name for mg in scenario.microgrids]
    venue, allocation = on_chain(scenario)
    memory = allocate(scenario)
    assert memory.stop == allocation.stop == "value"
    # the memory venue's allocation to the last digit: prices and positions are those of the last stepped
    # iteration k; the chain's adds one round (k + 1, the verdicts) and one solve per MG
    assert stepped(allocation, len(names)) == memory
    assert allocation.iterations == memory.iterations + 1
    k = memory.iterations
    session = contract.session(venue.chain.view, venue.exchange.session)
    assert session is not None and session["closed"]
    # closed at k + 1 without stepping it: every member posted it, every post said settled (the value stop)
    assert (session["iteration"], session["posted"], session["settled"]) == (k + 1, len(names), len(names))
    assert session["prices"] == tuple(round(p * NANO) for p in allocation.prices)
    posts = position_posts(venue)
    assert [(name, said) for it, name, said in posts if it == k + 1] == [(name, True) for name in names]
    # no verdict before iteration 2 (none to judge); not all settled on k − 1 (it stopped at k, not before)
    assert not any(said for it, _, said in posts if it < 2)
    per_iteration = Counter(it for it, _, said in posts if said)
    assert per_iteration[k] < len(names)
    assert sum(per_iteration.values()) > len(names)  # verdicts said settled before the last round too
    if gensets:
        # the relaxed phase stopped on the value stop too: every MG's verdict on its last iteration went
        # with the first posts of the phase after the commitment (stepped: ADMM went on)
        relaxed = memory.relaxed_iterations
        assert 1 < relaxed < k and per_iteration[relaxed + 1] == len(names)
        assert all(per_iteration[it] < len(names) for it in range(relaxed + 2, k + 1))
    for name in names:
        last = contract.stepped(venue.chain.view, venue.exchange.session, venue.keys[name].public)
        assert last is not None and last["iteration"] == k
        assert last["positions"] == [round(q * 1000) for q in allocation.positions[name]]
    # the forward trades clear from the stepped positions, as on any other closed session
    assert venue.exchange.ready()


def test_a_day_without_the_value_stop_posts_no_verdict_and_the_same_transactions() -> None:
    scenario = value_day()
    venue = ChainVenue(scenario)
    allocation = allocate(scenario, DayAheadConfig(value_per_kwh=0.0), recorder=venue.exchange)
    assert allocation.stop == "kwh"
    assert not any(said for _, _, said in position_posts(venue))
    session = contract.session(venue.chain.view, venue.exchange.session)
    assert (
        session is not None and session["iteration"] == allocation.iterations + 1 and session["posted"] == 0
    )


class Miscounting(Passing):
    """The chain's recorder, but counting one settled verdict more or less at one iteration."""

    def __init__(self, inner: ChainExchange, iteration: int, off_by: int) -> None:
        super().__init__(inner)
        self.iteration, self.off_by = iteration, off_by

    def settled(self, iteration: int) -> int | Rejected:
        count = self.inner.settled(iteration)
        return count + self.off_by if iteration == self.iteration and isinstance(count, int) else count


@pytest.mark.parametrize(("where", "off_by"), [(5, 1), ("last", -1)])
def test_a_chain_whose_verdict_count_disagrees_stops_the_allocation(where: int | str, off_by: int) -> None:
    # at an ordinary step (the chain would have the coordinator close on verdicts nobody posted) and at the
    # verdict round (one MG's settled missing: no value stop on the chain): never followed, the session closed
    scenario = value_day()
    k = allocate(scenario).iterations
    iteration = k + 1 if where == "last" else int(where)
    venue = ChainVenue(scenario)
    with pytest.raises(
        DayAheadError, match=rf"counts \d+ settled verdicts posted at iteration {iteration} where"
    ):
        allocate(scenario, recorder=Miscounting(venue.exchange, iteration, off_by))
    session = contract.session(venue.chain.view, venue.exchange.session)
    assert session is not None and session["closed"] and session["iteration"] == iteration


def test_an_mgs_verdict_is_its_own_spread_against_the_public_moves() -> None:
    # the private computation the edge agent calls: the same as the coordinator's at_stake for that MG
    scenario = value_day()
    ex = Exchange(scenario, DayAheadConfig(), [0.1] * scenario.intervals)
    rows = [
        tuple(wh(v) for v in row) for row in ([1.0] * 12, [-0.5] * 12, [-0.4] * 12, [0.0] * 12, [0.0] * 12)
    ]
    ex.take(rows)
    ratios = ex.imbalance_ratios()
    moves = [0.01] * scenario.intervals
    spread = ex.spread[0]
    stake = at_stake(spread, moves, ex.q[0], ratios)
    assert stake == ex.at_stake(0, moves, ratios) > 0
    volume = sum(abs(v) for v in ex.q[0])
    assert settled(spread, moves, ex.q[0], ratios, stake / volume * 1.001)
    assert not settled(spread, moves, ex.q[0], ratios, stake / volume * 0.999)
    # an MG with no position judges per kWh of at least one: its move alone
    assert settled(spread, moves, ex.q[3], ratios, at_stake(spread, moves, ex.q[3], ratios))


@pytest.mark.parametrize("seal", ["close_round", "flush", "finish"])
def test_a_transaction_the_seal_leaves_out_raises_instead_of_vanishing(seal: str) -> None:
    """review7 F9: the venue's own seals (a round's close, `finish`, `flush`) check `LocalChain.dropped` as
    the exchange's do. A payment signed at t and another 200 s later (beyond the 120-s `tx_max_age_ms`):
    the block takes the later time, and the first is too old for it."""
    scenario = small_day()
    venue = ChainVenue(scenario)
    a, b = (mg.name for mg in scenario.microgrids[:2])
    t = venue.chain.tip.time + 1
    for payer, payee, when in ((a, b, t), (b, a, t + 200_000)):
        body = {"payee": venue.keys[payee].public, "amount": 1, "ref": f"at-{when}"}
        assert venue.chain.sign_and_submit(venue.keys[payer], "pay", body, time_ms=when).ok
    with pytest.raises(SealError, match=r"left out \d+ transactions, the first pay: .*time-out-of-bounds"):
        if seal == "finish":  # it seals only when the interval has an offer: post one
            offer = Offer(a, 0, 0.1, 0.001, False)
            assert isinstance(venue.post_offer(offer), Accepted)
            venue.finish(0)
        else:
            getattr(venue, seal)()


def test_the_venue_clears_a_big_session_in_parts_to_the_matched_trades(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """review7 F5: a session over the contract's MAX_CLEAR_CELLS is cleared in parts, one block each; the
    trades are still exactly the ones matched (forward.clear checks every pair, Wh and price)."""
    monkeypatch.setattr(exchange_clearing, "MAX_CLEAR_CELLS", 12)  # 4 MGs: 3 intervals per part, 8 in all
    scenario = small_day()
    venue, committed = committed_on_chain(scenario)
    before = venue.chain.height
    trades = clear(venue.exchange, scenario, committed, dict.fromkeys(committed.accepted, False))
    assert trades == committed.trades
    assert kinds(venue)["exchange.clear"] == 3 and venue.chain.height - before >= 3
    assert venue.exchange.cleared == sum(len(day) for day in trades)
