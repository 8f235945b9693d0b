"""The simulation's shortcuts change no outcome (T12): what replicas share, what the checks reuse.

A seed's outcome with every shortcut taken out (each replica its own memo and signature cache, every block
executed again by each replica and at commit, each store re-verified alone, vote digests recomputed) is the
outcome with them, to the block; and `verify_chains` answers as `verify_chain` does on each store, for
lagging, forked and tampered stores alike.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from peergrid_ledger.consensus import messages, simulation
from peergrid_ledger.consensus.messages import Certificate
from peergrid_ledger.consensus.sim_app import SimApp, SimStore, verify_chain
from peergrid_ledger.consensus.simulation import Simulation, scenario_for
from peergrid_ledger.consensus.simulation_checks import verify_chains


def _outcome(seed: int) -> tuple[object, ...]:
    sim = Simulation(scenario_for(seed))
    report = sim.run()
    stores = {name: (node.store.blocks, node.store.certificates) for name, node in sim.nodes.items()}
    return report.heights, report.delivered, report.violations, report.evidence_on_chain, stores


def _without_shortcuts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulation, "SimApp", lambda *args, memo=None, **kw: SimApp(*args, **kw))
    execute = SimApp._execute

    def execute_afresh(self: SimApp, block: bytes, height: int) -> object:
        self._executed.clear()  # every block executed again, by each replica, as before the memo
        return execute(self, block, height)

    monkeypatch.setattr(SimApp, "_execute", execute_afresh)
    monkeypatch.setattr(
        simulation, "verify_chains", lambda g, stores, v: [verify_chain(g, s, v) for s in stores]
    )
    monkeypatch.setattr(messages, "vote_digest", messages.vote_digest.__wrapped__)
    monkeypatch.setattr(simulation, "SignatureCache", lambda verify: verify)  # each engine its own cache


def test_shortcuts_change_no_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    equivocating = next(s for s in range(50) if "equivocate" in scenario_for(s).byzantine.values())
    governed = next(s for s in range(50) if scenario_for(s).governance)
    seeds = [0, equivocating, governed]  # 0: real Ed25519
    fast = [_outcome(seed) for seed in seeds]
    with monkeypatch.context() as patched:
        _without_shortcuts(patched)
        slow = [_outcome(seed) for seed in seeds]
    assert fast == slow
    assert any(outcome[3] for outcome in fast)  # evidence reached a chain: the equivocation was exercised


@pytest.fixture(scope="module")
def stores() -> list[SimStore]:
    scenario = scenario_for(5)
    scenario.partitions.clear()
    scenario.crashes.clear()
    scenario.chaos_ms, scenario.calm_ms = 1000, 4000
    sim = Simulation(scenario)
    assert sim.run().ok
    honest = [sim.nodes[name].store for name in sim.honest]
    assert min(len(s.blocks) for s in honest) >= 6
    return honest


def _genesis_and_verify() -> tuple[object, object]:
    sim = Simulation(scenario_for(5))
    return sim.genesis, sim.verify


def test_verify_chains_answers_as_verify_chain(stores: list[SimStore]) -> None:
    genesis, verify = _genesis_and_verify()
    full = stores[0]
    n = len(full.blocks)

    def store(blocks: list[bytes], certificates: list[Certificate]) -> SimStore:
        return SimStore(list(blocks), list(certificates))

    flipped = bytearray(full.blocks[3])
    flipped[len(flipped) // 2] ^= 1
    torn = store(
        [*full.blocks[:3], bytes(flipped), *full.blocks[4:]], full.certificates
    )  # inspect fails at 4
    swapped = store([*full.blocks[:2], full.blocks[3], full.blocks[2], *full.blocks[4:]], full.certificates)
    weak = replace(full.certificates[1], seals=full.certificates[1].seals[:1])
    unsealed = store(full.blocks, [*full.certificates[:1], weak, *full.certificates[2:]])  # cert fails at 2
    cases = [
        *stores,
        store(full.blocks[: n - 2], full.certificates[: n - 2]),  # a replica that lags
        torn,
        store(torn.blocks[:3], torn.certificates[:3]),  # a prefix that stops before the tear
        store(torn.blocks[:5], torn.certificates[:5]),  # and one past it
        swapped,
        store(swapped.blocks[:4], swapped.certificates[:4]),
        unsealed,
        store(full.blocks[:4], unsealed.certificates[:4]),  # the weak certificate on a shared chain
        store([], []),
    ]
    expected = [verify_chain(genesis, s, verify) for s in cases]  # type: ignore[arg-type]
    assert verify_chains(genesis, cases, verify) == expected  # type: ignore[arg-type]
    assert verify_chains(genesis, cases[::-1], verify) == expected[::-1]  # type: ignore[arg-type]
    assert expected[: len(stores) + 1] == [None] * (len(stores) + 1)
    assert [e is None for e in expected[len(stores) + 1 :]] == [
        False,
        True,
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    assert expected[-3].startswith("height 2: commit certificate")


def test_verify_chains_keeps_verify_chains_refusal_of_uneven_stores(stores: list[SimStore]) -> None:
    genesis, verify = _genesis_and_verify()
    uneven = SimStore(list(stores[0].blocks), list(stores[0].certificates[:-1]))
    with pytest.raises(ValueError):
        verify_chain(genesis, uneven, verify)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        verify_chains(genesis, [uneven], verify)  # type: ignore[arg-type]
