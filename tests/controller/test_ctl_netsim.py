"""The market over a seeded lossy, delaying transport: deterministic, still legal, every trade settled once."""

from __future__ import annotations

import json

from peergrid_controller.bargaining import MemoryVenue, Venue
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.cli import result_json
from peergrid_controller.model import Scenario
from peergrid_controller.netsim import LossyVenue
from peergrid_controller.simulate import SimulationConfig, SimulationResult, simulate
from peergrid_controller.synth import synthetic_scenario
from peergrid_controller.venues import exchange_recorder

# four MGs over a day in 8 three-hour steps: cheap to run, with midday trading
SCENARIO = synthetic_scenario(4, 8, seed=2, interval_hours=3.0)
CONFIG = SimulationConfig(with_central=False, forecast_iterations=6)


def same(a: SimulationResult, b: SimulationResult) -> bool:
    return json.dumps(result_json(a)) == json.dumps(result_json(b))


def run(loss: float, seed: int, chain: bool = False) -> tuple[SimulationResult, LossyVenue]:
    venues: list[LossyVenue] = []

    def factory(s: Scenario) -> Venue:
        inner: Venue = ChainVenue(s) if chain else MemoryVenue({mg.name: mg.rules for mg in s.microgrids})
        venues.append(LossyVenue(inner, seed=seed, loss=loss, retries=2))
        return venues[-1]

    return simulate(SCENARIO, CONFIG, venue_factory=factory), venues[0]


def test_no_loss_changes_nothing() -> None:
    plain = simulate(SCENARIO, CONFIG)
    lossless, venue = run(0.0, seed=1)
    assert same(lossless, plain)
    assert venue.stats.lost == 0 and venue.stats.undelivered_moves == 0


def test_same_seed_same_losses_same_outcome() -> None:
    a, va = run(0.3, seed=7)
    b, vb = run(0.3, seed=7)
    assert same(a, b) and va.stats == vb.stats
    _, vc = run(0.3, seed=8)
    assert vc.stats != va.stats


def test_heavy_loss_still_trades_legally_and_settles_each_trade_once() -> None:
    result, venue = run(0.4, seed=3)
    assert venue.stats.lost > 0 and venue.stats.undelivered_moves > 0
    trades = [t for i in result.intervals for t in i.trades]
    assert trades, "the market still trades through 40 % loss"
    inner = venue.inner
    assert isinstance(inner, MemoryVenue)
    assert inner.settled == {t.trade_id for t in trades}  # every agreed trade settled, and only once
    assert abs(sum(inner.balances.values())) < 1e-9  # money moved, none created


def test_lossy_transport_in_front_of_the_chain() -> None:
    result, venue = run(0.2, seed=5, chain=True)
    chain = venue.inner
    assert isinstance(chain, ChainVenue)
    assert chain.chain.height > 0 and chain.transactions > 0
    names = {mg.name for mg in SCENARIO.microgrids}
    total = sum(chain.balance(n) for n in names)
    assert abs(total) < 1e-9
    assert all(
        i.trades == tuple(sorted(i.trades, key=lambda t: (t.seller, t.buyer))) for i in result.intervals
    )


def test_the_day_ahead_market_crosses_the_transport_with_every_move_on_the_chain() -> None:
    """Through a lossy transport the day-ahead session is still the chain's: every post, step, accept and
    payment is resent until it arrives, so the day is the one without loss, and the transport counts them."""
    config = SimulationConfig(market="dayahead", with_central=False)
    plain = simulate(SCENARIO, config, venue_factory=ChainVenue)
    venues: list[LossyVenue] = []

    def factory(s: Scenario) -> Venue:
        venues.append(LossyVenue(ChainVenue(s), seed=5, loss=0.3))
        return venues[-1]

    lossy = simulate(SCENARIO, config, venue_factory=factory)
    d = lossy.dayahead
    assert d is not None and d.moves_on_chain  # the wrapper no longer hides the chain's exchange
    assert same(lossy, plain)
    stats = venues[0].stats
    # at least one message per MG post per iteration (its first response and one per iteration)
    assert stats.sent >= len(SCENARIO.microgrids) * (d.iterations + 1) and stats.lost > 0
    assert stats.undelivered_moves == 0


def test_a_venue_without_an_exchange_shows_none_through_the_transport() -> None:
    venue = LossyVenue(MemoryVenue({mg.name: mg.rules for mg in SCENARIO.microgrids}))
    assert exchange_recorder(venue) is None
    assert exchange_recorder(LossyVenue(ChainVenue(SCENARIO))) is not None
