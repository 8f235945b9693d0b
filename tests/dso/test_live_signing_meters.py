"""The live node's dispute settler carries the PCC meters its config enrols as signing (`mgs.<mg>.meter_key`), so
the deployed loop meters those MGs from meter-signed readings only; without a meter key it is None, as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peergrid_dso.dso_node import dispute_settler
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_dso.sealed_readings import SigningMeters
from peergrid_ledger.keys import Keypair
from peergrid_ledger.meter_signing import meter_keypair
from peergrid_ledger.settings import load_settings


def settler_for(tmp_path: Path, meter_key: str | None) -> tuple[Any, bytes]:
    chain = {"genesis": str(tmp_path / "g.json"), "data_dir": str(tmp_path / "d")}
    node, anonym = Keypair.generate(), Keypair.generate()
    mg: dict[str, object] = {"node": node.public.hex(), "anonym": anonym.public.hex(), "bus": 18}
    if meter_key is not None:
        mg["meter_key"] = meter_key
    raw = {
        "key_file": str(tmp_path / "dso.key"), "dso_chain": chain, "mgmc_chain": chain, "first_interval": 36,
        "mgs": {"mg1": mg},
        "disputes": {"t0": 1000.5, "interval_s": 6.0, "commit_interval_s": 6.0, "max_gap_s": 3.0,
                     "meter_time_bound_s": 1.5},
    }  # fmt: skip
    config = tmp_path / "node.json"
    config.write_text(json.dumps(raw))
    settings = load_settings(config, IntervalNodeSettings)
    return dispute_settler(settings, object(), Keypair.generate()), node.public


def test_the_live_settler_meters_an_enrolled_signing_meter_from_its_signatures(tmp_path: Path) -> None:
    key = meter_keypair(5, "mg1", "meter").public
    settler, node = settler_for(tmp_path, key.hex())
    assert settler.signing == SigningMeters({node: key}, 1_500)


def test_without_a_meter_key_the_live_settler_reads_the_mgmcs_own_readings(tmp_path: Path) -> None:
    settler, _ = settler_for(tmp_path, None)
    assert settler.signing is None
