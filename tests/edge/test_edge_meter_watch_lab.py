"""The lab's MGMCs watch their own meters: `closedloop.edge_config` gives each MG's PCC meter entry the key the
DSO node enrols for it (`meter_keys` of `pcc_meter_seeds`, the key its emulated meter signs with), which the
edge's config accepts; no other device gets one, and without a key the devices are as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peergrid_edge.config import DeviceSettings
from peergrid_sim.closedloop import (
    LabChains,
    LoopTiming,
    edge_config,
    edge_devices,
    meter_keys,
    pcc_meter_seeds,
)
from peergrid_sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
TIMING = LoopTiming(t0=1000.0, interval_s=6.0, first_interval=36, intervals=2)


def endpoints() -> list[dict[str, Any]]:
    """What firmware-sim would list for mg1 and mg2 (each device over Modbus TCP on its own port)."""
    scenario = load_scenario(SCENARIO)
    found: list[dict[str, Any]] = []
    for mg in scenario.microgrids[:2]:
        for i, d in enumerate(mg.devices):
            found.append({"mg": mg.name, "device": d.name, "kind": d.kind, "protocol": "modbus-tcp",
                          "host": "127.0.0.1", "port": 15020 + 10 * len(found) + i})  # fmt: skip
    return found


def test_each_edge_gets_its_own_meters_enrolled_key(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIO)
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    devices = edge_devices(endpoints(), scenario)
    seeds = pcc_meter_seeds(scenario, 4242)
    keys = meter_keys(seeds)  # what the DSO node's config enrols (dso_node_config's meter_keys)
    assert keys["mg1"] != keys["mg2"]
    for mg in ("mg1", "mg2"):
        config = edge_config(chains, mg, "ieee33", ("127.0.0.1", 1883), tmp_path / mg, devices[mg], SCENARIO,
                             TIMING, tmp_path / "records", None, (seeds[mg][0], keys[mg]))  # fmt: skip
        keyed = {d["name"]: d["meter_key"] for d in config["devices"] if "meter_key" in d}
        assert keyed == {seeds[mg][0]: keys[mg]}
        for entry in config["devices"]:  # every entry one the edge takes (the key on a Modbus meter)
            settings = DeviceSettings.model_validate(entry)
            assert (settings.meter_key is not None) == (settings.nature == "meter")
    plain = edge_config(chains, "mg1", "ieee33", ("127.0.0.1", 1883), tmp_path / "p", devices["mg1"], SCENARIO,
                        TIMING, tmp_path / "records")  # fmt: skip
    assert all("meter_key" not in d for d in plain["devices"])
    assert [d["name"] for d in plain["devices"]] == [d["name"] for d in devices["mg1"]]


def test_a_meter_key_for_a_device_the_edge_does_not_have_is_an_error(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    devices = edge_devices(endpoints(), load_scenario(SCENARIO))["mg1"]
    with pytest.raises(ValueError, match="no device 'pcc9'"):
        edge_config(chains, "mg1", "ieee33", ("127.0.0.1", 1883), tmp_path / "n", devices, SCENARIO, TIMING,
                    tmp_path / "records", None, ("pcc9", "00" * 32))  # fmt: skip
