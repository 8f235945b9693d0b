"""R25 F11 (and F8 through `load_settings`): firmware-sim refuses impossible device params at load, one line
naming the device and the param, instead of saying "ok" (a -20 kWh battery, 150 % SoC, a negative start delay)
or dying of a ZeroDivisionError (a 0 W PV rating). Params inside the ranges build devices whose physics runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller.scenario import LAB_KEYS, LAB_KINDS, LAB_PARAMS
from peergrid_sim.cli import main
from peergrid_sim.clock import SimClock
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.runtime import Simulation
from peergrid_sim.scenario import (
    ConfigError,
    Device,
    Kind,
    Microgrid,
    Profile,
    Scenario,
    device_params,
    device_params_problem,
    load_scenario,
)

LOAD = {"name": "load1", "kind": "load", "params": {"critical_w": 4000, "sheddable_w": 2000}}


def scenario(device: dict[str, Any]) -> dict[str, Any]:
    return {"name": "r25", "microgrids": [{"name": "mg1", "bus": 18, "devices": [device, LOAD]}]}


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


BATTERY = {"capacity_wh": 20000, "max_charge_w": 5000, "max_discharge_w": 5000}


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [  # R25's f_sim_params.sh, each "ok" or a traceback before
        ("battery", {**BATTERY, "capacity_wh": -20000}, "params.capacity_wh must be above 0, got -20000"),
        ("battery", {**BATTERY, "soc_pct": 150}, "params.soc_pct must be a percentage, 0..100, got 150"),
        ("pv", {"rating_w": -10000}, "params.rating_w must be above 0, got -10000"),
        ("pv", {"rating_w": 0}, "params.rating_w must be above 0, got 0"),
        (
            "genset",
            {"rating_w": 20000, "start_delay_s": -5},
            "params.start_delay_s must be at least 0, got -5",
        ),
        ("battery", {**BATTERY, "nominal_v": 0}, "params.nominal_v must be above 0, got 0"),
        ("battery", {**BATTERY, "soc_min_pct": 90, "soc_max_pct": 20}, "params.soc_min_pct (90) is above"),
        ("pv", {"rating_w": 1000, "efficiency": 1.5}, "params.efficiency must be above 0 and at most 1"),
        ("load", {"critical_w": 10, "sheddable": 5}, "params.sheddable: no such param"),
        ("meter", {"rating_w": 0}, "params.rating_w must be above 0, got 0"),
    ],
)
def test_firmware_sim_check_names_the_device_and_param(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, params: dict[str, float], message: str
) -> None:
    path = write(tmp_path, scenario({"name": "d1", "kind": kind, "params": params}))
    with pytest.raises(SystemExit) as exited:
        main(["check", str(path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"mg1.d1: bad params for a {kind}: {message}" in err


def test_a_device_built_without_the_scenario_is_checked_too() -> None:
    with pytest.raises(TypeError, match=r"^params\.rating_w must be above 0, got 0$"):
        SunSpecDevice.create("pv1", "mg1", "pv", 1, {"rating_w": 0.0})


def test_a_scenario_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: r25\nspeed: 1\nmicrogrids: []\nspeed: 60\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="key 'speed' given twice, lines 2 and 4"):
        load_scenario(path)


def test_the_controller_tolerates_exactly_the_params_firmware_sim_takes() -> None:
    # the controller ignores the lab's physics params but refuses any other key (R25 F5); the lists must agree
    assert {kind: sorted(names) for kind, names in LAB_PARAMS.items()} == {
        kind: device_params(kind) for kind in ("pv", "battery", "genset", "load")
    }


def test_the_controller_tolerates_exactly_the_keys_and_kinds_firmware_sim_takes() -> None:
    # outside `market:` the controller refuses a key firmware-sim does not take either (U5); the lists must agree
    models = {"scenario": Scenario, "profile": Profile, "microgrid": Microgrid, "device": Device}
    assert {level: sorted(keys) for level, keys in LAB_KEYS.items()} == {
        level: sorted(model.model_fields) for level, model in models.items()
    }
    assert set(get_args(Kind)) == LAB_KINDS


def _in_range(kind: str) -> st.SearchStrategy[dict[str, float]]:
    positive = st.floats(1.0, 1e6)
    percent = st.floats(0.0, 100.0)
    share = st.floats(0.01, 1.0)
    if kind == "pv":
        return st.fixed_dictionaries(
            {"rating_w": positive},
            optional={
                "dc_rating_w": positive,
                "efficiency": share,
                "limit_pct": percent,
                "w_max": st.floats(0, 1e6),
            },
        )
    if kind == "battery":
        return st.fixed_dictionaries(
            {"capacity_wh": positive, "max_charge_w": positive, "max_discharge_w": positive},
            optional={
                "soc_pct": percent,
                "charge_efficiency": share,
                "reserve_pct": percent,
                "nominal_v": positive,
            },
        )
    if kind == "genset":
        return st.fixed_dictionaries(
            {"rating_w": positive},
            optional={
                "min_load_pct": percent,
                "ramp_w_per_s": st.floats(0, 1e5),
                "start_delay_s": st.floats(0, 600),
            },
        )
    return st.fixed_dictionaries(
        {"critical_w": st.floats(0, 1e6), "sheddable_w": st.floats(0, 1e6)}, optional={"shed_pct": percent}
    )


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["pv", "battery", "genset", "load"]).flatmap(
        lambda k: st.tuples(st.just(k), _in_range(k))
    )
)
def test_params_inside_the_ranges_build_and_run(kind_params: tuple[str, dict[str, float]]) -> None:
    kind, params = kind_params
    assert device_params_problem(kind, params) is None
    spec = Scenario.model_validate(scenario({"name": "d1", "kind": kind, "params": params}))
    clock = SimClock(spec.start_epoch() + 12 * 3600, 0.0)
    sim = Simulation(spec, clock)
    for _ in range(3):
        clock.advance(60.0)
        sim.tick()
    assert sim.microgrids["mg1"].devices["d1"].readings()
