"""SunSpec decoding follows the model definitions: scale factors, sign, "not implemented" sentinels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_edge.sunspec import SunSpecError, decode_model, model_def


def block(model_id: int, values: dict[str, int]) -> list[int]:
    mdef = model_def(model_id)
    length = sum(p.size for p in mdef.points)
    regs = [0xFFFF] * length
    regs[0], regs[1] = model_id, length - 2
    for name, value in values.items():
        p = mdef.point(name)
        for i in range(p.size):
            regs[p.offset + i] = (value >> (16 * (p.size - 1 - i))) & 0xFFFF
    return regs


def test_inverter_power_uses_its_scale_factor() -> None:
    values = decode_model(103, block(103, {"W": 1234, "W_SF": (-1) & 0xFFFF, "WH": 5000, "WH_SF": 0}))
    assert values["W"] == pytest.approx(123.4)
    assert values["WH"] == 5000


def test_not_implemented_reads_as_none() -> None:
    values = decode_model(103, block(103, {"W": 0x8000, "W_SF": 0, "WH_SF": 0x8000}))
    assert values["W"] is None  # int16 sentinel
    assert values["WH"] is None  # acc32 0 means "not accumulated"; its scale factor is not implemented either


def test_scale_factor_out_of_range_gives_none() -> None:
    values = decode_model(103, block(103, {"W": 10, "W_SF": 300}))
    assert values["W"] is None


def test_wrong_model_id_is_refused() -> None:
    with pytest.raises(SunSpecError):
        decode_model(103, block(101, {}))


def test_unknown_model_is_refused() -> None:
    with pytest.raises(SunSpecError):
        model_def(9999)


@given(st.integers(-32767, 32767), st.integers(-3, 3))
def test_signed_int16_with_scale_factor(raw: int, sf: int) -> None:
    values = decode_model(103, block(103, {"W": raw & 0xFFFF, "W_SF": sf & 0xFFFF}))
    assert values["W"] == pytest.approx(raw * 10.0**sf)


@given(st.lists(st.integers(0, 0xFFFF), max_size=60))
def test_random_registers_never_crash(regs: list[int]) -> None:
    try:
        decode_model(103, [103, *regs])
    except SunSpecError:
        pass
