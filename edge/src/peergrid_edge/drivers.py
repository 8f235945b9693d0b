"""Device drivers behind one small interface: `read_all() -> Snapshot`.

Promises: a driver never raises on device trouble; a failed read returns a Snapshot with `ok=False` and the
reason, so one dead device cannot stall the poll loop. Assumes asyncio; each call is bounded by the
device's timeout. Must never block the event loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from peergrid_edge.config import DeviceSettings
from peergrid_edge.sunspec import BASE_ADDRESSES, END_MODEL_ID, SUNS_MARKER, SunSpecError, decode_model


@dataclass(frozen=True)
class Snapshot:
    device: str
    nature: str
    ok: bool
    at: float
    points: dict[str, dict[str, float | int | str | None]] = field(default_factory=dict)
    error: str | None = None


class SunSpecTcpDriver:
    """A SunSpec device on Modbus TCP: discovers its models once, then reads each model in one request."""

    def __init__(self, settings: DeviceSettings) -> None:
        self.settings = settings
        self.client = AsyncModbusTcpClient(
            settings.host, port=settings.port, timeout=settings.timeout_s, retries=0, reconnect_delay=0
        )
        self.models: list[tuple[int, int, int]] = []  # (model id, address of its ID register, length)

    async def _read(self, address: int, count: int) -> list[int]:
        rr = await self.client.read_holding_registers(address, count=count, device_id=self.settings.unit_id)
        if rr.isError():
            raise ModbusException(f"exception response {rr} at {address}")
        return list(rr.registers)

    async def discover(self) -> None:
        for base in BASE_ADDRESSES:
            try:
                marker = await self._read(base, 2)
            except ModbusException:
                continue
            if tuple(marker) == SUNS_MARKER:
                break
        else:
            raise SunSpecError("no SunS marker at 40000, 0 or 50000")
        models, address = [], base + 2
        while len(models) < 64:
            model_id, length = await self._read(address, 2)
            if model_id == END_MODEL_ID:
                break
            models.append((model_id, address, length))
            address += 2 + length
        self.models = models

    async def read_all(self) -> Snapshot:
        started = time.time()
        try:
            if not self.client.connected:
                await asyncio.wait_for(self.client.connect(), self.settings.timeout_s)
            if not self.models:
                await self.discover()
            points: dict[str, dict[str, float | int | str | None]] = {}
            for model_id, address, length in self.models:
                if length + 2 > 125:  # Modbus limits one read to 125 registers
                    continue
                registers = await self._read(address, length + 2)
                try:
                    points[str(model_id)] = decode_model(model_id, registers)
                except SunSpecError:
                    continue
            return Snapshot(self.settings.name, self.settings.nature, True, started, points)
        except (ModbusException, SunSpecError, OSError, TimeoutError, ValueError) as exc:
            self.client.close()
            self.models = []
            return Snapshot(
                self.settings.name, self.settings.nature, False, started, error=str(exc) or type(exc).__name__
            )

    def close(self) -> None:
        self.client.close()
