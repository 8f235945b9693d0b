"""Deterministic simulation: safety, validity and liveness hold on every seed (1,000 in `make test`).

Each seed builds its own hostile network (see `peergrid_ledger.consensus.simulation`); a failure prints the
one-line command that replays it. `make soak` (PEERGRID_SOAK=1) runs many more seeds with longer chaos.
"""

from __future__ import annotations

import os

import pytest

from peergrid_ledger.consensus.simulation import Simulation, run_seed, scenario_for

SEEDS = 1000
CHUNK = 25
SOAK = os.environ.get("PEERGRID_SOAK") == "1"


def _check(seeds: range, profile: str) -> None:
    failures = []
    for seed in seeds:
        report = run_seed(seed, profile)
        if not report.ok:
            failures.append(
                f"seed {seed}: {'; '.join(report.violations[:3])}\n  replay: {report.replay(profile)}"
            )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("start", range(0, SEEDS, CHUNK), ids=lambda s: f"seeds{s}-{s + CHUNK - 1}")
def test_invariants_hold_on_every_seed(start: int) -> None:
    _check(range(start, start + CHUNK), "test")


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="soak runs only with PEERGRID_SOAK=1 (make soak)")
@pytest.mark.parametrize("start", range(100_000, 105_000, 250))
def test_soak_invariants(start: int) -> None:
    _check(range(start, start + 250), "soak")


def test_a_seed_replays_identically() -> None:
    first, second = run_seed(7), run_seed(7)
    assert first.heights == second.heights and first.delivered == second.delivered


def test_scenarios_cover_every_fault() -> None:
    """The seeds of `make test` exercise each kind of fault the issue names, not just calm networks."""
    scenarios = [scenario_for(seed) for seed in range(SEEDS)]
    behaviours = {b for s in scenarios for b in s.byzantine.values()}
    assert behaviours == {"equivocate", "invalid", "garbage", "wrong-chain", "silent"}
    assert sum(bool(s.partitions) for s in scenarios) > 300
    assert sum(bool(s.crashes) for s in scenarios) > 300
    assert sum(s.chaos_link.loss > 0 for s in scenarios) > 300
    assert sum(s.chaos_link.duplicate > 0 for s in scenarios) > 300
    assert sum(bool(s.governance) for s in scenarios) > 100
    assert sum(s.real_crypto for s in scenarios) == SEEDS // 25
    assert {s.authorities for s in scenarios} == {4, 5, 6, 7}


def test_equivocation_becomes_evidence_on_chain() -> None:
    seed = next(s for s in range(SEEDS) if "equivocate" in scenario_for(s).byzantine.values())
    scenario = scenario_for(seed)
    scenario.partitions.clear()
    scenario.crashes.clear()
    report = Simulation(scenario).run()
    assert report.ok, report.violations
    assert report.evidence_on_chain > 0


def test_a_broken_invariant_is_reported_with_its_replay_command() -> None:
    scenario = scenario_for(3)
    scenario.min_growth = 10_000  # no chain grows that much: liveness must be reported
    report = Simulation(scenario).run()
    assert any(v.startswith("liveness") for v in report.violations)
    assert report.replay() == ".venv/bin/python -m peergrid_ledger.consensus.simulation --seed 3"
