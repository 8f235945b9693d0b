"""review25 F4 and the discovery line: a firmware-sim battery on loopback Modbus TCP whose scale-factor
register is forced (not implemented, or outside SunSpec's -10..10).

F4: the read of the same points refuses such a scale factor (charge_pct None), but the write took it as 0:
`power_w=-2000` went out as InWRte=40 (40 % of WChaMax at SF 0), which the device reads at its own SF -1 as
4 %: a 200-W charge for a 2000-W schedule, written again at every dispatch tick. Now the write is refused
naming the point and its scale factor, and nothing of it reaches the device (not its mode, not its revert
timer). Discovery: a device answering every read with an exception said "no SunS marker at 40000, 0 or
50000", as a non-SunSpec device does; now it says the code it got."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from peergrid_edge import modbus as edge_modbus
from peergrid_edge.config import ControlSettings, DeviceSettings
from peergrid_edge.drivers import DeviceError
from peergrid_edge.sunspec import SunSpecError, encode_point, model_def, scale_factor
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.server import ModbusTcpServer

BAT = {"capacity_wh": 20000, "max_charge_w": 5000, "max_discharge_w": 5000, "soc_pct": 50}


def force_raw(device: SunSpecDevice, key: str, raw: int) -> None:
    """Point `key` reports the raw register `raw` (kept over re-renders), whatever the device holds."""
    image = device.image
    entry = image.by_key[key]
    image.overrides[key] = [raw]
    image.registers[entry.address - image.base] = raw


def on_loopback(
    device: SunSpecDevice, body: Callable[[edge_modbus.SunSpecModbusDriver], Awaitable[Any]], **settings: Any
) -> tuple[Any, list[tuple[int, list[int]]]]:
    """Run `body(driver)` against `device` served on loopback; its result and every write the device got."""
    written: list[tuple[int, list[int]]] = []
    write_registers = device.write_registers

    def counted(address: int, values: list[int]) -> int | None:
        written.append((address, list(values)))
        return write_registers(address, values)

    device.write_registers = counted  # type: ignore[method-assign]

    async def run() -> Any:
        server = ModbusTcpServer("127.0.0.1", 0, {1: device})
        port = await server.start()
        driver = edge_modbus.SunSpecModbusDriver(
            DeviceSettings(name="b1", nature="battery", port=port, timeout_s=2, **settings)
        )
        try:
            return await body(driver)
        finally:
            driver.close()
            await server.close()

    return asyncio.run(run()), written


async def read_then_write(driver: edge_modbus.SunSpecModbusDriver) -> tuple[dict[str, Any], str | None]:
    snap = await driver.read_all()
    assert snap.ok, snap.error
    try:
        await driver.write("power_w", -2000.0)
    except DeviceError as exc:
        return snap.reading, str(exc)
    return snap.reading, None


@pytest.mark.parametrize(
    ("raw", "why"),
    [(0x8000, "is not implemented"), (11, "is 11, outside -10..10"), (0xFFF5, "is -11, outside -10..10")],
)
def test_a_setpoint_whose_scale_factor_is_unknown_is_refused_and_nothing_is_written(
    raw: int, why: str
) -> None:
    device = SunSpecDevice.create("b1", "mg1", "battery", 1, BAT)
    force_raw(device, "124.InOutWRte_SF", raw)
    mode_before = device.image.value("124.StorCtl_Mod")
    (reading, refused), written = on_loopback(device, read_then_write, control=ControlSettings(revert_s=60))
    assert reading["charge_pct"] is None  # the read refuses the same scale factor
    assert refused == f"power_w=-2000.0: 124.InWRte: its scale factor InOutWRte_SF {why}; not written"
    assert written == []  # neither the revert timer, nor the rate, nor the mode
    assert device.image.value("124.StorCtl_Mod") == mode_before


def test_with_its_scale_factor_known_the_same_write_goes_out_at_that_scale() -> None:
    device = SunSpecDevice.create("b1", "mg1", "battery", 1, BAT)
    (reading, refused), written = on_loopback(device, read_then_write)
    assert refused is None and reading["charge_pct"] is not None
    assert device.image.value("124.InWRte") == pytest.approx(40.0)  # 2000 W of 5000 W, at the device's SF
    assert len(written) == 3  # InWRte, OutWRte, StorCtl_Mod


def test_encode_point_refuses_a_point_whose_scale_factor_is_unknown() -> None:
    """The codec's own guard: None is "no scale factor" only for a point that has none."""
    mdef = model_def(124)
    in_rate, mode = mdef.point("InWRte"), mdef.point("StorCtl_Mod")
    with pytest.raises(SunSpecError, match="InWRte: its scale factor InOutWRte_SF is unknown"):
        encode_point(in_rate, 40.0, None)
    with pytest.raises(SunSpecError, match=r"124\.InWRte: its scale factor InOutWRte_SF is not implemented"):
        scale_factor(mdef, in_rate, {"InOutWRte_SF": None})
    assert scale_factor(mdef, mode, {}) is None and encode_point(mode, 1, None) == [1]
    assert encode_point(in_rate, 40.0, scale_factor(mdef, in_rate, {"InOutWRte_SF": -1})) == [400]


@pytest.mark.parametrize("code", [4, 6])
def test_discovery_that_meets_exception_replies_says_the_code(code: int) -> None:
    device = SunSpecDevice.create("b1", "mg1", "battery", 1, BAT)
    device.faults.exception = code

    async def poll(driver: edge_modbus.SunSpecModbusDriver) -> Any:
        return await driver.read_all()

    snap, _ = on_loopback(device, poll)
    assert not snap.ok
    assert (
        snap.error
        == "no SunS marker: every read refused ("
        + "; ".join(f"exception code {code} reading {base}" for base in (40000, 0, 50000))
        + ")"
    )


def test_discovery_of_a_device_without_the_marker_still_says_so() -> None:
    """A device that answers with registers but no "SunS" (and refuses the other bases) is named as before,
    with what the refusals said."""
    device = SunSpecDevice.create("b1", "mg1", "battery", 1, BAT)
    base = device.image.base
    device.image.registers[0] = 0  # "SunS" gone at its base; the other bases are outside the image

    async def poll(driver: edge_modbus.SunSpecModbusDriver) -> Any:
        return await driver.read_all()

    snap, _ = on_loopback(device, poll)
    assert not snap.ok and snap.error is not None
    assert snap.error.startswith("no SunS marker at 40000, 0 or 50000 (exception code 2 reading ")
    assert f"reading {base}" not in snap.error  # that base answered


def test_a_refused_write_keeps_the_connection_and_the_discovered_models() -> None:
    """Refused before anything was sent: the next poll needs no new connection nor a new discovery."""
    device = SunSpecDevice.create("b1", "mg1", "battery", 1, BAT)
    force_raw(device, "124.InOutWRte_SF", 0x8000)

    async def body(driver: edge_modbus.SunSpecModbusDriver) -> tuple[int, bool]:
        await read_then_write(driver)
        requests = driver.requests
        snap = await driver.read_all()
        return driver.requests - requests, snap.ok

    (requests, ok), written = on_loopback(device, body)
    assert ok and written == []
    assert requests == len(device_models(device))  # one request per model block: no rediscovery


def device_models(device: SunSpecDevice) -> list[int]:
    """The SunSpec models the device's image lists (its model chain after "SunS")."""
    regs, models, i = device.image.registers, [], 2
    while regs[i] != 0xFFFF:
        models.append(regs[i])
        i += 2 + regs[i + 1]
    return models
