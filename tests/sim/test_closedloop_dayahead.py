"""The lab's day-ahead option, without processes: the MGMC genesis carries the exchange contract, the option
(off by default) turns on `market.dayahead` in every MGMC's edge config, which the edge daemon accepts, and a
lab directory made before the exchange contract keeps its genesis."""

from __future__ import annotations

import json
from pathlib import Path

from peergrid_edge.config import EdgeSettings
from peergrid_ledger.genesis import Genesis
from peergrid_sim.closedloop import LabChains, LoopTiming, edge_config
from peergrid_sim.testbed import build_parser

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def _config(chains: LabChains, tmp_path: Path, timing: LoopTiming) -> EdgeSettings:
    doc = edge_config(
        chains, chains.mgs[0], "ieee33", ("127.0.0.1", 1883), tmp_path / "node", [], SCENARIO, timing,
        tmp_path / "records",
    )  # fmt: skip
    return EdgeSettings.model_validate(doc)


def test_the_mgmc_genesis_carries_the_exchange_and_the_option_turns_on_the_session(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    genesis = Genesis.from_json(json.loads(chains.mgmc_genesis.read_text()))
    assert set(genesis.contracts) == {"market", "exchange"}
    off = _config(chains, tmp_path, LoopTiming(1000.0, 6.0, 36, 4))
    assert off.market is not None and off.market.dayahead is False  # the default lab trades intraday
    on = _config(chains, tmp_path, LoopTiming(1000.0, 6.0, 36, 4, dayahead=True))
    # ieee33's mg3 has a genset: every MGMC runs the session's commitment phases
    assert on.market is not None and on.market.dayahead is True and on.market.dayahead_gensets is True
    assert build_parser().parse_args([]).dayahead is False
    assert build_parser().parse_args(["--dayahead"]).dayahead is True


def test_a_lab_directory_made_before_the_exchange_keeps_its_genesis(tmp_path: Path) -> None:
    first = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    doc = json.loads(first.mgmc_genesis.read_text())
    doc["contracts"] = ["market"]  # as an older lab wrote it
    first.mgmc_genesis.write_text(json.dumps(doc))
    again = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    assert json.loads(again.mgmc_genesis.read_text()) == doc  # reused as it is: its chain id and history hold
    assert again.anonyms[again.mgs[0]].public == first.anonyms[first.mgs[0]].public
