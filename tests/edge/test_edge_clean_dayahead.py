"""A clean day-ahead session on the edge (dayahead_clean.py): independent MGMC agents on one real replica play
the clean book beside the general one exactly as `dayahead.allocate` on the chain venue does (both books'
closing prices to the nano, every member's general and clean positions to the Wh, every post, step and close
the same), open it exactly where the venue would, and a day without a clean-only member keeps its bytes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

from test_edge_dayahead_rules import edge_txs, moves, rules_day, venue_txs
from test_edge_dayahead_session import ledger_for, run_session

from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.cleanbook import clean_kind
from peergrid_controller.dayahead import Allocation, allocate
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.model import ContractRules, Scenario
from peergrid_edge.dayahead_agent import DayAheadAgent
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


def test_a_clean_seller_and_the_coordinator_restarted_with_their_checkpoints_resume_the_clean_day_exactly(
    tmp_path: Path,
) -> None:
    # the coordinator dies before its post of iteration 1 (the relaxed phase: its phase from the declarations
    # in its checkpoint), a clean seller after its post of an iteration of the final phase (its switch, decided
    # after the relaxed phase, in its checkpoint): the day is the venue's, both books, to the nano and the Wh
    from test_edge_dayahead_restart import Died, dies_at

    scenario = clean_day()
    allocation, venue, record = venue_day(scenario, CLEAN)
    assert allocation.clean_intervals and 0 < allocation.relaxed_iterations < allocation.iterations - 2
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    seller = next(
        mg.name for mg in scenario.microgrids if clean_kind(mg) == "seller" and mg.name != coordinator
    )
    processes: list[DayAheadAgent] = []
    death = allocation.relaxed_iterations + 2

    class SellerDies(DayAheadAgent):
        """Dies once its post of `death` landed and restarts 0.2 s later with the same checkpoint file."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("checkpoint", tmp_path / "seller.json")
            super().__init__(*args, **kwargs)
            self.args, self.kwargs = args, kwargs
            processes.append(self)

        async def _post(self, k: int, positions: tuple[int, ...], says_settled: bool = False) -> None:
            await super()._post(k, positions, says_settled)
            if k == death and not self.rejoined:
                raise Died

        async def run(self) -> SessionOutcome:
            try:
                return await super().run()
            except Died:
                await asyncio.sleep(0.2)
                return await SellerDies(*self.args, **self.kwargs).run()

    make = {coordinator: dies_at(1, False, 0.2, tmp_path / "coordinator.json"), seller: SellerDies}
    outcomes = run_session(ledger, keys_, scenario, config=CLEAN, make=make)
    # the seller's first process decided its switch; the restarted one resumed with it from the checkpoint
    assert len(processes) == 2 and processes[1].rejoined
    assert processes[0].switch == processes[1].switch == allocation.clean_intervals[seller]
    saved = json.loads((tmp_path / "seller.json").read_text())
    assert saved["commitment"] == [list(allocation.clean_intervals[seller])]
    for name, outcome in outcomes.items():
        assert outcome.completed, (name, outcome.reason)
        assert outcome.stop == allocation.stop and outcome.prices == record["prices"]
    ledger, _, state = reopened(tmp_path, scenario)
    try:
        edge_record = contract.session(state, SESSION)
        assert edge_record is not None and edge_record["clean_prices"] == record["clean_prices"]
        venue_books = stepped_books(venue.chain.view, venue.exchange.session, venue.keys)
        assert stepped_books(state, SESSION, keys_) == venue_books
    finally:
        ledger.close()


def test_a_clean_day_configured_to_decide_the_switch_again_is_refused_before_anything_is_opened(
    tmp_path: Path,
) -> None:
    # allocate decides each seller's switch again while any changes (clean_decisions 3, the default); whether
    # another seller's changed is private, so the edge cannot follow it: refused, with the reason, up front
    scenario = clean_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    cfg = dataclasses.replace(CLEAN, clean_decisions=3)
    outcomes = run_session(ledger, keys_, scenario, config=cfg, timeout_s=1.0)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    assert not any(o.completed for o in outcomes.values())
    assert "clean_decisions 3" in outcomes[coordinator].reason
    ledger, _, state = reopened(tmp_path, scenario)
    try:
        assert contract.session(state, SESSION) is None
    finally:
        ledger.close()


def test_a_clean_seller_restarted_without_its_checkpoint_is_not_rejoined_and_says_why(tmp_path: Path) -> None:
    # which phase the session is in and a seller's switch are not on the chain: rejoined from the chain alone
    # it could not answer as allocate, so the stage fails for it with the reason (the others then fail too)
    from test_edge_dayahead_restart import dies_at

    # no floor or cap (a rules day is not rejoined for its judgements alone), its clean-only buyer kept
    scenario = clean_day()
    scenario = dataclasses.replace(
        scenario,
        microgrids=tuple(
            dataclasses.replace(mg, rules=ContractRules(clean_only=mg.rules.clean_only))
            for mg in scenario.microgrids
        ),
    )
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    seller = next(
        mg.name for mg in scenario.microgrids if clean_kind(mg) == "seller" and mg.name != coordinator
    )
    outcomes = run_session(
        ledger, keys_, scenario, config=CLEAN, make={seller: dies_at(3, True)}, timeout_s=2.0
    )
    assert not outcomes[seller].completed
    assert "clean seller's switch phases: not rejoined" in outcomes[seller].reason
    assert not any(o.completed for o in outcomes.values())
