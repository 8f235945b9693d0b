"""MGMCs that state trading windows answer the day-ahead session as `allocate` does for the same windows (M1).

Each `DayAheadAgent` given its `window` (the chain intervals its forward accept states) answers with its day
solved with nothing traded outside it; the simulation's `allocate`, given the same windows
(`DayAheadConfig.windows`) on `ChainVenue`'s exchange, reaches the same session: prices to the nano, every
position to the Wh, zeros outside each window (on a clean session in both books). Without windows both are as
before (tests/edge/test_edge_dayahead_session.py). The agents run as there: concurrently, each with only its own
MG, on one real single-authority `EdgeLedger`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from test_edge_clean_dayahead import CLEAN, SESSION, clean_day, reopened, stepped_books, venue_day
from test_edge_dayahead_session import CONFIG, free_day, ledger_for, run_session, simulated

from peergrid_controller.cleanbook import clean_kind
from peergrid_controller.dayahead import starting_prices
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.model import Scenario
from peergrid_controller.synth import synthetic_scenario
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_ledger.contracts import exchange as contract


def windowed(config: DayAheadConfig) -> dict[str, functools.partial[DayAheadAgent]]:
    """Each MG named in `config.windows` as an agent stating that window (session 0: chain = session intervals)."""
    return {name: functools.partial(DayAheadAgent, window=range(first, last + 1)) for name, first, last in config.windows}  # fmt: skip


def check_session(tmp_path: Path, scenario: Scenario, config: DayAheadConfig, phases: bool = False) -> None:
    ledger, keys_ = ledger_for(tmp_path, scenario)
    outcomes = run_session(ledger, keys_, scenario, make=windowed(config), phases=phases, config=config)
    allocation, record, positions = simulated(scenario, config)
    for name, outcome in outcomes.items():
        assert outcome.completed, outcome.reason
        assert outcome.iterations == allocation.iterations and outcome.stop == allocation.stop
        assert outcome.prices == record["prices"]  # to the nano
        assert list(outcome.positions) == positions[name]  # to the Wh
    for name, first, last in config.windows:
        assert [q for t, q in enumerate(positions[name]) if not first <= t <= last] == [0] * (
            scenario.intervals - (last - first + 1)
        ), (name, positions[name])
        assert any(positions[name][first : last + 1]), name  # it trades inside


def test_agents_with_windows_reach_the_simulations_session_with_the_same_windows(tmp_path: Path) -> None:
    # mg003 states none (the whole session); mg001's battery answers its window's day, not its whole day's
    windows = (("mg001", 2, 5), ("mg002", 3, 7), ("mg004", 0, 5))
    check_session(tmp_path, free_day(), dataclasses.replace(CONFIG, windows=windows))


def test_a_genset_whose_window_cuts_its_day_commits_inside_it_alike(tmp_path: Path) -> None:
    # the genset phases: the relaxed phase, the genset MG's commitment MILP within its window, then ADMM with
    # its commitment fixed, on the edge as in `allocate`
    scenario = synthetic_scenario(4, 4, seed=2, interval_hours=6.0)
    (genset,) = [mg.name for mg in scenario.microgrids if mg.gensets]
    windows = ((genset, 1, 2), *((mg.name, 0, 2) for mg in scenario.microgrids if mg.name != genset))
    check_session(tmp_path, scenario, dataclasses.replace(CONFIG, windows=windows), phases=True)


def test_a_clean_session_with_windows_is_allocates_in_both_books(tmp_path: Path) -> None:
    # the clean-only buyer and a clean seller state windows: both books hold nothing of theirs outside them (the
    # buyer's clean purchases too: `clean_buy_kw` is [0, 0] there), on the edge as on the venue
    scenario = clean_day()
    n = scenario.intervals
    buyer = next(mg.name for mg in scenario.microgrids if clean_kind(mg) == "buyer")
    seller = next(mg.name for mg in scenario.microgrids if clean_kind(mg) == "seller")
    windows = ((buyer, 1, n - 2), (seller, 0, n - 3))
    config = dataclasses.replace(CLEAN, windows=windows)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    outcomes = run_session(ledger, keys_, scenario, make=windowed(config), config=config)
    allocation, venue, record = venue_day(scenario, config)
    assert allocation.clean_positions and any(q < 0 for q in allocation.clean_positions[buyer])
    ledger, _, state = reopened(tmp_path, scenario)
    try:
        edge_record = contract.session(state, SESSION)
        assert edge_record is not None and edge_record["clean"] and edge_record["closed"]
        assert (edge_record["prices"], edge_record["clean_prices"]) == (
            record["prices"],
            record["clean_prices"],
        )
        books = stepped_books(venue.chain.view, venue.exchange.session, venue.keys)
        assert stepped_books(state, SESSION, keys_) == books  # both books, to the Wh
    finally:
        ledger.close()
    assert all(outcome.completed for outcome in outcomes.values()), outcomes
    for name, first, last in windows:
        outside = [t for t in range(n) if not first <= t <= last]
        assert [books[name][t] for t in outside] == [0] * len(outside), (name, books[name])
        assert [books[name][n + t] for t in outside] == [0] * len(outside), (name, books[name])


def test_the_window_is_read_in_chain_intervals_from_the_sessions_first(tmp_path: Path) -> None:
    """The sessions above start at chain interval 0, where chain and session intervals are one; a session from
    interval 100 with the window 101-102 trades in its intervals 1 and 2 (not in none, as `t in window` would:
    review34 R34-4)."""
    from test_edge_dayahead_session import SESSION as DAY_SESSION

    scenario = free_day(3, 4)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    mg = scenario.microgrids[0]
    agent = DayAheadAgent(ledger, keys_[mg.name], mg, scenario.interval_hours, members, DAY_SESSION, 100,
                          starting_prices(scenario), CONFIG, 1.0, window=range(101, 103))  # fmt: skip
    assert [t for t in range(mg.intervals) if agent.rules.own.trades(t)] == [1, 2]
