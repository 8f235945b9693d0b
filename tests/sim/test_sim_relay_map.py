"""The relay's vendor-style Modbus map, driven through the pure request handler."""

from __future__ import annotations

import struct

from peergrid_sim import modbus
from peergrid_sim.relay import RelayDevice
from peergrid_sim.scenario import Relay
from peergrid_sim.server import rtu_silence_s


def relay(**kwargs) -> RelayDevice:
    return RelayDevice.create(Relay(name="sw", branch=7, **kwargs))


def test_holding_register_command_delay_and_counter():
    r = relay(closed=True, operate_delay_s=2.0)
    r.advance(100.0)
    assert modbus.serve_pdu(r, struct.pack(">BHH", 4, 0, 4)) == bytes([4, 8]) + struct.pack(
        ">4H", 0, 0, 1, 2000
    )
    assert modbus.serve_pdu(r, struct.pack(">BHH", 6, 1, 1)) == struct.pack(">BHH", 6, 1, 1)  # open
    assert modbus.serve_pdu(r, struct.pack(">BHH", 4, 2, 1)) == bytes([4, 2, 0, 2])  # operating
    assert modbus.serve_pdu(r, struct.pack(">BHH", 6, 1, 2)) == bytes([0x86, 6])  # busy
    r.advance(102.0)
    assert modbus.serve_pdu(r, struct.pack(">BHH", 4, 0, 3)) == bytes([4, 6]) + struct.pack(">3H", 0, 1, 0)
    assert modbus.serve_pdu(r, struct.pack(">BHH", 6, 0, 250)) == struct.pack(">BHH", 6, 0, 250)
    assert r.mechanism.operate_delay_s == 0.25
    assert modbus.serve_pdu(r, struct.pack(">BHH", 6, 0, 60001)) == bytes([0x86, 3])
    assert modbus.serve_pdu(r, struct.pack(">BHH", 6, 1, 9)) == bytes([0x86, 3])


def test_addresses_outside_the_map_and_scenario_interlock():
    r = relay(closed=False, interlock=True)
    assert modbus.serve_pdu(r, struct.pack(">BHH", 1, 0, 4)) == bytes([0x81, 2])
    assert modbus.serve_pdu(r, struct.pack(">BHH", 2, 5, 2)) == bytes([0x82, 2])
    assert modbus.serve_pdu(r, struct.pack(">BHH", 3, 2, 1)) == bytes([0x83, 2])
    assert modbus.serve_pdu(r, struct.pack(">BHH", 5, 7, 0xFF00)) == bytes([0x85, 2])
    assert modbus.serve_pdu(r, struct.pack(">BHH", 2, 3, 1)) == bytes([2, 1, 1])  # interlock input set
    assert modbus.serve_pdu(r, struct.pack(">BHH", 5, 0, 0xFF00)) == bytes([0x85, 4])
    assert modbus.serve_pdu(r, struct.pack(">BHHBB", 15, 0, 2, 1, 0)) == struct.pack(
        ">BHH", 15, 0, 2
    )  # zeros: no-op


def test_rtu_silence_scales_with_baud_rate():
    assert rtu_silence_s(19200) == 0.005
    assert 0.045 < rtu_silence_s(1200) < 0.05
