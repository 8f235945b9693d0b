"""The lab's DSO names each MG's connection capacity (`mgs.<mg>.capacity_kw`, posted as `market.capacity`) from
its scenario's max import and export where both are finite (the larger: a deviation goes either way); the lab's
scenarios limit neither, so their DSO config names none and stays as it was."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from peergrid_controller.model import Tariff
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_dso.tariff import CapacityPoster
from peergrid_ledger.keys import Keypair
from peergrid_sim.closedloop import LabChains, LoopTiming, dso_node_config
from peergrid_sim.lab_chains import connection_kw
from peergrid_sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def mg(max_import: float, max_export: float) -> SimpleNamespace:
    return SimpleNamespace(tariff=Tariff((0.2,), (0.05,), max_import, max_export))


@pytest.mark.parametrize(
    ("limits", "kw"),
    [
        ((40.0, 25.0), 40.0),
        ((10.0, 30.0), 30.0),
        ((0.0, 30.0), 30.0),  # no import at all: the export side bounds it
        ((math.inf, 25.0), None),  # unbounded one way: no capacity
        ((40.0, math.inf), None),
        ((math.inf, math.inf), None),  # the default: unset
        ((0.0, 0.0), None),  # no connection to bound by: the chain takes no 0
    ],
)
def test_the_connection_is_the_larger_limit_where_both_are_finite(
    limits: tuple[float, float], kw: float | None
) -> None:
    assert connection_kw(mg(*limits)) == kw


def config(tmp_path: Path, chains: LabChains) -> dict[str, object]:
    timing = LoopTiming(t0=1000.0, interval_s=6.0, first_interval=36, intervals=3)
    return dso_node_config(chains, "ieee33", ("127.0.0.1", 1883), tmp_path / "dso", load_scenario(SCENARIO),
                           tmp_path / "ep.json", timing, tmp_path / "records")  # fmt: skip


def test_the_labs_scenario_limits_nothing_so_its_dso_names_no_capacity(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    assert chains.capacity_kw == {}
    mgs = config(tmp_path, chains)["mgs"]
    assert isinstance(mgs, dict) and all("capacity_kw" not in entry for entry in mgs.values())
    settings = IntervalNodeSettings.model_validate(config(tmp_path, chains))
    assert CapacityPoster.from_settings(settings, None, Keypair.generate()) is None


def test_a_limited_mg_gets_its_capacity_in_the_dso_config_as_the_node_reads_it(tmp_path: Path) -> None:
    chains = dataclasses.replace(
        LabChains.create(tmp_path / "keys", "ieee33", SCENARIO), capacity_kw={"mg1": 40.0}
    )
    cfg = config(tmp_path, chains)
    settings = IntervalNodeSettings.model_validate(cfg)
    assert settings.mgs["mg1"].capacity_kw == 40.0
    assert all(settings.mgs[m].capacity_kw is None for m in chains.mgs if m != "mg1")
    poster = CapacityPoster.from_settings(settings, None, Keypair.generate())
    assert poster is not None and poster.capacities == {"mg1": 10_000}  # 40 kW x 15 min
    assert poster.accounts == {"mg1": chains.anonyms["mg1"].public}
