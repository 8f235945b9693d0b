"""review25 F3: on one RS-485 line a device that answers late must not take its healthy neighbour's readings.

Two firmware-sim batteries on one Modbus RTU line (a pty pair; the line in this test's own event loop), the
edge's drivers polling both at once as the daemon's poll tasks do (one shared client, taking turns). b2
answers just past the client's timeout. Before, the bus lock was released at the timeout, b3's request went
out, and pymodbus received b2's late frame and b3's answer in one read and dropped both: b3 read in 1 of 20
polls (0.55 s late), 0 of 20 (0.9 s). Now the line is held one more timeout after an unanswered request, so
the late frame lands while no request waits and is dropped alone; b3 pays b2's time, never its readings.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from peergrid_edge import modbus as edge_modbus
from peergrid_edge.config import DeviceSettings
from peergrid_edge.drivers import DeviceError
from peergrid_edge.polling import poll_once
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.server import ModbusRtuLine

BAT = {"capacity_wh": 20000, "max_charge_w": 5000, "max_discharge_w": 5000}
TIMEOUT_S = 0.5


def battery(name: str, unit: int, soc: float) -> SunSpecDevice:
    return SunSpecDevice.create(name, "mg1", "battery", unit, {**BAT, "soc_pct": soc})


def settings(
    name: str, unit: int, port: str, timeout_s: float = TIMEOUT_S, retries: int = 1
) -> DeviceSettings:
    return DeviceSettings(
        name=name,
        nature="battery",
        protocol="modbus-rtu",
        serial_port=port,
        unit_id=unit,
        timeout_s=timeout_s,
        retries=retries,
    )


def driver(name: str, unit: int, port: str) -> edge_modbus.SunSpecModbusDriver:
    return edge_modbus.SunSpecModbusDriver(settings(name, unit, port))


async def on_a_line(late_s: float, polls: int, writes: int) -> tuple[Counter[str], Counter[str], list[str]]:
    """`polls` rounds of both devices polled at once, then `writes` rounds of a write to b2 with a poll of b3:
    how each poll of b2 and b3 ended ("soc 30.0", "failed"), and what each write to b2 raised."""
    b2, b3 = battery("b2", 2, 30.0), battery("b3", 3, 70.0)
    line = ModbusRtuLine("pty", 19200, {2: b2, 3: b3})
    port = await line.start()
    d2, d3 = driver("b2", 2, port), driver("b3", 3, port)
    seen2: Counter[str] = Counter()
    seen3: Counter[str] = Counter()
    raised: list[str] = []
    try:
        first = await asyncio.gather(d2.read_all(), d3.read_all())  # both answer: b2's scale factors known
        assert all(snap.ok for snap in first), [snap.error for snap in first]
        b2.faults.delay_s = late_s
        for _ in range(polls):
            for snap, seen in zip(
                await asyncio.gather(d2.read_all(), d3.read_all()), (seen2, seen3), strict=True
            ):
                seen[f"soc {snap.reading['soc_pct']}" if snap.ok else "failed"] += 1
        for _ in range(writes):  # a write that times out holds the line too
            wrote, snap = await asyncio.gather(
                d2.write("power_w", -1000.0), d3.read_all(), return_exceptions=True
            )
            raised.append(str(wrote) if isinstance(wrote, DeviceError) else repr(wrote))
            assert not isinstance(snap, BaseException)
            seen3[f"soc {snap.reading['soc_pct']}" if snap.ok else "failed"] += 1
    finally:
        d2.close()
        d3.close()
        await line.close()
    return seen2, seen3, raised


def test_a_neighbour_answering_just_past_the_timeout_costs_the_healthy_device_no_reading() -> None:
    seen2, seen3, raised = asyncio.run(on_a_line(late_s=TIMEOUT_S + 0.1, polls=3, writes=2))
    assert seen2 == {"failed": 3}  # the late device fails its own polls, as it should
    assert seen3 == {"soc 70.0": 5}  # and its neighbour reads every time, its own reading
    assert len(raised) == 2 and all("No response" in why for why in raised), raised


def test_a_neighbour_in_time_is_not_held() -> None:
    """The late-answer window is paid only after an unanswered request: a healthy line polls as before."""
    seen2, seen3, raised = asyncio.run(on_a_line(late_s=0.0, polls=3, writes=1))
    assert seen2 == {"soc 30.0": 3} and seen3 == {"soc 70.0": 4} and raised == ["None"]


def test_two_silent_neighbours_never_fail_a_healthy_device_by_the_poll_bound() -> None:
    """Each silent neighbour now keeps the line two timeouts (its own and the late-answer window), so a
    healthy device polled with them waited four timeouts for the line: all of `poll_once`'s bound (4 x the
    timeout), and its poll failed ("poll timed out") though it answered in time. The bound now adds the
    neighbours' turns (`line_wait_s`); the silent ones still fail theirs."""

    async def run() -> list[list[bool]]:
        devices = [battery("b2", 2, 20.0), battery("b3", 3, 30.0), battery("b4", 4, 40.0)]
        line = ModbusRtuLine("pty", 19200, {d.unit_id: d for d in devices})
        port = await line.start()
        configs = [settings(d.name, d.unit_id, port, timeout_s=0.3, retries=0) for d in devices]
        drivers = [edge_modbus.SunSpecModbusDriver(c) for c in configs]
        rounds = []
        try:
            assert all(s.ok for s in await asyncio.gather(*(d.read_all() for d in drivers)))
            devices[0].faults.no_response = devices[1].faults.no_response = True
            for _ in range(3):
                snaps = await asyncio.gather(
                    *(poll_once(d, c) for d, c in zip(drivers, configs, strict=True))
                )
                rounds.append([s.ok for s in snaps])
            assert drivers[2].line_wait_s() == 2 * 2 * 0.3
        finally:
            for d in drivers:
                d.close()
            await line.close()
        return rounds

    assert asyncio.run(run()) == [[False, False, True]] * 3
