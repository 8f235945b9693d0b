"""The lab's DSO names each MG's connection capacity (`mgs.<mg>.capacity_kw`, posted as `market.capacity`): each
way its scenario's max import or export where finite, else the most its devices put across the PCC that way
(the controller's own P2P limits over the day), the larger of the two ways (a deviation goes either way), in
whole kW. The lab's scenarios limit neither way, so every lab MG gets its devices' rating: the make-whole has a
bound in the lab, and no position its MGMC plans is above it."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from peergrid_controller.builder import p2p_buy_limit, p2p_sell_limit
from peergrid_controller.model import Battery, CostSegment, Genset, Load, Microgrid, PvArray, Tariff
from peergrid_controller.scenario import load_scenario as load_controller_scenario
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_dso.tariff import CapacityPoster
from peergrid_ledger.keys import Keypair
from peergrid_sim.closedloop import LabChains, LoopTiming, dso_node_config
from peergrid_sim.lab_chains import connection_kw, device_limits
from peergrid_sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios"
SCENARIO = SCENARIOS / "ieee33.yaml"
INF = math.inf


def mg(max_import: float = INF, max_export: float = INF, devices: bool = True) -> Microgrid:
    """Two intervals: PV 30 then 50.25 kW, a 20-kW battery, a 10-kW genset; loads of 40 + 12 then 8 + 4 kW.
    Its devices export at most 50.25 + 20 + 10 = 80.25 kW and import at most 40 + 12 + 20 = 72 kW."""
    tariff = Tariff((0.2, 0.2), (0.05, 0.05), max_import, max_export)
    if not devices:
        return Microgrid("bare", tariff)
    return Microgrid(
        "m", tariff,
        pv=(PvArray("pv", (30.0, 50.25)),),
        batteries=(Battery("bat", capacity_kwh=40.0, max_charge_kw=20.0, max_discharge_kw=20.0),),
        gensets=(Genset("gen", max_kw=10.0, min_kw=0.0, segments=(CostSegment(10.0, 0.3),)),),
        loads=(Load("load", (40.0, 8.0), (12.0, 4.0)),),
    )  # fmt: skip


def test_the_devices_limits_are_the_controllers_p2p_limits_at_their_peak() -> None:
    assert device_limits(mg()) == (80.25, 72.0)
    assert device_limits(mg(devices=False)) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("limits", "kw"),
    [
        ((INF, INF), 81.0),  # the lab's case: the devices' larger way (80.25 kW out), up to a whole kW
        ((40.0, 25.0), 40.0),  # both limited: the larger limit, whatever the devices
        ((10.0, 30.0), 30.0),
        ((0.0, 30.0), 30.0),  # no import at all: the export side bounds it
        ((INF, 25.0), 72.0),  # export limited, import not: the devices' import
        ((100.0, INF), 100.0),  # import limited above what the devices export
        ((40.0, INF), 81.0),  # ... below it
    ],
)
def test_each_way_is_the_scenarios_limit_else_the_devices_and_the_larger_counts(
    limits: tuple[float, float], kw: float
) -> None:
    assert connection_kw(mg(*limits)) == kw


def test_a_connection_carrying_nothing_names_no_capacity() -> None:
    assert connection_kw(mg(0.0, 0.0)) is None  # the chain takes no 0
    assert connection_kw(mg(devices=False)) is None  # nothing behind it, no limit either
    assert connection_kw(mg(INF, 12.5, devices=False)) == 13.0  # a stated limit counts without devices


def test_a_whole_kw_is_not_rounded_up_by_a_floats_last_digit() -> None:
    exact = dataclasses.replace(mg(), pv=(PvArray("pv", (30.0, 50.0 + 1e-12)),))  # 80.000000000001 kW
    assert connection_kw(exact) == 80.0


@pytest.mark.parametrize("name", ["ieee33.yaml", "case136ma-30mg.yaml"])
def test_every_lab_mg_is_rated_at_or_above_every_p2p_limit_its_mgmc_plans_with(name: str) -> None:
    # C9's rule refuses a position above the capacity: no schedule of the lab's MGMCs may meet it
    for m in load_controller_scenario(SCENARIOS / name).microgrids:
        kw = connection_kw(m)
        assert kw is not None and kw == math.ceil(kw)
        for t in range(len(m.tariff.retail)):
            assert p2p_sell_limit(m, t) <= kw and p2p_buy_limit(m, t) <= kw


def config(tmp_path: Path, chains: LabChains) -> dict[str, object]:
    timing = LoopTiming(t0=1000.0, interval_s=6.0, first_interval=36, intervals=3)
    return dso_node_config(chains, "ieee33", ("127.0.0.1", 1883), tmp_path / "dso", load_scenario(SCENARIO),
                           tmp_path / "ep.json", timing, tmp_path / "records")  # fmt: skip


def test_the_labs_dso_posts_every_mgs_devices_rating(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    # mg5: 300 kW of PV at 0.98 of its rating and a 100-kW battery out (389.9 kW); mg4: its loads and no battery
    kw = {"mg1": 387.0, "mg2": 270.0, "mg3": 237.0, "mg4": 620.0, "mg5": 390.0, "mg6": 194.0}
    assert chains.capacity_kw == kw
    settings = IntervalNodeSettings.model_validate(config(tmp_path, chains))
    assert {m: settings.mgs[m].capacity_kw for m in chains.mgs} == kw
    poster = CapacityPoster.from_settings(settings, None, Keypair.generate())
    assert poster is not None and poster.capacities == {m: round(k * 250) for m, k in kw.items()}  # 15 min
    assert poster.accounts == {m: chains.anonyms[m].public for m in chains.mgs}


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
