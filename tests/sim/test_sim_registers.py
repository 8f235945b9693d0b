"""Register layouts come from SunSpec's JSON, point codecs round-trip, and writes follow the standard's rules."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_sim import modbus, sunspec
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.image import ILLEGAL_ADDRESS, ILLEGAL_VALUE, MapError, RegisterImage


@pytest.mark.parametrize("model_id", [1, 103, 120, 121, 123, 124, 203, 802, 64201, 64202, 64203])
def test_layout_length_matches_the_definition(model_id):
    layout = sunspec.load_model(model_id)
    directory = sunspec.STANDARD_MODELS_DIR if model_id < 64200 else sunspec.VENDOR_MODELS_DIR
    definition = json.loads((directory / f"model_{model_id}.json").read_text())
    assert layout.length == sum(p["size"] for p in definition["group"]["points"]) - 2
    assert [p.name for p in layout.points][:2] == ["ID", "L"]


def test_standard_lengths_are_the_published_ones():
    assert {m: sunspec.load_model(m).length for m in (1, 103, 120, 121, 123, 124, 203)} == {
        1: 66,
        103: 50,
        120: 26,
        121: 30,
        123: 24,
        124: 24,
        203: 105,
    }


def test_unknown_model_is_a_typed_error():
    with pytest.raises(sunspec.ModelDefinitionError):
        sunspec.load_model(4242)


@given(st.integers(-32767, 32767), st.integers(-3, 3))
def test_int16_round_trip(raw, sf):
    point = sunspec.load_model(103).point("W")
    value = raw * 10.0**sf
    assert sunspec.decode_raw(point, sunspec.encode(point, value, sf)) == raw


@given(st.integers(0, 2**32 - 1))
def test_acc32_round_trip_and_rollover(raw):
    point = sunspec.load_model(103).point("WH")
    assert sunspec.decode_raw(point, sunspec.encode(point, raw)) == (raw or 0)
    assert sunspec.encode(point, 2**32 + 5) == [0, 5]


def test_not_implemented_markers_and_range():
    m103 = sunspec.load_model(103)
    assert sunspec.encode(m103.point("W"), None) == [0x8000]
    assert sunspec.encode(m103.point("A"), None) == [0xFFFF]
    assert sunspec.encode(m103.point("W_SF"), None) == [0x8000]
    assert sunspec.decode_raw(m103.point("W"), [0x8000]) is None
    with pytest.raises(sunspec.PointValueError):
        sunspec.encode(m103.point("W"), 40000, 0)
    assert sunspec.encode(sunspec.load_model(1).point("Mn"), "ab")[:2] == [0x6162, 0]


def test_auto_scale_picks_the_finest_fitting_exponent():
    assert sunspec.auto_scale(11000, "int16", 0) == 0
    assert sunspec.auto_scale(440000, "int16", 0) == 2
    assert sunspec.auto_scale(50.0, "uint16", -3) == -3


@pytest.fixture
def pv() -> SunSpecDevice:
    return SunSpecDevice.create("pv1", "mg1", "pv", 1, {"rating_w": 10000})


def address(device: SunSpecDevice, key: str) -> int:
    return device.image.by_key[key].address


def test_image_is_suns_then_models_then_end(pv):
    regs = pv.image.registers
    assert regs[:2] == [0x5375, 0x6E53] and regs[-2:] == [0xFFFF, 0]
    walk, i = [], 2
    while regs[i] != 0xFFFF:
        walk.append(regs[i])
        i += regs[i + 1] + 2
    assert walk == [1, 103, 120, 121, 123, 64203]


def test_write_rules(pv):
    limit = address(pv, "123.WMaxLimPct")
    assert pv.write_registers(limit, [40]) is None and pv.model.limit_pct == 40
    assert pv.write_registers(limit, [101]) == ILLEGAL_VALUE  # device refuses > 100 %
    assert pv.write_registers(address(pv, "123.Conn"), [2]) == ILLEGAL_VALUE  # not an enum symbol
    assert pv.write_registers(address(pv, "103.W"), [1]) == ILLEGAL_ADDRESS  # read-only
    assert pv.write_registers(address(pv, "103.WH") + 1, [1]) == ILLEGAL_ADDRESS  # half a point
    assert pv.write_registers(address(pv, "103.ID"), [1]) == ILLEGAL_ADDRESS
    assert pv.write_registers(39990, [1]) == ILLEGAL_ADDRESS  # below the map
    assert (
        pv.write_registers(address(pv, "123.VArWMaxPct"), [1]) == ILLEGAL_ADDRESS
    )  # optional, not implemented
    # a multi-register write is all or nothing
    ena = address(pv, "123.WMaxLim_Ena")
    assert pv.write_registers(limit, [10, 0, 0, 0, 7]) == ILLEGAL_VALUE
    assert pv.model.limit_pct == 40 and pv.model.limit_enabled == 0
    assert pv.write_registers(limit, [10, 0, 0, 0, 1]) is None and (
        pv.model.limit_pct,
        pv.model.limit_enabled,
    ) == (10, 1)
    assert ena == limit + 4
    # stored settings persist until reboot
    vref = address(pv, "121.VRef")
    assert pv.write_registers(vref, [2400]) is None and pv.image.value("121.VRef") == 240.0
    pv.reboot()
    assert pv.image.value("121.VRef") == 230.0 and pv.model.limit_enabled == 0


def test_reads_outside_the_map_and_wrong_tables(pv):
    assert modbus.serve_pdu(pv, struct.pack(">BHH", 3, 40000 + len(pv.image.registers) - 1, 2)) == bytes(
        [0x83, 2]
    )
    assert modbus.serve_pdu(pv, struct.pack(">BHH", 3, 0, 1)) == bytes([0x83, 2])
    assert modbus.serve_pdu(pv, struct.pack(">BHH", 3, 40000, 126)) == bytes([0x83, 3])
    assert modbus.serve_pdu(pv, struct.pack(">BHH", 1, 0, 1)) == bytes([0x81, 1])
    assert modbus.serve_pdu(pv, struct.pack(">BHH", 4, 40000, 1)) == bytes([0x84, 1])


def test_scale_factor_mismatch_in_a_map_is_caught():
    bad = {"models": [{"model": 103, "points": {"W": "ac_w"}}]}  # W mapped, W_SF not
    with pytest.raises(MapError, match="W_SF"):
        RegisterImage.build(bad, {}, {})
    with pytest.raises(MapError, match="read-only"):
        RegisterImage.build(
            {"models": [{"model": 103, "scale": {"W_SF": 0}, "points": {"W": {"default": 1}}}]}, {}, {}
        )


def test_crc_and_rtu_framing():
    frame = bytes.fromhex("010300000001")
    assert modbus.crc16(frame) == 0x0A84  # "01 03 00 00 00 01 84 0A" on the wire
    assert modbus.rtu_frame(1, frame[1:]) == frame + b"\x84\x0a"
    deframer = modbus.RtuDeframer()
    assert deframer.feed(frame[:3]) == []
    assert deframer.feed(frame[3:] + b"\x84\x0a") == [modbus.RtuFrame(1, frame[1:])]
    assert deframer.feed(frame + b"\x00\x00") == []  # bad CRC: waits for silence
    assert deframer.silence() == [] and deframer.dropped == 1


def test_a_map_naming_a_reading_the_physics_lacks_is_refused(monkeypatch):
    import peergrid_sim.devices as devices

    real = devices.load_map

    def typo_map(name):
        device_map = real(name)
        device_map["models"][1]["points"]["W"] = "ac_wat"
        return device_map

    monkeypatch.setattr(devices, "load_map", typo_map)
    with pytest.raises(MapError, match="ac_wat"):
        SunSpecDevice.create("pv1", "mg1", "pv", 1, {"rating_w": 10000})
