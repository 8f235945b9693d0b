"""The lab testbed's MGMC chain is made with the market's `cap_on_fills` on (the edge agent reads it from there),
and a lab directory that already holds a genesis keeps it byte for byte: a running chain never changes rules
underneath its replicas."""

from __future__ import annotations

import json
from pathlib import Path

from peergrid_ledger.genesis import Genesis
from peergrid_sim.closedloop import DSO_ITERATIONS, LabChains

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def test_a_new_lab_mgmc_chain_caps_allocations_and_an_existing_one_is_kept(tmp_path: Path) -> None:
    lab = LabChains.create(tmp_path / "lab", "feeder", SCENARIO)
    mgmc = Genesis.from_json(json.loads(lab.mgmc_genesis.read_text()))
    assert mgmc.params.cap_on_fills == 1 and mgmc.params.max_reopens == DSO_ITERATIONS
    # the DSO chain has no market: the parameter stays at its default there
    dso = Genesis.from_json(json.loads(lab.dso_genesis.read_text()))
    assert "market" not in dso.contracts and dso.params.cap_on_fills == 0

    # a lab made before the parameter: its genesis (old rule) is kept as it is
    old = mgmc.to_json()
    del old["params"]["cap_on_fills"]
    lab.mgmc_genesis.write_text(json.dumps(old))
    before = lab.mgmc_genesis.read_bytes()
    again = LabChains.create(tmp_path / "lab", "feeder", SCENARIO)
    assert again.mgmc_genesis.read_bytes() == before
    assert Genesis.from_json(json.loads(before)).params.cap_on_fills == 0
