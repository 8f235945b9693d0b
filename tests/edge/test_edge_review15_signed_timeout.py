"""review15 M5: a meter's signed block (vendor model 64204) that times out leaves the poll whole and unsigned.

328b30b kept a poll whole when that one block got an exception reply; a timeout on it (a meter busy signing,
a gateway dropping the one long request) still failed the whole poll: its 203 counters were lost, the driver
forgot the models and rediscovered, and timed out again, every poll. The emulated meter over real Modbus TCP
on loopback, the edge's own driver; the meter is made silent (or late) for reads of its 64204 block's body
only, by the emulator's own fault (`Faults.silent_model`, `silent_model_late_s`): each poll
keeps its counters and says why its reading is unsigned, no rediscovery, and once the block answers again
the poll is signed (the connection opened afresh after the timeout, so a late answer never meets a later
request). A silent 203 block still fails the poll; an exception reply on 64204 now says why too.
"""

from __future__ import annotations

import asyncio

import pytest
from test_meter_signed_poll import poll_once

from peergrid_edge import modbus as edge_modbus
from peergrid_edge.commitments import leaf_record, reading_leaf
from peergrid_edge.config import DeviceSettings
from peergrid_edge.drivers import Snapshot
from peergrid_edge.meter_signed import Unsigned, meter_signed
from peergrid_ledger.meter_signing import SignedReading
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.server import ModbusTcpServer

TIMEOUT_S = 0.5


def polls(model: int, how: str, n: int = 2) -> tuple[list[Snapshot], list[int], int]:
    """A normal poll, then `n` with `model`'s body quiet (firmware-sim's `Faults.silent_model`: no answer, or
    with `silent_model_late_s` one after the driver's timeout), then one with it answering again: the
    snapshots, the requests each poll sent, and the models known at the end."""
    device = SunSpecDevice.create("pcc", "s", "meter", 1, {"rating_w": 10_000.0, "key_seed": 11.0})
    device.model.export_wh, device.model.import_wh = 1234.0, 56.0
    late_s = 2 * TIMEOUT_S

    async def run() -> tuple[list[Snapshot], list[int], int]:
        server = ModbusTcpServer("127.0.0.1", 0, {1: device})
        port = await server.start()
        driver = edge_modbus.SunSpecModbusDriver(
            DeviceSettings(name="pcc", nature="meter", port=port, timeout_s=TIMEOUT_S)
        )
        snaps, sent = [], []
        try:
            for i in range(n + 2):
                if i == 1:
                    device.faults.silent_model = model
                    device.faults.silent_model_late_s = late_s if how == "late" else 0.0
                if i == n + 1:
                    device.faults.silent_model = None
                    await asyncio.sleep(late_s)  # any late answer is out by now
                device.mark_stale()
                before = driver.requests
                snaps.append(await driver.read_all())
                sent.append(driver.requests - before)
            return snaps, sent, len(driver.models)
        finally:
            driver.close()
            await server.close()

    return asyncio.run(run())


@pytest.mark.parametrize("how", ["silent", "late"])
def test_a_signed_block_that_times_out_keeps_the_poll_whole_and_says_why(how: str) -> None:
    snaps, sent, known = polls(64204, how)
    first, *quiet, after = snaps
    assert first.ok and isinstance(meter_signed(first.points), SignedReading)
    models = sent[-1]  # one request per model block: 1, 203, 64204
    assert sent[0] > models  # the first poll discovered them
    for snap, requests in zip(quiet, sent[1:-1], strict=True):
        assert snap.ok, snap.error
        assert snap.reading["energy_wh"] == 1234.0  # its 203 counters kept
        unsigned = meter_signed(snap.points)
        assert isinstance(unsigned, Unsigned) and "timed out" in unsigned.why, unsigned
        assert requests == models  # no rediscovery
        leaf = reading_leaf(snap.device, snap.nature, snap.at, snap.reading, unsigned)
        assert "timed out" in leaf_record(leaf)["unsigned"]
    assert after.ok and isinstance(meter_signed(after.points), SignedReading)
    assert known == models


def test_a_silent_counter_block_still_fails_the_poll() -> None:
    snaps, _, known = polls(203, "silent", n=1)
    assert snaps[0].ok and not snaps[1].ok and snaps[2].ok
    assert known > 0  # rediscovered after the failed poll


def test_an_exception_on_the_signed_block_says_why_in_the_leaf() -> None:
    snap = poll_once(64204)  # the emulator answering its signed block with Modbus exception 4
    unsigned = meter_signed(snap.points)
    assert snap.ok and isinstance(unsigned, Unsigned) and "exception code 4" in unsigned.why
    leaf = reading_leaf(snap.device, snap.nature, snap.at, snap.reading, unsigned)
    assert "signed block was not read: exception code 4" in leaf_record(leaf)["unsigned"]
