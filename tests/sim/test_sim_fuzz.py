"""Malformed and fuzzed Modbus requests never crash the server: the pure codec never raises, and a live TCP
listener and RTU line keep answering well-formed requests after a barrage of garbage."""

from __future__ import annotations

import os
import random
import socket
import struct
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_sim import modbus
from peergrid_sim.devices import SunSpecDevice

PV = SunSpecDevice.create("pv", "mg", "pv", 1, {"rating_w": 5000})


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_pdu_gets_a_reply_and_never_raises(pdu):
    reply = modbus.serve_pdu(PV, pdu)
    assert reply and (reply[0] == (pdu[0] if pdu else 0) or reply[0] & 0x80)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 16), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=260))
def test_structured_requests_to_the_sunspec_image(fc, address, count, tail):
    pdu = struct.pack(">BHH", fc, address, count) + tail
    reply = modbus.serve_pdu(PV, pdu)
    assert reply[0] in (fc, fc | 0x80)
    if reply[0] & 0x80:
        assert reply[1] in (1, 2, 3, 4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_rtu_deframer_never_raises_and_only_yields_crc_valid_frames(chunks):
    deframer = modbus.RtuDeframer()
    frames = []
    for chunk in chunks:
        frames += deframer.feed(chunk)
    frames += deframer.silence()
    for frame in frames:
        raw = modbus.rtu_frame(frame.unit, frame.pdu)
        assert modbus.crc16(raw[:-2]) == struct.unpack("<H", raw[-2:])[0]


def test_live_tcp_listener_survives_garbage(run_sim, all_kinds, modbus_call):
    sim = run_sim(all_kinds)
    e = sim.endpoint("pv1", "mg1")
    rng = random.Random(4)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(150)]
    payloads += [
        struct.pack(">HHHB", 1, 0, 0, 1),  # length 0
        struct.pack(">HHHB", 1, 0, 300, 1) + b"\x03",  # length too large, then hang up
        struct.pack(">HHHB", 1, 7, 6, 1) + b"\x03\x9c\x40\x00\x02",  # wrong protocol id
        struct.pack(">HHHB", 1, 0, 2, 1) + b"\x03",  # truncated PDU
        struct.pack(">HHHB", 1, 0, 6, 1) + b"\x03\x9c\x40\x00\x00",  # count 0
        struct.pack(">HHHB", 1, 0, 6, 1) + b"\x03\xff\xff\x00\x7d",  # runs past 0xFFFF
        struct.pack(">HHHB", 1, 0, 8, 1) + b"\x10\x9c\x40\x00\x05\x02\x00\x01",  # byte count mismatch
    ]
    for payload in payloads:
        with socket.create_connection((e["host"], e["port"]), timeout=1) as sock:
            sock.settimeout(0.05)
            try:
                sock.sendall(payload)
                sock.recv(512)
            except (TimeoutError, ConnectionError):
                pass
    assert modbus_call(e["host"], e["port"], 1, struct.pack(">BHH", 3, 40000, 2)) == bytes([3, 4]) + b"SunS"
    assert modbus_call(e["host"], e["port"], 1, struct.pack(">BHH", 3, 40000, 0)) == bytes([0x83, 3])
    assert modbus_call(e["host"], e["port"], 1, b"\x2b\x0e\x01\x00") == bytes([0xAB, 1])
    assert modbus_call(e["host"], e["port"], 9, struct.pack(">BHH", 3, 40000, 2)) == bytes([0x83, 0x0B])


def test_live_rtu_line_survives_garbage(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    e = sim.endpoint("pv2", "mg1")
    fd = os.open(e["port"], os.O_RDWR | os.O_NOCTTY)
    try:
        rng = random.Random(5)
        for _ in range(50):
            os.write(fd, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
        time.sleep(0.05)
        os.set_blocking(fd, False)
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass
        os.set_blocking(fd, True)
        os.write(fd, modbus.rtu_frame(2, struct.pack(">BHH", 3, 40000, 2)))
        reply = b""
        deadline = time.monotonic() + 2
        while len(reply) < 9 and time.monotonic() < deadline:
            reply += os.read(fd, 64)
        assert reply[-9:] == modbus.rtu_frame(2, bytes([3, 4]) + b"SunS")
    finally:
        os.close(fd)


def test_control_api_survives_garbage(run_sim, all_kinds):
    import json
    import urllib.request

    sim = run_sim(all_kinds)
    e = sim.endpoint("control")
    garbage = [
        b"\x00\xff" * 100,
        b"GET\r\n\r\n",
        b"POST /faults HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b'POST /faults HTTP/1.1\r\nContent-Length: 10\r\n\r\n{"a"',
        b"X" * 70000 + b"\r\n\r\n",
        b"POST /faults HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]",
        b'POST /clock HTTP/1.1\r\nContent-Length: 15\r\n\r\n{"speed": "x"}',
    ]
    for payload in garbage:
        with socket.create_connection((e["host"], e["port"]), timeout=2) as sock:
            sock.settimeout(0.5)
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                sock.recv(4096)
            except (TimeoutError, ConnectionError):
                pass
    with urllib.request.urlopen(f"http://{e['host']}:{e['port']}/state", timeout=5) as response:
        assert "mg1" in json.loads(response.read())["microgrids"]


def test_clock_requests_out_of_range_are_refused(run_sim, all_kinds):
    import json
    import urllib.error
    import urllib.request

    sim = run_sim(all_kinds)
    e = sim.endpoint("control")
    for body in ({"advance": 1e308}, {"advance": -1}, {"speed": 1e12}, {"speed": -2}):
        request = urllib.request.Request(
            f"http://{e['host']}:{e['port']}/clock", data=json.dumps(body).encode()
        )
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError(f"{body} accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
