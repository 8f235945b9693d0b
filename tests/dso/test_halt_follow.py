"""The DSO node is told the end-of-run halt height: it reads the testbed's halt file like every MGMC does.

Before, only the MGMCs read `control/halt.json`; the DSO's replica, not knowing the run was ending, idled a
heartbeat (2 s) on every height it proposed while the others expected a block each period and round-changed
on it, so the coordinated stop took 9-12 s instead of 4-5 s. Here: the file's reading (a half-written or
malformed file is no stop, never a crash), the engines taking the heights, and a real DSO node (its DSO-chain
replica and its MGMC-chain follower, over a real Mosquitto) following the file written by the testbed's own
`quiesced` path while it runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace

import yaml
from hypothesis import given
from hypothesis import strategies as st

from peergrid_dso.live import DsoNode
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_dso.node_chains import halt_at, halt_heights
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_sim.closedloop import LabChains, LoopTiming, dso_node_config, edge_config, halt_file
from peergrid_sim.scenario import load_scenario

IEEE33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def test_halt_file_reading(tmp_path: Path) -> None:
    path = tmp_path / "halt.json"
    assert halt_heights(None) == {} and halt_heights(path) == {}  # no file: no stop
    path.write_text('{"dso-x": 48, "mgmc-x": 99}')
    assert halt_heights(path) == {"dso-x": 48, "mgmc-x": 99}
    for bad in ('{"dso-x": 4', "[48, 99]", '{"dso-x": "high"}', '{"dso-x": null}', "", '{"dso-x": -1}'):
        path.write_text(bad)  # half-written by the testbed, or not {chain: height}
        assert halt_heights(path) == {}, bad


@given(st.binary(max_size=64))
def test_halt_file_reading_never_raises(tmp_path_factory, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("halt") / "halt.json"
    path.write_bytes(raw)
    heights = halt_heights(path)
    assert all(isinstance(c, str) and isinstance(h, int) and h >= 0 for c, h in heights.items())


def test_halt_at_sets_and_clears_each_chain_engine_height() -> None:
    replicas = {
        c: SimpleNamespace(engine=SimpleNamespace(config=EngineConfig(block_period_ms=150))) for c in "ab"
    }
    halt_at(replicas, {"a": 12})
    assert replicas["a"].engine.config.halt_height == 12 and replicas["b"].engine.config.halt_height is None
    assert replicas["a"].engine.config.block_period_ms == 150  # the rest of the config is kept
    halt_at(replicas, {})  # the file is gone: both run on
    assert all(r.engine.config.halt_height is None for r in replicas.values())


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
