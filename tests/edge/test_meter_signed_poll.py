"""A signing meter whose signed block (vendor model 64204) fails still gives its poll: its 203 counters are read,
the reading is just unsigned, saying why (the DSO then says so for a signing MG), where before the whole poll failed and the
edge lost the meter's own counters for its statements too."""

from __future__ import annotations

import asyncio

from peergrid_edge import modbus as edge_modbus
from peergrid_edge.config import DeviceSettings
from peergrid_edge.drivers import Snapshot
from peergrid_edge.meter_signed import Unsigned, meter_signed
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.server import ModbusTcpServer


def poll_once(exception_model: int | None) -> Snapshot:
    device = SunSpecDevice.create("pcc", "s", "meter", 1, {"rating_w": 10_000.0, "key_seed": 7.0})
    device.model.export_wh, device.model.import_wh = 1234.0, 56.0
    device.mark_stale()
    device.faults.exception_model = exception_model

    async def run() -> Snapshot:
        server = ModbusTcpServer("127.0.0.1", 0, {1: device})
        port = await server.start()
        driver = edge_modbus.SunSpecModbusDriver(
            DeviceSettings(name="pcc", nature="meter", port=port, timeout_s=2)
        )
        try:
            return await driver.read_all()
        finally:
            driver.close()
            await server.close()

    return asyncio.run(run())


def test_a_failing_signed_block_leaves_the_poll_whole_and_the_reading_unsigned() -> None:
    snap = poll_once(64204)
    assert snap.ok, snap.error
    assert "203" in snap.points
    unsigned = meter_signed(snap.points)  # saying why (review15 M5), for the leaf's `unsigned` field
    assert isinstance(unsigned, Unsigned) and "exception code 4" in unsigned.why
    assert snap.reading["energy_wh"] == 1234.0


def test_a_failing_meter_model_other_than_the_signed_block_still_fails_the_poll() -> None:
    snap = poll_once(203)
    assert not snap.ok and "exception code" in str(snap.error)


def test_without_the_fault_the_poll_carries_the_signed_reading() -> None:
    snap = poll_once(None)
    assert snap.ok and meter_signed(snap.points) is not None
