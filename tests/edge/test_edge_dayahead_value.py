"""The value stop on the edge: each MGMC judges the stepped iteration itself (`dayexchange.settled`, with its
own tariff spread and position and the book's public moves and imbalance ratios) and posts its verdict with
its next position; the coordinator closes without stepping once the chain counts every member's verdict
settled (`exchange.settled_count`). With the default config the session is `allocate`'s on the chain venue
(value stop) to the nano and the Wh, and ends with the contract's settled close; a member whose verdict is
false keeps the session going to the kWh stop."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from test_edge_dayahead_session import SESSION, ledger_for, run_session, simulated

from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.model import Scenario
from peergrid_controller.synth import synthetic_scenario
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_ledger.contracts import exchange as contract

DEFAULT = DayAheadConfig()


def value_day() -> Scenario:
    """No owner rule, unlimited DSO connections, no gensets: `allocate` stops on the value stop (at 10)."""
    scenario = synthetic_scenario(5, 12, seed=0, interval_hours=2.0)
    return dataclasses.replace(scenario, microgrids=tuple(m for m in scenario.microgrids if not m.gensets))


def test_the_default_edge_session_is_allocates_value_stop_to_the_nano_and_the_wh(tmp_path: Path) -> None:
    scenario = value_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    started = time.perf_counter()
    outcomes = run_session(ledger, keys_, scenario, config=DEFAULT)
    wall = time.perf_counter() - started
    allocation, record, _ = simulated(scenario, DEFAULT)
    assert allocation.stop == "value"
    k = allocation.iterations - 1  # allocate counts the verdict round, posted and abandoned
    for name, outcome in outcomes.items():
        assert outcome.completed, (name, outcome.reason)
        assert outcome.stop == "value" and outcome.iterations == k
        assert outcome.prices == record["prices"]  # to the nano
        assert outcome.positions == tuple(round(q * 1000) for q in allocation.positions[name])  # to the Wh
    session = closed_session(tmp_path, scenario)
    assert session is not None and session["closed"]
    # closed at k + 1 without stepping it, every member's post there saying settled: the contract's value stop
    assert (session["iteration"], session["posted"], session["settled"]) == (k + 1, len(keys_), len(keys_))
    assert (session["iteration"], session["settled"]) == (record["iteration"], record["settled"])
    print(f"\n{len(outcomes)} agents, value stop at {k} (+1 verdict round): {wall:.2f} s wall per session")


def closed_session(tmp_path: Path, scenario: Scenario) -> dict[str, Any] | None:
    """The session as a fresh replica on the agents' store holds it."""
    ledger, _ = ledger_for(tmp_path, scenario)
    try:
        return contract.session(ledger.state("mgmc"), SESSION)
    finally:
        ledger.close()


class NeverSettled(DayAheadAgent):
    """A member whose own verdict is always false (its MG's spread makes every move worth more)."""

    def _judge(self, moves: list[list[float]]) -> None:
        super()._judge(moves)
        self.verdict = False


def test_a_member_whose_verdict_is_false_keeps_the_session_going_to_the_kwh_stop(tmp_path: Path) -> None:
    scenario = value_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    stubborn = scenario.microgrids[-1].name
    outcomes = run_session(ledger, keys_, scenario, config=DEFAULT, make={stubborn: NeverSettled})
    # verdicts change no price: the session is then allocate's with the kWh stops alone
    allocation, record, positions = simulated(scenario, DayAheadConfig(value_per_kwh=0.0))
    assert allocation.stop == "kwh"
    for name, outcome in outcomes.items():
        assert outcome.completed, (name, outcome.reason)
        assert outcome.stop == "kwh" and outcome.iterations == allocation.iterations
        assert outcome.prices == record["prices"]
        assert list(outcome.positions) == positions[name]
