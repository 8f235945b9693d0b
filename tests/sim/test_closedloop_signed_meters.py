"""The lab's PCC meters sign their readings: the scenario firmware-sim runs gives each MG's meter a `key_seed`
from the lab's meter seed, and the DSO node's config enrols the public key that meter signs with
(`mgs.<mg>.meter_key`), so the DSO meters those MGs from the signatures only. On by default;
`--unsigned-meters` turns both off. The lab run that shows it end to end is test_closedloop_settle_both's."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from peergrid_dso.dispute_node import signing_meters
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_ledger.genesis import Genesis
from peergrid_ledger.meter_signing import SignedReading, meter_keypair, verify_reading
from peergrid_sim.clock import SimClock
from peergrid_sim.closedloop import (
    METER_SEED_FILE,
    LabChains,
    dso_node_config,
    lab_meter_seed,
    meter_keys,
    pcc_meter_seeds,
)
from peergrid_sim.closedloop_run import ClosedLoop
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.runtime import Simulation
from peergrid_sim.scenario import Scenario, load_scenario
from peergrid_sim.testbed import build_parser, lab_loop, meters_line

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def test_the_lab_meter_seed_is_made_once_and_kept_with_the_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    seed = lab_meter_seed(keys)
    assert 0 <= seed < 2**53
    assert (keys / METER_SEED_FILE).read_text() == f"{seed}\n"
    assert lab_meter_seed(keys) == seed  # a second start of the lab directory: the same meter keys
    assert not list(keys.glob("*.tmp"))
    # a fresh lab draws its own
    assert len({lab_meter_seed(tmp_path / f"lab{i}") for i in range(4)}) > 1


@pytest.mark.parametrize(
    "text", ["", "\n", "abc", "-1", "1.5", "1e3", "9007199254740992", "12 34", "\u0661\u0662", "0x10"]
)
def test_a_seed_file_that_holds_no_seed_is_refused_and_kept(tmp_path: Path, text: str) -> None:
    path = tmp_path / METER_SEED_FILE
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=METER_SEED_FILE):
        lab_meter_seed(tmp_path)
    assert path.read_text(encoding="utf-8") == text  # never replaced: the enrolled keys would change


def test_the_largest_seed_is_taken(tmp_path: Path) -> None:
    (tmp_path / METER_SEED_FILE).write_text(f" {2**53 - 1}\n")
    assert lab_meter_seed(tmp_path) == 2**53 - 1


def _scenario(edit: Any = None) -> Scenario:
    raw = yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))
    if edit is not None:
        edit({mg["name"]: mg for mg in raw["microgrids"]})
    return Scenario.model_validate(raw)


def test_each_mg_with_a_modbus_meter_signs_with_the_lab_seed_or_its_own() -> None:
    assert pcc_meter_seeds(_scenario(), 7) == {f"mg{i}": ("meter", 7) for i in range(1, 7)}

    def edit(mgs: dict[str, Any]) -> None:
        mgs["mg1"]["devices"] = [d for d in mgs["mg1"]["devices"] if d["kind"] != "meter"]  # meterless
        meter = next(d for d in mgs["mg3"]["devices"] if d["kind"] == "meter")
        meter["params"] = {"key_seed": 99}  # the scenario's own seed
        meter = next(d for d in mgs["mg4"]["devices"] if d["kind"] == "meter")
        meter["protocol"] = "mqtt"  # its telemetry carries no signed reading
        meter = next(d for d in mgs["mg5"]["devices"] if d["kind"] == "meter")
        meter["name"] = "pcc"

    seeds = pcc_meter_seeds(_scenario(edit), 7)
    assert seeds == {"mg2": ("meter", 7), "mg3": ("meter", 99), "mg5": ("pcc", 7), "mg6": ("meter", 7)}
    keys = meter_keys(seeds)
    assert keys["mg5"] == meter_keypair(7, "mg5", "pcc").public.hex()
    assert len(set(keys.values())) == 4  # one seed, a key per meter


def _bed(tmp_path: Path) -> Any:
    return types.SimpleNamespace(
        workdir=tmp_path, scenario_path=SCENARIO, scenario=load_scenario(SCENARIO), speed=None
    )


def _dso_config(loop: ClosedLoop, bed: Any, tmp_path: Path) -> dict[str, Any]:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    return dso_node_config(
        chains, "ieee33", ("127.0.0.1", 1883), tmp_path / "dso", bed.scenario, tmp_path / "ep.json",
        loop.loop_timing(), tmp_path / "records", meter_keys=meter_keys(loop.meter_seeds(bed)),
    )  # fmt: skip


def test_each_lab_meter_signs_with_the_key_the_dso_enrols(tmp_path: Path) -> None:
    loop = ClosedLoop(intervals=2, lead=30.0)
    bed = _bed(tmp_path)
    written = load_scenario(loop.sim_scenario(bed))  # firmware-sim's own reader takes the copy
    cfg = _dso_config(loop, bed, tmp_path)
    settings = IntervalNodeSettings.model_validate(cfg)  # the DSO node's settings model accepts it
    sim = Simulation(written, SimClock(written.start_epoch(), 0.0))  # the emulator as firmware-sim builds it
    for mg in written.microgrids:
        meter = next(d for d in mg.devices if d.kind == "meter")
        assert meter.params["key_seed"] == lab_meter_seed(tmp_path / "keys")
        # that copy's meter signs a reading that verifies under the key the DSO enrols, and under no other MG's
        device = sim.device(f"{mg.name}/{meter.name}")
        assert isinstance(device, SunSpecDevice) and device.signer is not None
        fields = device.signer.readings({"export_wh": 1200.4, "import_wh": 3})
        reading = SignedReading(
            fields["signed_meter"], fields["signed_ms"], fields["signed_export_wh"], fields["signed_import_wh"],
            bytes.fromhex(fields["signature"]),
        )  # fmt: skip
        for other, entry in cfg["mgs"].items():
            assert verify_reading(bytes.fromhex(entry["meter_key"]), reading) == (other == mg.name)
        assert all("key_seed" not in d.params for d in mg.devices if d.kind != "meter")
    enrolled = signing_meters(settings.mgs, 2.0)
    assert enrolled is not None and len(set(enrolled.keys.values())) == 6
    line = meters_line(types.SimpleNamespace(loop=loop, workdir=tmp_path, scenario=bed.scenario))
    assert line.startswith("PCC meters sign: 6 of 6 MGs (mg1 mg2 mg3 mg4 mg5 mg6)")
    # a second start of the same lab directory: the same keys
    again = ClosedLoop(intervals=2, lead=30.0)
    assert _dso_config(again, bed, tmp_path)["mgs"] == cfg["mgs"]


def test_unsigned_meters_leave_the_scenario_and_the_dso_as_before(tmp_path: Path) -> None:
    loop = ClosedLoop(intervals=2, lead=30.0, signed_meters=False)
    bed = _bed(tmp_path)
    raw = yaml.safe_load(loop.sim_scenario(bed).read_text())
    assert not [d for mg in raw["microgrids"] for d in mg["devices"] if "key_seed" in (d.get("params") or {})]
    cfg = _dso_config(loop, bed, tmp_path)
    assert not [e for e in cfg["mgs"].values() if "meter_key" in e]
    assert not (tmp_path / "keys" / METER_SEED_FILE).exists()
    line = meters_line(types.SimpleNamespace(loop=loop, workdir=tmp_path, scenario=bed.scenario))
    assert line.startswith("PCC meters: unsigned")


def _genesis_params(workdir: Path) -> Any:
    return Genesis.from_json(json.loads((workdir / "keys" / "mgmc-genesis.json").read_text())).params


@pytest.mark.parametrize(("argv", "quiet_ms"), [([], 500), (["--block-period-ms", "100"], 250)])
def test_the_testbed_signs_by_default_and_counts_the_quiet_close_in_its_own_blocks(
    tmp_path: Path, argv: list[str], quiet_ms: int
) -> None:
    args = build_parser().parse_args(
        ["--scenario", str(SCENARIO), "--intervals", "2", "--settle-by-both", *argv]
    )
    assert args.unsigned_meters is False
    loop = lab_loop(args, tmp_path, load_scenario(SCENARIO))
    assert loop is not None and loop.signed_meters and loop.block_period_ms == args.block_period_ms
    # C5's quiet-close rule: two and a half of the MGMC chain's block periods, as --block-period-ms sets them
    assert _genesis_params(tmp_path).close_quiet_ms == quiet_ms
    args = build_parser().parse_args(["--scenario", str(SCENARIO), "--intervals", "2", "--unsigned-meters"])
    unsigned = lab_loop(args, tmp_path / "other", load_scenario(SCENARIO))
    assert unsigned is not None and not unsigned.signed_meters
