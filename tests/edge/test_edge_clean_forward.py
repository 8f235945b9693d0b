"""The forward stage after a clean day-ahead session on the edge (forward_clean.py): each MGMC accepts both books
alone (its whole position in each, cut by its rules at each book's closing price, as `commit`'s round 1), the
re-check rounds run `recheck` over both books, and the coordinator's clear makes `commit` + `clear`'s trades on
the chain venue: every pair, Wh and price, the clean ones at the clean closing price."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_edge_clean_dayahead import CLEAN, SESSION, clean_day
from test_edge_dayahead_session import ledger_for, run_on

from peergrid_controller import baselines
from peergrid_controller.chain_venue import ChainVenue, key_for
from peergrid_controller.dayahead import allocate, starting_prices
from peergrid_controller.forward import clear, commit
from peergrid_controller.market import micro_per_wh, wh
from peergrid_controller.model import Scenario
from peergrid_controller.venues import forward_clearing
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.forward_agent import ForwardAgent
from peergrid_edge.replicas import EdgeLedger
from peergrid_ledger import query
from peergrid_ledger.keys import Keypair

Trades = set[tuple[int, str, str, int, int, bool]]


def venue_key(scenario: Scenario) -> Any:
    """The chain venue's keys (its trades' ties are broken by key: the same keys, the same pairs)."""
    return lambda name: key_for(scenario.name, name)


def simulated(scenario: Scenario) -> tuple[Trades, dict[str, tuple[int, ...]]]:
    venue = ChainVenue(scenario)
    allocation = allocate(scenario, CLEAN, recorder=venue.exchange)
    committed = commit(scenario, allocation, baselines.conventional(scenario))
    clearing = forward_clearing(venue)
    assert clearing is not None and committed.clean_trades
    clean = {mg.name: not mg.gensets for mg in scenario.microgrids}
    cleared = clear(clearing, scenario, committed, clean)
    # as the venue's chain recorded them (a general trade's `clean` is its seller's flag, as the contract's)
    trades = on_chain(venue.chain.view, venue.keys, scenario.intervals)
    clean_ids = {(t, tr.seller, tr.buyer) for t, day in enumerate(committed.clean_trades) for tr in day}
    assert trades == {
        (t, tr.seller, tr.buyer, wh(tr.quantity_kwh), micro_per_wh(tr.price), clean[tr.seller])
        for t, day in enumerate(cleared)
        for tr in day
    }
    assert clean_ids and clean_ids < {(t, s, b) for t, s, b, *_ in trades}
    return trades, committed.accepted


def on_chain(state: Any, keys_: dict[str, Keypair], intervals: int) -> Trades:
    names = {k.public: name for name, k in keys_.items()}
    return {
        (t, names[tr["seller"]], names[tr["buyer"]], tr["quantity"], tr["price"], bool(tr.get("clean")))
        for t in range(intervals)
        for _, tr in query.trades(state, t)
    }


async def session_then_forward(ledger: EdgeLedger, keys_: dict[str, Keypair], scenario: Scenario) -> Any:
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    opening, dt = starting_prices(scenario), scenario.interval_hours
    sessions = [
        DayAheadAgent(ledger, keys_[mg.name], mg, dt, members, SESSION, 0, opening, CLEAN, 10.0)
        for mg in scenario.microgrids
    ]
    outcomes = await asyncio.wait_for(asyncio.gather(*(a.run() for a in sessions)), 180)
    forward = [ForwardAgent(ledger, keys_[mg.name], mg, dt, SESSION) for mg in scenario.microgrids]
    done = await asyncio.wait_for(asyncio.gather(*(a.run() for a in forward)), 180)
    # the clean-only buyer's MGMC restarted after the clear: it finds its accept, both books, and keeps it
    buyer = scenario.microgrids[2]
    again = await ForwardAgent(ledger, keys_[buyer.name], buyer, dt, SESSION).run()
    return outcomes, {mg.name: o for mg, o in zip(scenario.microgrids, done, strict=True)}, again


def test_the_forward_stage_after_an_edge_clean_day_clears_the_chain_venues_trades_in_both_books(
    tmp_path: Path,
) -> None:
    scenario = clean_day()
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_key(scenario))
    sessions, forward, again = run_on(ledger, lambda: session_then_forward(ledger, keys_, scenario))
    assert all(o.completed for o in sessions), [o.reason for o in sessions]
    expected, accepted = simulated(scenario)
    ledger, _ = ledger_for(tmp_path, scenario, key_of=venue_key(scenario))
    try:
        assert on_chain(ledger.state("mgmc"), keys_, scenario.intervals) == expected
    finally:
        ledger.close()
    for name, outcome in forward.items():
        assert outcome.cleared, (name, outcome.reason)
        assert outcome.accepted == accepted[name]  # both books, general then clean, to the Wh
    buyer = scenario.microgrids[2].name
    assert any(q < 0 for q in accepted[buyer][scenario.intervals :])  # it bought clean
    assert again.cleared and again.decision == "earlier" and again.accepted == forward[buyer].accepted
    assert again.net_wh == forward[buyer].net_wh
