"""review25 F6: a PCC meter whose energy counters decode to no value polled "ok" forever and was never named.

Its 203 TotWh_SF out of range (or "not implemented"), or its counters still 0 (SunSpec's acc32 "not
accumulated"), turned energy_wh and import_wh into None: the sealed reading carried no counter, the DSO's
metering read that MG as unmetered in a dispute, and nothing in the health report, log or metrics said so.
Now the data-quality check names each counter the reading carries without a value, and the driver logs the
refused scale factor once per change (a firmware-sim meter on loopback Modbus TCP)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_edge import modbus as edge_modbus
from peergrid_edge.config import DeviceSettings
from peergrid_edge.quality import implausible
from peergrid_edge.sunspec import decode_model, model_def, refused_scales
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.server import ModbusTcpServer

EXPORT = (
    "energy_wh not read (its export counter's scale factor refused, or the counter at 0: not accumulated): "
    "the DSO finds no export counter in this reading"
)
IMPORT = EXPORT.replace("energy_wh", "import_wh").replace("export", "import")


def meter(export_wh: float, import_wh: float) -> SunSpecDevice:
    device = SunSpecDevice.create("pcc", "mg1", "meter", 1, {"rating_w": 50000})
    device.model.export_wh, device.model.import_wh = export_wh, import_wh
    device.mark_stale()
    return device


def force_raw(device: SunSpecDevice, key: str, raw: int) -> None:
    """Point `key` reports the raw register `raw` (kept over re-renders)."""
    image = device.image
    image.overrides[key] = [raw]
    image.registers[image.by_key[key].address - image.base] = raw


def polls(device: SunSpecDevice, rounds: list[int | None]) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """One poll per entry of `rounds`, 203.TotWh_SF forced to that raw value first (None: the device's own);
    each poll's reading and the driver's refused points after it."""

    image = device.image
    own = image.registers[image.by_key["203.TotWh_SF"].address - image.base]

    async def run() -> list[tuple[dict[str, Any], tuple[str, ...]]]:
        server = ModbusTcpServer("127.0.0.1", 0, {1: device})
        port = await server.start()
        driver = edge_modbus.SunSpecModbusDriver(
            DeviceSettings(name="pcc", nature="meter", port=port, timeout_s=2)
        )
        seen = []
        try:
            for raw in rounds:
                force_raw(device, "203.TotWh_SF", own if raw is None else raw)
                snap = await driver.read_all()
                assert snap.ok, snap.error  # the poll itself is fine: that was the trouble
                seen.append((snap.reading, driver.refused))
        finally:
            driver.close()
            await server.close()
        return seen

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("raw", "why"), [(11, "TotWh_SF 11, outside -10..10"), (0x8000, "TotWh_SF not implemented")]
)
def test_a_refused_counter_scale_factor_is_named_by_data_quality_and_logged_once_per_change(
    raw: int, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge.modbus")
    seen = polls(meter(1234.0, 5678.0), [None, raw, raw, raw, None])
    readings = [reading for reading, _ in seen]
    assert [(r["energy_wh"], r["import_wh"]) for r in readings] == [(1234.0, 5678.0)] + [(None, None)] * 3 + [
        (1234.0, 5678.0)
    ]
    assert [implausible("meter", r) for r in readings] == [[]] + [[EXPORT, IMPORT]] * 3 + [[]]
    refused = (f"203.TotWhExp ({why})", f"203.TotWhImp ({why})")
    assert [r for _, r in seen] == [(), refused, refused, refused, ()]
    said = [(rec.levelno, rec.getMessage()) for rec in caplog.records if rec.name == "peergrid.edge.modbus"]
    assert said == [
        (logging.WARNING, f"device pcc: scale factor refused, read as no value: {'; '.join(refused)}"),
        (logging.INFO, "device pcc: every scale factor it reports is in range again"),
    ]


def test_counters_still_at_zero_are_named_though_no_scale_factor_was_refused() -> None:
    ((reading, refused),) = polls(meter(0.0, 0.0), [None])
    assert reading["energy_wh"] is None and reading["import_wh"] is None
    assert implausible("meter", reading) == [EXPORT, IMPORT]
    assert refused == ()  # the counters are "not accumulated", their scale factor is fine


def test_only_a_meter_reading_that_carries_a_counter_without_value_is_named() -> None:
    assert implausible("meter", {"power_w": 10.0, "energy_wh": 1.0, "import_wh": 2.0}) == []
    assert implausible("meter", {"power_w": 10.0, "energy_wh": 1.0, "import_wh": None}) == [IMPORT]
    assert implausible("meter", {"power_w": 10.0}) == []  # no counter in this reading at all: nothing to name
    assert implausible("load", {"power_w": 10.0, "energy_wh": None}) == []  # a load's counter meters nothing


def test_refused_scales_lists_only_implemented_points_whose_scale_factor_is_refused() -> None:
    device = meter(1234.0, 0.0)  # import counter 0: "not accumulated", not a refused scale factor
    device.sync()
    force_raw(device, "203.TotWh_SF", 11)
    image = device.image
    start = image.by_key["203.ID"].address - image.base
    length = image.registers[start + 1] + 2
    assert refused_scales(203, image.registers[start : start + length]) == {
        "TotWhExp": "TotWh_SF 11, outside -10..10"
    }


@given(st.lists(st.integers(0, 0xFFFF), min_size=105, max_size=105))
def test_every_point_refused_scales_lists_decodes_to_none_and_every_other_keeps_its_value(
    regs: list[int],
) -> None:
    """The property behind the log line: a listed point is one `decode_model` gave no value for, and an
    implemented point whose scale factor is fine is never listed."""
    block = [203, 105, *regs]
    values, refused = decode_model(203, block), refused_scales(203, block)
    assert all(values[name] is None for name in refused)
    for p in model_def(203).points:
        if isinstance(p.sf, str) and p.name not in refused and p.type != "sunssf":
            sf = values[p.sf]
            assert values[p.name] is None or (isinstance(sf, int) and -10 <= sf <= 10)
