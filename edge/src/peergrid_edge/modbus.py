"""SunSpec devices on Modbus TCP or Modbus RTU (serial), found by SunSpec discovery.

Promises: discovery finds the "SunS" marker (40000, 0 or 50000) and walks the model chain to the end model,
once per connection; each poll then reads every model block in one contiguous request (blocks longer than the
125-register Modbus limit are read in consecutive chunks). After a failed read the connection is dropped and
discovery repeats, so a rebooted device that comes back with a different layout is read correctly; except
for a meter's signed-reading block (vendor model 64204) alone: an exception reply, a short read or a timeout
there leaves the poll whole and that reading unsigned, saying why (`meter_signed.unread`; review15 M5: a
timeout failed the poll, lost its 203 counters and forced rediscovery every poll). After a timeout there the
TCP connection is opened afresh, so a late answer can never be taken for the next request's.
Devices on one serial port share one client and take turns on the line (a bus carries one request at a time:
a dead device on an RS-485 bus costs its neighbours its time on the line, which only separate ports avoid). A
serial line is not reopened: after a request that got no answer (or a wrong one) the device keeps the line one
more timeout (`LATE_WINDOWS`), so that an answer arriving late lands while no request waits and is dropped,
rather than in the neighbour's read, which pymodbus would then throw away with it (review25 F3): a device that
times out costs its neighbours two timeouts per failed poll or write, a late one no readings; `line_wait_s`
tells the poll loop how long a device may so wait for its line.
A setpoint whose scale factor the device reports as "not implemented" or out of range is not written, nor
any other point of it (`write` raises `DeviceError`), never written as if the scale factor were 0
(review25 F4).
Never raises from `read_all`; `write` raises `DeviceError`. A read's or write's time bound runs in the caller's
task (`asyncio.timeout`), never in a task of its own (`asyncio.wait_for`): pymodbus' connect swallows a
cancellation that meets its own connect attempt failing (Python 3.11's wait_for, CPython gh-86296), so an edge
stopping while a device refused its connection left that task failed with 'cannot connect' and nobody to read it,
logged at ERROR as 'Task exception was never retrieved' with its traceback (U2's lab stop, mgmc-mg4.log).
Where connect swallowed it, the cancellation is raised again (the task is still `cancelling()`), so a stop
stops the poll rather than being taken for a refused connection, and a time bound is its TimeoutError.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from peergrid_edge import natures
from peergrid_edge.config import DeviceSettings
from peergrid_edge.drivers import DeviceError, Snapshot
from peergrid_edge.meter_signed import MODEL as SIGNED_MODEL
from peergrid_edge.meter_signed import unread
from peergrid_edge.sunspec import (
    BASE_ADDRESSES,
    END_MODEL_ID,
    SUNS_MARKER,
    SunSpecError,
    decode_model,
    encode_point,
    model_def,
    refused_scales,
    scale_factor,
)

log = logging.getLogger("peergrid.edge.modbus")
MAX_READ = 125
MAX_MODELS = 64
LATE_WINDOWS = 1  # timeouts a serial device keeps the line after a request it did not answer (in time)


class WrongAnswer(DeviceError):
    """An answer that is not this request's (more or fewer registers): a late answer to an earlier one, so
    this request's own may still be on its way."""


def _unanswered(exc: BaseException) -> bool:
    """The device may still be answering: the request timed out (pymodbus' no-response is a
    ModbusIOException, the poll's budget a TimeoutError) or met another request's answer."""
    return isinstance(exc, (TimeoutError, ModbusIOException, WrongAnswer))


class _SerialBus:
    """One RTU client per serial port, shared by the devices on that line (made on first use: pymodbus
    clients bind to the running event loop)."""

    _buses: dict[str, _SerialBus] = {}

    def __init__(self, device: DeviceSettings) -> None:
        self.device = device
        self._client: AsyncModbusSerialClient | None = None
        self.lock = asyncio.Lock()
        self.users = 0
        self.timeout_s = device.timeout_s  # the client's: every request on this line waits this long

    @property
    def client(self) -> AsyncModbusSerialClient:
        if self._client is None:
            d = self.device
            assert d.serial_port is not None
            self._client = AsyncModbusSerialClient(
                d.serial_port,
                baudrate=d.baudrate,
                parity=d.parity,
                timeout=d.timeout_s,
                retries=0,
                reconnect_delay=0,
            )
        return self._client

    @classmethod
    def attach(cls, device: DeviceSettings) -> _SerialBus:
        assert device.serial_port is not None
        bus = cls._buses.get(device.serial_port)
        if bus is None:
            bus = cls._buses[device.serial_port] = cls(device)
        bus.users += 1
        return bus

    def detach(self, port: str) -> None:
        self.users -= 1
        if self.users <= 0:
            if self._client is not None:
                self._client.close()
            self._buses.pop(port, None)


class SunSpecModbusDriver:
    def __init__(self, settings: DeviceSettings) -> None:
        self.settings = settings
        self.bus: _SerialBus | None = None
        self._tcp: AsyncModbusTcpClient | None = None
        if settings.protocol == "modbus-rtu":
            self.bus = _SerialBus.attach(settings)
            self.lock = self.bus.lock
        else:
            self.lock = asyncio.Lock()
        self.models: list[tuple[int, int, int]] = []  # (model id, address of its ID register, length)
        self.last_points: dict[str, dict[str, Any]] = {}
        self.requests = 0  # Modbus requests sent (tests count them: one per model block per poll)
        self.mismatch: list[str] = []  # what the discovered models lack for the configured nature
        self.refused: tuple[str, ...] = ()  # the nature's points read as None for a refused scale factor

    @property
    def client(self) -> Any:
        if self.bus is not None:
            return self.bus.client
        if self._tcp is None:
            s = self.settings
            self._tcp = AsyncModbusTcpClient(
                s.host, port=s.port, timeout=s.timeout_s, retries=0, reconnect_delay=0
            )
        return self._tcp

    async def _read(self, address: int, count: int) -> list[int]:
        self.requests += 1
        rr = await self.client.read_holding_registers(address, count=count, device_id=self.settings.unit_id)
        if rr.isError():
            raise DeviceError(f"exception code {getattr(rr, 'exception_code', '?')} reading {address}")
        # more than asked for is no answer to this request either (a late one, on a serial bus)
        if len(rr.registers) != count:
            raise WrongAnswer(f"read at {address}: {len(rr.registers)} registers, not the {count} asked for")
        return list(rr.registers)

    async def _read_block(self, address: int, count: int) -> list[int]:
        registers: list[int] = []
        while count > 0:
            n = min(count, MAX_READ)
            registers += await self._read(address, n)
            address, count = address + n, count - n
        return registers

    async def _connect(self) -> None:
        if not self.client.connected and not await self.client.connect():
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # a stop (or our time bound) that connect swallowed
                raise asyncio.CancelledError
            raise DeviceError("cannot connect")

    async def discover(self) -> list[tuple[int, int, int]]:
        refused: list[str] = []  # what the device answered where the marker was not
        for base in BASE_ADDRESSES:
            try:
                marker = await self._read(base, 2)
            except WrongAnswer:
                raise
            except DeviceError as exc:
                refused.append(str(exc))  # an exception reply: the device answers, but not with registers
                continue
            if tuple(marker) == SUNS_MARKER:
                break
        else:
            if len(refused) == len(BASE_ADDRESSES):
                raise DeviceError(f"no SunS marker: every read refused ({'; '.join(refused)})")
            raise DeviceError(
                "no SunS marker at 40000, 0 or 50000" + (f" ({'; '.join(refused)})" if refused else "")
            )
        models: list[tuple[int, int, int]] = []
        address = base + 2
        while len(models) < MAX_MODELS:
            model_id, length = await self._read(address, 2)
            if model_id == END_MODEL_ID:
                return models
            models.append((model_id, address, length))
            address += 2 + length
        raise DeviceError(f"no end model after {MAX_MODELS} models")

    async def _read_models(self) -> dict[str, dict[str, Any]]:
        await self._connect()
        if not self.models:
            self.models = await self.discover()
            problems = natures.unsupported(self.settings.nature, [m for m, _, _ in self.models])
            if problems and problems != self.mismatch:
                log.warning(
                    "device %s (configured as %s) exposes models %s: %s",
                    self.settings.name,
                    self.settings.nature,
                    [m for m, _, _ in self.models],
                    "; ".join(problems),
                )
            self.mismatch = problems
        points: dict[str, dict[str, Any]] = {}
        refused: list[str] = []
        for model_id, address, length in self.models:
            try:
                registers = await self._read_block(address, length + 2)
            except (DeviceError, ModbusException, TimeoutError) as exc:
                if str(model_id) != SIGNED_MODEL:
                    raise
                # only its signed block failed: keep the poll (its 203 counters), unsigned, saying why
                points[SIGNED_MODEL] = unread(await self._signed_block_failed(exc))
                continue
            try:
                points[str(model_id)] = decode_model(model_id, registers)
                refused += self._refused_scales(model_id, registers)
            except SunSpecError as exc:
                if registers[0] != model_id:  # the layout moved under us (e.g. a reboot): rediscover
                    raise DeviceError(str(exc)) from None
                continue  # a model we have no definition for: skip it, read the rest
        self._say_refused(tuple(refused))
        return points

    def _refused_scales(self, model_id: int, registers: list[int]) -> list[str]:
        """This nature's points in one block that read as None because the device's scale factor for them was
        refused (review25 F6: a PCC meter's counters gone from its readings, and so from the DSO's metering)."""
        read = natures.read_points(self.settings.nature)
        return [
            f"{model_id}.{point} ({why})"
            for point, why in refused_scales(model_id, registers).items()
            if f"{model_id}.{point}" in read
        ]

    def _say_refused(self, refused: tuple[str, ...]) -> None:
        """Log the refused scale factors once per change, not at every poll."""
        if refused == self.refused:
            return
        if refused:
            log.warning(
                "device %s: scale factor refused, read as no value: %s",
                self.settings.name,
                "; ".join(refused),
            )
        else:
            log.info("device %s: every scale factor it reports is in range again", self.settings.name)
        self.refused = refused

    async def _signed_block_failed(self, exc: Exception) -> str:
        """Why the signed block was not read (logged); after anything but an answer (an exception reply, a
        short read) the TCP connection is opened afresh: a late answer must not meet the next request."""
        if isinstance(exc, DeviceError):
            why = str(exc)
        elif isinstance(exc, TimeoutError) or (
            isinstance(exc, ModbusIOException) and "No response" in str(exc)
        ):
            why = f"timed out: no answer within {self.settings.timeout_s:g} s"
        else:
            why = str(exc) or type(exc).__name__
        log.warning(
            "device %s: its signed-reading block failed (%s); this reading is unsigned",
            self.settings.name,
            why,
        )
        if not isinstance(exc, DeviceError) and self._tcp is not None:
            self._tcp.close()
            await self._connect()
        await self._late_window(exc)  # a serial line: its late answer must not meet the next block's read
        return why

    async def _late_window(self, exc: BaseException) -> None:
        """On a serial line, after a request the device did not answer (in time), keep the line (the caller
        holds the bus lock) one more timeout: its answer, if it comes, then lands while no request waits."""
        if self.bus is not None and _unanswered(exc):
            await asyncio.sleep(self.bus.timeout_s * LATE_WINDOWS)

    async def read_all(self) -> Snapshot:
        started = time.time()
        name, nature = self.settings.name, self.settings.nature
        try:
            async with self.lock:
                try:
                    async with asyncio.timeout(self._budget()):  # in this task: see the module's docstring
                        points = await self._read_models()
                except Exception as exc:
                    await self._late_window(exc)
                    raise
        except (DeviceError, ModbusException, OSError, TimeoutError, ValueError) as exc:
            self._drop()
            return Snapshot(name, nature, False, started, error=str(exc) or type(exc).__name__)
        self.last_points = points
        return Snapshot(name, nature, True, started, points, reading=natures.reading(nature, points))

    def line_wait_s(self) -> float:
        """The longest this device's poll may wait for its serial line while each neighbour on it fails a
        request and keeps the line its late-answer window (0 on a connection of its own); the poll loop
        adds it to the poll's bound (`polling.poll_once`)."""
        if self.bus is None:
            return 0.0
        return max(self.bus.users - 1, 0) * self.bus.timeout_s * (1 + LATE_WINDOWS)

    def _budget(self) -> float:
        # Each request is bounded by the client's timeout; the whole poll by a few of them.
        return self.settings.timeout_s * (2 + len(self.models or [()]))

    def _drop(self) -> None:
        self.models = []
        if self._tcp is not None:
            self._tcp.close()

    async def write(self, setpoint: str, value: float) -> None:
        nature = self.settings.nature
        if not self.last_points:
            raise DeviceError("no successful read yet: scale factors unknown")
        now = natures.reading(nature, self.last_points)
        try:
            writes = natures.point_writes(nature, setpoint, value, now)
        except natures.NatureError as exc:
            raise DeviceError(str(exc)) from None
        control = self.settings.control
        if (
            nature == "battery"
            and setpoint == "power_w"
            and control is not None
            and control.revert_s
            and writes
        ):
            # SunSpec 124's own watchdog: the device holds 0 W once no rate was written for revert_s, so a
            # dead MGMC leaves its battery in the safe state
            writes.insert(0, natures.PointWrite(124, "InOutWRte_RvrtTms", control.revert_s))
        try:
            async with self.lock:
                try:
                    await self._connect()
                    if not self.models:
                        async with asyncio.timeout(self._budget()):
                            self.models = await self.discover()
                    # every value encoded before the first is sent: one refused (its scale factor unknown)
                    # leaves the device as it was, not with a mode written and its rate not
                    encoded = [(w, *self._encode(w)) for w in writes]
                    for w, address, registers in encoded:
                        async with asyncio.timeout(self.settings.timeout_s * 2):
                            await self._write_point(w, address, registers)
                except Exception as exc:
                    await self._late_window(exc)
                    raise
        except (DeviceError, ModbusException, OSError, TimeoutError, SunSpecError) as exc:
            if not isinstance(exc, SunSpecError):  # a value refused before sending: the connection is sound
                self._drop()
            raise DeviceError(f"{setpoint}={value}: {exc or type(exc).__name__}") from None

    def _encode(self, w: natures.PointWrite) -> tuple[int, list[int]]:
        """The address and registers of one point write, at the scale factor the last read gave; a
        `SunSpecError` where that scale factor is unknown (not implemented or out of range: review25 F4) or
        the value does not fit the point."""
        located = next((a for m, a, _ in self.models if m == w.model), None)
        if located is None:
            raise DeviceError(f"device exposes no model {w.model}")
        mdef = model_def(w.model)
        point = mdef.point(w.point)
        try:
            sf = scale_factor(mdef, point, self.last_points.get(str(w.model), {}))
        except SunSpecError as exc:
            raise SunSpecError(f"{exc}; not written") from None
        return located + point.offset, encode_point(point, w.value, sf)

    async def _write_point(self, w: natures.PointWrite, address: int, registers: list[int]) -> None:
        self.requests += 1
        rr = await self.client.write_registers(address, registers, device_id=self.settings.unit_id)
        if rr.isError():
            code = getattr(rr, "exception_code", "?")
            raise DeviceError(f"exception code {code} writing {w.model}.{w.point}={w.value}")

    def close(self) -> None:
        if self.bus is not None and self.settings.serial_port:
            self.bus.detach(self.settings.serial_port)
            self.bus = None
        elif self._tcp is not None:
            self._tcp.close()
