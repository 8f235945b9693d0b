"""The DSO node is told the end-of-run halt height: it reads the testbed's halt file like every MGMC does.

Before, only the MGMCs read `control/halt.json`; the DSO's replica, not knowing the run was ending, idled a
heartbeat (2 s) on every height it proposed while the others expected a block each period and round-changed
on it, so the coordinated stop took 9-12 s instead of 4-5 s. The file's reading and the engines taking the
heights are the ledger's (`peergrid_ledger.consensus.halt`, shared with the MGMCs: tests/consensus/test_halt.py).
Here: the testbed tells the DSO node the same file as every MGMC, and a real DSO node (its DSO-chain replica
and its MGMC-chain follower, over a real Mosquitto) follows the file while it runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import yaml

from peergrid_dso.dso_node import DsoNode
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_sim.closedloop import LabChains, LoopTiming, dso_node_config, edge_config, halt_file
from peergrid_sim.scenario import load_scenario

IEEE33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def test_the_testbed_tells_the_dso_node_its_halt_file(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", IEEE33)
    timing = LoopTiming(time.time(), 6.0, 36, 1, 200)
    records = tmp_path / "records"
    cfg = dso_node_config(chains, "lab", ("127.0.0.1", 1883), tmp_path / "dso", load_scenario(IEEE33),
                          tmp_path / "none.json", timing, records)  # fmt: skip
    assert Path(cfg["halt_file"]) == halt_file(records)
    for mg in chains.mgs:  # the same file as every MGMC's
        edge = edge_config(chains, mg, "lab", ("127.0.0.1", 1883), tmp_path / mg, [], IEEE33, timing, records)
        assert Path(edge["ledger"]["halt_file"]) == halt_file(records)
    assert IntervalNodeSettings.model_validate(cfg).halt_file == halt_file(records)


def test_a_running_dso_node_follows_the_halt_file(tmp_path: Path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    scenario = tmp_path / "two.yaml"
    doc = yaml.safe_load(IEEE33.read_text())
    doc["microgrids"] = [m for m in doc["microgrids"] if m["name"] in ("mg4", "mg5")]
    doc["serial_lines"] = []
    scenario.write_text(yaml.safe_dump(doc))
    chains = LabChains.create(tmp_path / "keys", "ieee33", scenario)
    timing = LoopTiming(time.time(), 6.0, 36, 1, 200)
    records = tmp_path / "records"
    cfg = dso_node_config(chains, "lab", (mosquitto.host, mosquitto.port), tmp_path / "dso",
                          load_scenario(scenario), tmp_path / "none.json", timing, records)  # fmt: skip
    cfg["relays_file"] = None
    (tmp_path / "dso").mkdir()

    async def run() -> dict[str, int | None]:
        node = DsoNode.assemble(IntervalNodeSettings.model_validate(cfg))
        engines = {c: r.engine for c, r in node.node.replicas.items()}
        assert len(engines) == 2  # the DSO chain and the MGMC-chain follower
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        try:
            await asyncio.sleep(1.0)
            assert all(e.config.halt_height is None for e in engines.values())  # no file yet: runs on
            path = halt_file(records)
            path.parent.mkdir(parents=True)
            halt = {c: 40 + i for i, c in enumerate(sorted(engines))}
            path.write_text(json.dumps(halt))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                seen = {c: e.config.halt_height for c, e in engines.items()}
                if seen == halt:
                    return seen
                await asyncio.sleep(0.1)
            return {c: e.config.halt_height for c, e in engines.items()}
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    seen = asyncio.run(run())
    assert seen == {c: 40 + i for i, c in enumerate(sorted(seen))}
