"""R35-3: a feeder whose MGMCs run two releases of the day-ahead rules. On a fee day the coordinator's ρ
follows the fee's drift (1ef37a9: ρ halves below the config's while every MG unwinds), which an MGMC of the
release before does not compute; every member checks each step's ρ against its own book, so that member stops
the session with a clear error that names the likely cause, a mixed release, and the session completes for no
one. No rule version is written on the chain (that would be a contract change): every MGMC of a feeder must run
the same release, and this is how a mixed feeder is told.

The day: ieee33's midday intervals 36-43 at one tick per side, where the coordinator's book first lowers ρ at
iteration 6 (tests/edge/test_m6_rejoin_drift.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_edge_dayahead_restart import roles
from test_edge_dayahead_session import run_session
from test_edge_fee import VALUE, free_chain
from test_m6_rejoin_drift import TICK, midday

from peergrid_controller.dayexchange import Book
from peergrid_edge.dayahead_agent import DayAheadAgent


class OldRelease(DayAheadAgent):
    """An MGMC of the release before the fee's drift rule: its book's ρ never goes below the config's."""

    @property  # type: ignore[override]
    def book(self) -> Book | None:
        return self.__dict__.get("_book")

    @book.setter
    def book(self, book: Book | None) -> None:
        if book is not None:
            book.fee_rho_min = book.rho_min  # the rule off, as before it
        self.__dict__["_book"] = book


def test_a_member_of_the_release_before_stops_a_fee_day_naming_a_mixed_release(tmp_path: Path) -> None:
    scenario = midday()
    ledger, keys_ = free_chain(tmp_path, scenario, TICK)
    _, member = roles(keys_)
    make: dict[str, Any] = {member: OldRelease}
    outcomes = run_session(ledger, keys_, scenario, make=make, config=VALUE, timeout_s=10.0)
    reason = outcomes[member].reason
    assert "the chain's rho after iteration" in reason and "not followed" in reason, reason
    assert "another peergrid release" in reason and "same release" in reason, reason
    assert not any(o.completed for o in outcomes.values())
