"""R37-3 end to end without a lab: an emulated PCC meter that a scenario presets near the top of its acc32 export
register (model 203 TotWhExp, TotWh_SF 0) exports across it. The register rolls over to 0 as a real one does
(`sunspec.encode`: accumulators wrap), its signed 64204 counter counts on (uint64), and the edge's reading of
its registers (`decode_model`, `natures.reading`, `commitments.reading_leaf`) metered by `peergrid_ledger.
metering` is what the physics counted, within the Wh each rounded reading may fall either side; the DSO's
count of the signed readings is the same."""

from __future__ import annotations

from pathlib import Path

import yaml
from test_q3_lifetime_counters import models  # the device's image decoded as the edge decodes it

from peergrid_edge import natures
from peergrid_edge.commitments import reading_leaf
from peergrid_edge.meter_signed import meter_signed
from peergrid_ledger.counter_roll import ACC32
from peergrid_ledger.meter_signing import counted_leaves, meter_keypair
from peergrid_ledger.metering import COUNTER, counting_leaves, metered
from peergrid_sim.clock import SimClock
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.runtime import Simulation
from peergrid_sim.scenario import load_scenario

START = ACC32 - 300  # Wh: the meter's export register 300 Wh below its top

SCENARIO = {
    "name": "meter-near-the-wrap",
    "start": "2026-06-21T12:00:00Z",
    "profiles": {"sunny": {"irradiance": [[0, 950], [24, 950]], "temperature": [[0, 25], [24, 25]]}},
    "microgrids": [
        {
            "name": "mg1",
            "bus": 18,
            "profile": "sunny",
            "devices": [
                {"name": "pv1", "kind": "pv", "params": {"rating_w": 200_000, "dc_rating_w": 220_000}},
                {"name": "meter", "kind": "meter", "params": {"export_wh": START, "key_seed": 42}},
            ],
        }
    ],
}


def test_a_meter_preset_near_the_wrap_rolls_over_and_is_metered_across_it(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    scenario = load_scenario(path)
    mono = [0.0]
    sim = Simulation(scenario, SimClock(scenario.start_epoch(), monotonic=lambda: mono[0]))
    meter = sim.device("mg1/meter")
    assert isinstance(meter, SunSpecDevice) and meter.signer is not None
    meter.signer.wall = lambda: sim.t
    exported0, leaves, registers, stamps = meter.model.export_wh, [], [], []
    for second in range(31):
        mono[0] = float(second)
        sim.tick()
        points = models(meter)
        registers.append(points["203"]["TotWhExp"])
        stamps.append(round(sim.t * 1000))
        reading = natures.reading("meter", points)
        leaves.append(reading_leaf("meter", "meter", sim.t, reading, meter_signed(points)))
    counted = meter.model.export_wh - exported0
    assert 300 < counted < 3_000  # the PV's export took it across the top, once
    assert registers[0] is not None and registers[0] >= START  # the preset, near the top
    assert registers[-1] is not None and registers[-1] < 3_000  # rolled over to a small figure
    assert points["64204"]["TotWhExp"] > ACC32  # the signed counter (uint64) counts on

    window = (stamps[0], stamps[-1])
    read = metered(counting_leaves(leaves, "seller"), window, COUNTER["seller"], 1_000)
    assert read == round(exported0 + counted) - round(exported0)  # what the rounded readings differ by
    assert abs(read - counted) <= 1

    key = meter_keypair(42, "mg1", "meter").public
    signed = counted_leaves(leaves, key, 2_000)
    assert signed.verified == 31
    assert metered(signed.leaves, window, COUNTER["seller"], 1_000, rolls=False) == read
