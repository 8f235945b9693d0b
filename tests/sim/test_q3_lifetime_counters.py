"""The emulated devices start their lifetime energy counters where a device in service would (`lifetime`).

Before, every counter started at 0, which SunSpec reads as "not accumulated": each fresh lab's PCC meters were
read without counters and the MGMCs warned "energy_wh not read (... the counter at 0 ...)" at start-up. Now each
device starts from a figure seeded by its serial (the same in every run); what a counter counts from there, the
deltas the metering uses, is what it counted from 0, to within the Wh its rounding may fall either side of."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from peergrid_edge import natures
from peergrid_edge.quality import implausible
from peergrid_edge.sunspec import decode_model
from peergrid_sim.clock import SimClock
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.lifetime import MOST_WH
from peergrid_sim.runtime import Simulation
from peergrid_sim.scenario import load_scenario

LAB = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
COUNTERS = {"pv": ("energy_wh",), "genset": ("energy_wh",), "load": ("energy_wh",),
            "meter": ("import_wh", "export_wh"), "battery": ("discharged_wh", "charged_wh")}  # fmt: skip


def models(device: SunSpecDevice) -> dict[str, dict[str, Any]]:
    """Each model block of the device's image decoded as the edge decodes it (`decode_model`)."""
    device.sync()
    registers, found, at = device.image.registers, {}, 2
    while registers[at] != 0xFFFF:
        model_id, length = registers[at], registers[at + 1]
        found[str(model_id)] = decode_model(model_id, registers[at : at + 2 + length])
        at += 2 + length
    return found


def lab() -> Simulation:
    scenario = load_scenario(LAB)
    return Simulation(scenario, SimClock(scenario.start_epoch(), monotonic=lambda: 0.0))


def test_a_fresh_labs_meters_are_read_with_both_counters_and_no_quality_warning() -> None:
    meters = [d for mg in lab().microgrids.values() for d in mg.devices.values() if d.kind == "meter"]
    assert len(meters) == 6
    for meter in meters:
        reading = natures.reading("meter", models(meter))
        assert reading["energy_wh"] and reading["import_wh"], meter.name  # not SunSpec's "not accumulated"
        assert implausible("meter", reading) == [], meter.name


def test_each_device_starts_from_its_own_figure_the_same_in_every_run() -> None:
    first, again = lab(), lab()
    figures = []
    for mg_name, mg in first.microgrids.items():
        for device in mg.devices.values():
            for counter in COUNTERS[device.kind]:
                wh = getattr(device.model, counter)
                assert wh == getattr(again.microgrids[mg_name].devices[device.name].model, counter)
                assert 0 < wh <= MOST_WH + 1_000  # (a tick at start may have counted a little)
                figures.append(wh)
    seeded = [wh for wh in figures if wh < MOST_WH]  # (the most a device starts from is the same for all)
    assert len(set(seeded)) == len(seeded) > 30  # seeded by each serial, not one figure for all


def test_a_counter_the_scenario_presets_is_kept() -> None:
    pv = SunSpecDevice.create("pv1", "mg1", "pv", 1, {"rating_w": 5_000.0, "energy_wh": 12.0})
    meter = SunSpecDevice.create("pcc", "mg1", "meter", 2, {"rating_w": 5_000.0, "export_wh": 0.0})
    bank = {
        "capacity_wh": 20_000.0,
        "max_charge_w": 5_000.0,
        "max_discharge_w": 5_000.0,
        "discharged_wh": 4e4,
    }
    battery = SunSpecDevice.create("bess1", "mg1", "battery", 3, bank)
    assert pv.model.energy_wh == 12.0
    assert meter.model.export_wh == 0.0 and meter.model.import_wh > 0  # the other one still seeded
    assert battery.model.discharged_wh == 4e4 and battery.model.cycles == 2.0
    assert battery.model.charged_wh > 0


def test_a_batterys_cycles_and_charge_go_with_its_discharge() -> None:
    bank = {"capacity_wh": 20_000.0, "max_charge_w": 5_000.0, "max_discharge_w": 5_000.0}
    battery = SunSpecDevice.create("bess1", "mg1", "battery", 1, bank).model
    assert 100 <= battery.cycles < 600 and battery.cycles == battery.discharged_wh / battery.capacity_wh
    losses = battery.charge_efficiency * battery.discharge_efficiency
    assert battery.charged_wh == pytest.approx(battery.discharged_wh / losses, abs=1_000)
    assert battery.discharged_wh % 1_000 == 0 and battery.charged_wh % 1_000 == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(1.0, 900.0), st.floats(-300_000.0, 300_000.0)), min_size=1, max_size=40))
# R37: 298.2 kW imported for 1 s three times is 248.5 Wh from 0 (rounded half to even: 248) and a hair above it
# on the seeded float (249): the same flow, rounded the other way
@example([(1.0, -298_200.0)] * 3)
@example([(1.0, -299_100.0)] * 6)
def test_a_meters_register_deltas_are_those_it_counted_from_zero(steps: list[tuple[float, float]]) -> None:
    """The same flows through a meter started from its lifetime figure and one started at 0: at every read
    the registers (TotWhExp, TotWhImp in whole Wh, as the edge and the DSO read them) moved by the same Wh,
    but for the Wh a count ending at half a Wh may round either side of (the two floats differ by at most a
    millionth of a Wh a step)."""
    seeded = SunSpecDevice.create("meter", "mg4", "meter", 1, {"rating_w": 400_000.0})
    zero = SunSpecDevice.create("meter", "mg4", "meter", 1,
                                {"rating_w": 400_000.0, "export_wh": 0.0, "import_wh": 0.0})  # fmt: skip

    def counters(device: SunSpecDevice) -> tuple[int, int]:
        block = models(device)["203"]
        return block["TotWhExp"] or 0, block["TotWhImp"] or 0

    start = counters(seeded)
    assert min(start) > 0
    for dt, net_injection_w in steps:
        for device in (seeded, zero):
            device.model.update(dt, [net_injection_w])
            device.mark_stale()
        now, counted = counters(seeded), counters(zero)
        moved = (now[0] - start[0], now[1] - start[1])
        assert all(abs(m - c) <= 1 for m, c in zip(moved, counted, strict=True)), (moved, counted)
