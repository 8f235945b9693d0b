"""A clean day-ahead session on the edge (dayahead_clean.py): independent MGMC agents on one real replica play
the clean book beside the general one exactly as `dayahead.allocate` on the chain venue does (both books'
closing prices to the nano, every member's general and clean positions to the Wh, every post, step and close
the same), open it exactly where the venue would, and a day without a clean-only member keeps its bytes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from test_edge_dayahead_rules import edge_txs, moves, rules_day, venue_txs
from test_edge_dayahead_session import ledger_for, run_session

from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.cleanbook import clean_kind
from peergrid_controller.dayahead import Allocation, allocate
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.model import Scenario
from peergrid_edge.dayahead_clean import post_positions
from peergrid_edge.exchange_io import ROLE, SessionOutcome
from peergrid_edge.replicas import EdgeLedger
from peergrid_ledger.contracts import exchange as contract

# the kWh stops (the value stop ends a phased day's relaxed phase one iteration later on the edge), the clean
# book on, each seller's switch decided once (the edge's scope: `dayahead_clean.refusal`)
CLEAN = DayAheadConfig(value_per_kwh=0.0, clean_book=True, clean_decisions=1)
SESSION = "dayahead/edge-test"


def clean_day() -> Scenario:
    """The five-MG rules day whose third MG is clean-only; the other four have no genset: clean sellers."""
    scenario = rules_day(5, seed=2)
    kinds = [clean_kind(mg) for mg in scenario.microgrids]
    assert "buyer" in kinds and "seller" in kinds
    return scenario


def venue_day(scenario: Scenario, cfg: DayAheadConfig) -> tuple[Allocation, ChainVenue, dict[str, Any]]:
    venue = ChainVenue(scenario)
    allocation = allocate(scenario, cfg, recorder=venue.exchange)
    record = contract.session(venue.chain.view, venue.exchange.session)
    assert record is not None
    return allocation, venue, record


def stepped_books(state: Any, session: str, keys_: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Each MG's last stepped post, both books (general then clean), as the chain keeps it."""
    out = {}
    for name, key in keys_.items():
        post = contract.stepped(state, session, key.public)
        assert post is not None
        out[name] = post_positions(post)
    return out


def opens(txs: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    """The opens' bodies less the members (the edge's trading keys are not the venue's)."""
    return [
        {k: v for k, v in body.items() if k != "members"} for kind, _, body in txs if kind == "exchange.open"
    ]


def reopened(where: Path, scenario: Scenario) -> tuple[EdgeLedger, dict[str, Any], Any]:
    ledger, keys_ = ledger_for(where, scenario)
    return ledger, keys_, ledger.state(ROLE)


def test_an_edge_clean_day_is_allocates_on_the_chain_venue_both_books_every_move(tmp_path: Path) -> None:
    scenario = clean_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    outcomes: dict[str, SessionOutcome] = run_session(ledger, keys_, scenario, config=CLEAN)
    allocation, venue, record = venue_day(scenario, CLEAN)
    assert allocation.clean_positions and any(
        q < 0 for q in allocation.clean_positions[scenario.microgrids[2].name]
    )  # the clean-only buyer buys clean: the day is a clean one on the venue
    ledger, _, state = reopened(tmp_path, scenario)
    try:
        edge_record = contract.session(state, SESSION)
        assert edge_record is not None and edge_record["clean"] and edge_record["closed"]
        assert edge_record["clean_prices"] == record["clean_prices"]  # to the nano
        assert edge_record["prices"] == record["prices"]
        venue_books = stepped_books(venue.chain.view, venue.exchange.session, venue.keys)
        assert stepped_books(state, SESSION, keys_) == venue_books  # both books, to the Wh
    finally:
        ledger.close()
    n = scenario.intervals
    for mg in scenario.microgrids:
        outcome = outcomes[mg.name]
        assert outcome.completed, (mg.name, outcome.reason)
        assert outcome.stop == allocation.stop and outcome.prices == record["prices"]
        assert outcome.positions == venue_books[mg.name][:n]
        assert venue_books[mg.name][n:] == tuple(round(q * 1000) for q in allocation.clean_positions[mg.name])
    edge, chain = edge_txs(tmp_path, scenario, keys_), venue_txs(venue)
    assert opens(edge) == opens(chain) and "clean_prices" in opens(edge)[0]
    for kind in ("exchange.position", "exchange.step", "exchange.close"):
        assert moves(edge, kind) == moves(chain, kind), kind


def test_without_the_switch_or_without_a_clean_only_member_the_session_is_the_general_book(
    tmp_path: Path,
) -> None:
    # clean_book off, or on but no member clean-only: no clean_prices, no clean field in any post, every
    # move the venue's (which keeps its bytes there: the controller's pinned days)
    scenario = clean_day()
    plain = dataclasses.replace(
        scenario,
        microgrids=tuple(
            dataclasses.replace(mg, rules=dataclasses.replace(mg.rules, clean_only=False))
            for mg in scenario.microgrids
        ),
    )
    for label, day, cfg in (
        ("off", scenario, dataclasses.replace(CLEAN, clean_book=False)),
        ("none", plain, CLEAN),
    ):
        ledger, keys_ = ledger_for(tmp_path / label, day)
        outcomes = run_session(ledger, keys_, day, config=cfg)
        assert all(o.completed for o in outcomes.values())
        _, venue, _ = venue_day(day, cfg)
        edge, chain = edge_txs(tmp_path / label, day, keys_), venue_txs(venue)
        assert not any("clean" in key for _, _, body in edge for key in body)
        assert opens(edge) == opens(chain)
        for kind in ("exchange.position", "exchange.step", "exchange.close"):
            assert moves(edge, kind) == moves(chain, kind), (label, kind)
