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

from peergrid_controller.dayahead import allocate
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

    def _judge(self, moves: list[list[float]], tolerance: float) -> None:
        super()._judge(moves, tolerance)
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


def test_a_member_behind_a_limited_connection_never_says_settled_so_the_day_is_allocates_kwh_stops(
    tmp_path: Path,
) -> None:
    # `allocate` runs the kWh stops where any DSO connection is limited; the limited MGMC alone knows it
    day = value_day()
    first = day.microgrids[0]
    limited = dataclasses.replace(first, tariff=dataclasses.replace(first.tariff, max_import_kw=10_000.0))
    scenario = dataclasses.replace(day, microgrids=(limited, *day.microgrids[1:]))
    ledger, keys_ = ledger_for(tmp_path, scenario)
    outcomes = run_session(ledger, keys_, scenario, config=DEFAULT)
    allocation, record, positions = simulated(scenario, DEFAULT)
    assert allocation.stop == "kwh"
    for name, outcome in outcomes.items():
        assert outcome.completed, (name, outcome.reason)
        assert outcome.stop == "kwh" and outcome.iterations == allocation.iterations
        assert outcome.prices == record["prices"] and list(outcome.positions) == positions[name]
    session = closed_session(tmp_path, scenario)
    assert session is not None and session["posted"] == 0  # closed after a step: no verdict round


def test_a_genset_day_with_the_value_stop_ends_its_relaxed_phase_on_the_verdicts_too(tmp_path: Path) -> None:
    # the relaxed phase ends one iteration after `allocate`'s (each member sees the others' verdicts on k in
    # their posts of k + 1), the commitment follows, and the phase after it closes on the value stop; not
    # `allocate`'s to the Wh, but every MGMC ends the same session, far sooner than on the kWh stops
    scenario = synthetic_scenario(4, 4, seed=2, interval_hours=6.0)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    outcomes = run_session(ledger, keys_, scenario, config=DEFAULT, phases=True)
    assert all(o.completed for o in outcomes.values()), [o.reason for o in outcomes.values()]
    assert len({(o.prices, o.iterations, o.stop) for o in outcomes.values()}) == 1
    edge = next(iter(outcomes.values()))
    valued = allocate(scenario)  # the simulation's default: the value stop in both phases
    by_kwh, _, _ = simulated(scenario)  # the kWh stops (CONFIG)
    assert valued.stop == edge.stop == "value" and by_kwh.stop == "kwh"
    assert edge.iterations <= valued.iterations + 1 < by_kwh.iterations
    session = closed_session(tmp_path, scenario)
    assert session is not None and session["settled"] == len(keys_)
