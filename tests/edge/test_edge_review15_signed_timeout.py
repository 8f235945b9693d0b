"""review15 M5: a meter's signed block (vendor model 64204) that times out leaves the poll whole and unsigned.

328b30b kept a poll whole when that one block got an exception reply; a timeout on it (a meter busy signing,
a gateway dropping the one long request) still failed the whole poll: its 203 counters were lost, the driver
forgot the models and rediscovered, and timed out again, every poll. The emulated meter over real Modbus TCP
on loopback, the edge's own driver; the meter is made silent (or late) for reads of its 64204 block's body
only, test-locally around the emulator's `answer` (the emulator has no per-model silence fault): each poll
keeps its counters and says why its reading is unsigned, no rediscovery, and once the block answers again
the poll is signed (the connection opened afresh after the timeout, so a late answer never meets a later
request). A silent 203 block still fails the poll; an exception reply on 64204 now says why too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_meter_signed_poll import poll_once

from peergrid_edge import modbus as edge_modbus
from peergrid_edge.commitments import leaf_record, reading_leaf
from peergrid_edge.config import DeviceSettings
from peergrid_edge.drivers import Snapshot
from peergrid_edge.meter_signed import Unsigned, meter_signed
from peergrid_ledger.meter_signing import SignedReading
from peergrid_sim import server as sim_server
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.server import ModbusTcpServer

TIMEOUT_S = 0.5


class Quiet:
    """The emulator's answers, except reads of one model's body (not its ID and L header, which discovery
    walks), found in the driver's discovered models: those stay silent or come `late_s` after the request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.body: tuple[int, int] | None = None  # [first, end) registers
        self.how = "answer"
        self.late_s = 0.0
        self.real = sim_server.answer
        monkeypatch.setattr(sim_server, "answer", self.answer)

    def quiet(self, driver: edge_modbus.SunSpecModbusDriver, model: int, how: str) -> None:
        address, length = next((a, n) for m, a, n in driver.models if m == model)
        self.body, self.how = (address + 2, address + 2 + length), how

    async def answer(self, device: Any, pdu: bytes) -> bytes | None:
        if self.how != "answer" and self.body is not None and pdu[:1] == b"\x03":
            first, count = int.from_bytes(pdu[1:3], "big"), int.from_bytes(pdu[3:5], "big")
            if first < self.body[1] and self.body[0] < first + count:
                if self.how == "silent":
                    return None
                await asyncio.sleep(self.late_s)
        return await self.real(device, pdu)


def polls(quiet: Quiet, model: int, how: str, n: int = 2) -> tuple[list[Snapshot], list[int], int]:
    """A normal poll, then `n` with `model`'s body quiet, then one with it answering again: the snapshots,
    the requests each poll sent, and the models known at the end."""
    device = SunSpecDevice.create("pcc", "s", "meter", 1, {"rating_w": 10_000.0, "key_seed": 11.0})
    device.model.export_wh, device.model.import_wh = 1234.0, 56.0
    quiet.late_s = 2 * TIMEOUT_S

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
                    quiet.quiet(driver, model, how)
                if i == n + 1:
                    quiet.how = "answer"
                    await asyncio.sleep(quiet.late_s)  # any late answer is out by now
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
def test_a_signed_block_that_times_out_keeps_the_poll_whole_and_says_why(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    snaps, sent, known = polls(Quiet(monkeypatch), 64204, how)
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


def test_a_silent_counter_block_still_fails_the_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    snaps, _, known = polls(Quiet(monkeypatch), 203, "silent", n=1)
    assert snaps[0].ok and not snaps[1].ok and snaps[2].ok
    assert known > 0  # rediscovered after the failed poll


def test_an_exception_on_the_signed_block_says_why_in_the_leaf() -> None:
    snap = poll_once(64204)  # the emulator answering its signed block with Modbus exception 4
    unsigned = meter_signed(snap.points)
    assert snap.ok and isinstance(unsigned, Unsigned) and "exception code 4" in unsigned.why
    leaf = reading_leaf(snap.device, snap.nature, snap.at, snap.reading, unsigned)
    assert "signed block was not read: exception code 4" in leaf_record(leaf)["unsigned"]
