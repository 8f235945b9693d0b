"""Thin asyncio shells that put devices on Modbus TCP listeners and Modbus RTU serial lines.

Promises: every well-framed request gets the device's answer (or the fault asked for: silence, a delay,
an exception code, a corrupted CRC); a malformed MBAP header closes that one connection; nothing a client
sends can stop the server or disturb other connections. Unit id 0 or 255 on a one-device TCP port
addresses that device; an unknown unit id gets GATEWAY_TARGET_FAILED (0x0B) on TCP and silence on RTU.
With a `TlsListener` the TCP listener speaks Modbus/TCP Security: no client certificate from the CA, no
session; a request the client's role may not make gets ILLEGAL FUNCTION (01) and is counted in `refused`.
Assumes devices implement `modbus.Target` and carry `faults`. Never holds protocol logic of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
import tty
from typing import Any

from . import modbus
from .modbus_security import Access, TlsListener, permits

log = logging.getLogger("peergrid_sim.server")
GATEWAY_TARGET_FAILED = 0x0B


def rtu_silence_s(baudrate: int) -> float:
    """The inter-frame silence (t3.5, 11-bit characters) with margin; never below 5 ms (pty and USB latency)."""
    return max(0.005, 1.5 * 3.5 * 11.0 / max(baudrate, 1))


async def answer(device: Any, pdu: bytes) -> bytes | None:
    """Apply the device's faults around the pure request handler; None means stay silent."""
    faults = device.faults
    if faults.no_response or time.monotonic() < faults.down_until:
        return None
    silent_for = getattr(
        device, "silent_for", None
    )  # SunSpec devices: one model's reads (Faults.silent_model)
    if silent_for is not None and silent_for(pdu):
        if faults.silent_model_late_s <= 0:
            return None
        await asyncio.sleep(faults.silent_model_late_s)  # after the client gave up: a late answer
    if faults.delay_s > 0:
        await asyncio.sleep(faults.delay_s)
    function = pdu[0] if pdu else 0
    if faults.exception is not None and faults.exception_function in (None, function):
        return modbus.ExceptionReply(function, faults.exception).pdu()
    return modbus.serve_pdu(device, pdu)


class ModbusTcpServer:
    def __init__(self, host: str, port: int, targets: dict[int, Any], tls: TlsListener | None = None):
        self.host, self.port, self.targets = host, port, targets
        self.tls = tls
        self.refused = 0  # requests refused by Modbus/TCP Security authorisation
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        if self.tls is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        else:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, ssl=self.tls.context, ssl_handshake_timeout=10.0
            )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._connections, return_exceptions=True)

    def _target(self, unit: int) -> Any:
        if unit in self.targets:
            return self.targets[unit]
        if unit in (0, 255) and len(self.targets) == 1:
            return next(iter(self.targets.values()))
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        access: Access | None = "write"
        try:
            if self.tls is not None:
                who, access = self.tls.access_of(writer.get_extra_info("ssl_object"))
                log.info("modbus/tcp security session: %s, access %s", who, access or "none")
            while True:
                header = modbus.parse_mbap(await reader.readexactly(modbus.MBAP_LEN))
                if header.protocol != 0 or not 2 <= header.length <= 254:
                    return  # not Modbus: drop this connection only
                pdu = await reader.readexactly(header.length - 1)
                device = self._target(header.unit)
                reply: bytes | None
                if not permits(access, pdu[0]):
                    self.refused += 1
                    log.warning("modbus/tcp security: function %d refused (access %s)", pdu[0], access)
                    reply = modbus.ExceptionReply(pdu[0], modbus.ILLEGAL_FUNCTION).pdu()
                elif device is None:
                    reply = modbus.ExceptionReply(pdu[0], GATEWAY_TARGET_FAILED).pdu()
                else:
                    reply = await answer(device, pdu)
                if reply is not None:
                    writer.write(modbus.mbap_frame(header.transaction, header.unit, reply))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        except Exception:  # a bug in a handler must not take the listener down
            log.exception("modbus tcp connection failed")
        finally:
            self._connections.discard(task)
            writer.close()


class ModbusRtuLine:
    """One serial line (a pty pair or a real RS-485 adapter) with several devices by unit id."""

    def __init__(self, device: str, baudrate: int, targets: dict[int, Any]):
        self.device, self.baudrate, self.targets = device, baudrate, targets
        self.path = device
        self._fd = -1
        self._keep_open_fd = -1
        self._serial: Any = None
        self._deframer = modbus.RtuDeframer()
        self._silence: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[modbus.RtuFrame] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> str:
        if self.device == "pty":
            master, slave = os.openpty()
            tty.setraw(slave)
            self.path = os.ttyname(slave)
            self._fd, self._keep_open_fd = master, slave  # keep the slave open so client closes never hang up
        else:
            import serial  # pyserial comes with pymodbus[serial]

            self._serial = serial.Serial(self.device, self.baudrate, timeout=0)
            self._fd = self._serial.fileno()
        os.set_blocking(self._fd, False)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._on_readable)
        self._worker = asyncio.create_task(self._serve())
        return self.path

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._fd >= 0:
            loop.remove_reader(self._fd)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._serial is not None:
            self._serial.close()
        else:
            for fd in (self._fd, self._keep_open_fd):
                if fd >= 0:
                    os.close(fd)
        self._fd = -1

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while no client holds the pty: nothing to read
        for frame in self._deframer.feed(data):
            self._queue.put_nowait(frame)
        if self._silence is not None:
            self._silence.cancel()
        self._silence = asyncio.get_running_loop().call_later(rtu_silence_s(self.baudrate), self._on_silence)

    def _on_silence(self) -> None:
        for frame in self._deframer.silence():
            self._queue.put_nowait(frame)

    async def _serve(self) -> None:
        while True:
            frame = await self._queue.get()
            try:
                device = self.targets.get(frame.unit)
                if frame.unit == 0:  # broadcast: writes to all, no reply
                    for target in self.targets.values():
                        if frame.pdu[:1] and frame.pdu[0] in (5, 6, 15, 16):
                            modbus.serve_pdu(target, frame.pdu)
                    continue
                if device is None:
                    continue
                reply = await answer(device, frame.pdu)
                if reply is not None:
                    self._write(modbus.rtu_frame(frame.unit, reply, corrupt_crc=device.faults.bad_crc))
            except Exception:
                log.exception("modbus rtu request failed")

    def _write(self, data: bytes) -> None:
        """Transmit a reply; a line whose far end stopped reading loses it, as a real RS-485 bus would."""
        try:
            os.write(self._fd, data)
        except (BlockingIOError, OSError):
            log.debug("rtu reply dropped: the line is not being read")
