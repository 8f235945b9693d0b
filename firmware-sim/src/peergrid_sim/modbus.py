"""Modbus application protocol and its TCP (MBAP) and RTU framings, as pure bytes <-> value functions.

Promises: `parse_request` never raises on any byte string; it returns a typed `Request` or an
`ExceptionReply` with the code the Modbus specification prescribes (unknown function -> 1, bad quantity or
byte count -> 3). `RtuDeframer` splits a serial byte stream into frames by function-code length and CRC-16,
and drops garbage (a frame with a bad CRC is ignored, as the RTU specification says).
Assumes nothing about the device behind it: `serve_pdu` asks a `Target` for data. Never does I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

READ_COILS, READ_DISCRETE, READ_HOLDING, READ_INPUT = 1, 2, 3, 4
WRITE_COIL, WRITE_REGISTER, WRITE_COILS, WRITE_REGISTERS = 5, 6, 15, 16
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4
READ_LIMITS = {READ_COILS: 2000, READ_DISCRETE: 2000, READ_HOLDING: 125, READ_INPUT: 125}


@dataclass(frozen=True)
class Request:
    function: int
    address: int
    count: int = 0
    values: tuple[int, ...] = ()  # registers, or coil states 0/1


@dataclass(frozen=True)
class ExceptionReply:
    function: int
    code: int

    def pdu(self) -> bytes:
        return bytes([(self.function | 0x80) & 0xFF, self.code])


class Target(Protocol):
    """What a Modbus server needs from a device: each returns data or an exception code."""

    def read_bits(self, table: int, address: int, count: int) -> list[int] | int: ...

    def read_registers(self, table: int, address: int, count: int) -> list[int] | int: ...

    def write_bits(self, address: int, values: list[int]) -> int | None: ...

    def write_registers(self, address: int, values: list[int]) -> int | None: ...


def parse_request(pdu: bytes) -> Request | ExceptionReply:
    if not pdu:
        return ExceptionReply(0, ILLEGAL_FUNCTION)
    fc = pdu[0]
    body = pdu[1:]
    if fc in READ_LIMITS:
        if len(body) != 4:
            return ExceptionReply(fc, ILLEGAL_VALUE)
        address, count = struct.unpack(">HH", body)
        if not 1 <= count <= READ_LIMITS[fc]:
            return ExceptionReply(fc, ILLEGAL_VALUE)
        return Request(fc, address, count)
    if fc in (WRITE_COIL, WRITE_REGISTER):
        if len(body) != 4:
            return ExceptionReply(fc, ILLEGAL_VALUE)
        address, value = struct.unpack(">HH", body)
        if fc == WRITE_COIL:
            if value not in (0x0000, 0xFF00):
                return ExceptionReply(fc, ILLEGAL_VALUE)
            return Request(fc, address, 1, (1 if value else 0,))
        return Request(fc, address, 1, (value,))
    if fc in (WRITE_COILS, WRITE_REGISTERS):
        if len(body) < 5:
            return ExceptionReply(fc, ILLEGAL_VALUE)
        address, count, nbytes = struct.unpack(">HHB", body[:5])
        data = body[5:]
        if fc == WRITE_COILS:
            if not 1 <= count <= 1968 or nbytes != (count + 7) // 8 or len(data) != nbytes:
                return ExceptionReply(fc, ILLEGAL_VALUE)
            bits = tuple((data[i // 8] >> (i % 8)) & 1 for i in range(count))
            return Request(fc, address, count, bits)
        if not 1 <= count <= 123 or nbytes != 2 * count or len(data) != nbytes:
            return ExceptionReply(fc, ILLEGAL_VALUE)
        return Request(fc, address, count, struct.unpack(f">{count}H", data))
    return ExceptionReply(fc, ILLEGAL_FUNCTION)


def serve_pdu(target: Target, pdu: bytes) -> bytes:
    """One request PDU in, one response PDU out (normal or exception)."""
    request = parse_request(pdu)
    if isinstance(request, ExceptionReply):
        return request.pdu()
    fc = request.function
    if (
        fc in (READ_COILS, READ_DISCRETE, READ_HOLDING, READ_INPUT)
        and request.address + request.count > 0x10000
    ):
        return ExceptionReply(fc, ILLEGAL_ADDRESS).pdu()
    if fc in (READ_COILS, READ_DISCRETE):
        bits = target.read_bits(fc, request.address, request.count)
        if isinstance(bits, int):
            return ExceptionReply(fc, bits).pdu()
        return bytes([fc]) + pack_bits(bits)
    if fc in (READ_HOLDING, READ_INPUT):
        regs = target.read_registers(fc, request.address, request.count)
        if isinstance(regs, int):
            return ExceptionReply(fc, regs).pdu()
        return bytes([fc, 2 * len(regs)]) + struct.pack(f">{len(regs)}H", *regs)
    if fc in (WRITE_COIL, WRITE_COILS):
        error = target.write_bits(request.address, list(request.values))
    else:
        error = target.write_registers(request.address, list(request.values))
    if error is not None:
        return ExceptionReply(fc, error).pdu()
    if fc in (WRITE_COIL, WRITE_REGISTER):
        return pdu[:5]  # echo of the request
    return struct.pack(">BHH", fc, request.address, request.count)


def pack_bits(bits: list[int]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes([len(out)]) + bytes(out)


# --- Modbus TCP (MBAP) -----------------------------------------------------------------------------------

MBAP_LEN = 7


@dataclass(frozen=True)
class MbapHeader:
    transaction: int
    protocol: int
    length: int  # unit id + PDU
    unit: int


def parse_mbap(header: bytes) -> MbapHeader:
    transaction, protocol, length, unit = struct.unpack(">HHHB", header)
    return MbapHeader(transaction, protocol, length, unit)


def mbap_frame(transaction: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, unit) + pdu


# --- Modbus RTU ------------------------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def rtu_frame(unit: int, pdu: bytes, corrupt_crc: bool = False) -> bytes:
    body = bytes([unit]) + pdu
    crc = crc16(body) ^ (0x5A5A if corrupt_crc else 0)
    return body + struct.pack("<H", crc)


def request_frame_length(buffer: bytes) -> int | None:
    """Length of the RTU request frame at the start of `buffer`, or None if not yet knowable."""
    if len(buffer) < 2:
        return None
    fc = buffer[1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        return 9 + buffer[6] if len(buffer) >= 7 else None
    return None  # unknown function: wait for the inter-frame silence


@dataclass(frozen=True)
class RtuFrame:
    unit: int
    pdu: bytes


class RtuDeframer:
    """Byte stream -> frames. Call `feed` with arrivals and `silence` when the line goes quiet (t3.5)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> list[RtuFrame]:
        self.buffer.extend(data)
        frames: list[RtuFrame] = []
        while True:
            length = request_frame_length(bytes(self.buffer))
            if length is None or len(self.buffer) < length:
                return frames
            frame = bytes(self.buffer[:length])
            if crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]:
                del self.buffer[:length]
                frames.append(RtuFrame(frame[0], frame[1:-2]))
            else:
                return frames  # bad CRC: wait for silence, then drop the lot

    def silence(self) -> list[RtuFrame]:
        """The line went quiet: a complete unknown-function frame with a good CRC is served, the rest dropped."""
        frame = bytes(self.buffer)
        self.buffer.clear()
        if len(frame) >= 4 and crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]:
            return [RtuFrame(frame[0], frame[1:-2])]
        if frame:
            self.dropped += 1
        return []
