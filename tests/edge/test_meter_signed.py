"""The PCC meter's signed reading from register to leaf: the emulator's vendor model 64204 (firmware-sim
`meter_signer`, `maps/meter_signed.yaml`) decodes with the edge's own decoder (`sunspec.decode_model`,
`meter_signed`) into the very reading the meter signed (hypothesis round-trip), a malformed block is an
`Unsigned` reading (never a guess), and the leaf carries the signed reading beside today's fields."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_edge.commitments import leaf_record, reading_leaf
from peergrid_edge.meter_signed import Unsigned, meter_signed
from peergrid_edge.sunspec import decode_model
from peergrid_ledger.codec import decode
from peergrid_ledger.meter_signing import SignedReading, counted_leaves, meter_keypair, verify_reading
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.image import DEVICE_FAILURE
from peergrid_sim.modbus import READ_HOLDING
from peergrid_sim.scenario import ConfigError, Scenario


def meter(seed: int | None = 7) -> SunSpecDevice:
    params = {"rating_w": 10_000.0, **({} if seed is None else {"key_seed": float(seed)})}
    return SunSpecDevice.create("pcc", "mg1", "meter", 1, params)


def models(device: SunSpecDevice) -> dict[int, list[int]]:
    """Each model block of the device's image (ID register first), as a SunSpec client walks them."""
    registers, found, at = device.image.registers, {}, 2
    while registers[at] != 0xFFFF:
        model_id, length = registers[at], registers[at + 1]
        found[model_id] = registers[at : at + 2 + length]
        at += 2 + length
    return found


def block(device: SunSpecDevice) -> list[int]:
    """The 64204 block read in one Modbus request, as the edge's driver reads each model block."""
    start = device.image.by_key["64204.ID"].address
    regs = device.read_registers(READ_HOLDING, start, 2 + device.image.registers[start - 40000 + 1])
    assert isinstance(regs, list)
    return regs


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0, 4e9, allow_nan=False),
    st.floats(0, 4e9, allow_nan=False),
    st.integers(0, 2**48),
    st.integers(0, 99),
)
def test_the_emulators_signed_block_decodes_into_the_reading_the_meter_signed(
    export_wh: float, import_wh: float, wall_ms: int, seed: int
) -> None:
    device = meter(seed)
    assert device.signer is not None
    device.signer.wall = lambda: wall_ms / 1000
    device.model.export_wh, device.model.import_wh = export_wh, import_wh
    device.mark_stale()
    signed = meter_signed({"64204": decode_model(64204, block(device))})
    assert isinstance(signed, SignedReading)
    assert (signed.meter, signed.at_ms) == ("mg1-pcc", wall_ms)
    assert (signed.export_wh, signed.import_wh) == (round(export_wh), round(import_wh))
    assert verify_reading(meter_keypair(seed, "mg1", "pcc").public, signed)
    # the same counters as model 203 shows in the same render (below its acc32 rollover)
    m203 = decode_model(203, models(device)[203])
    if export_wh < 2**32 - 1 and round(export_wh):
        assert m203["TotWhExp"] == signed.export_wh


def test_each_read_after_the_counters_moved_is_a_new_whole_signed_reading() -> None:
    device, now = meter(), [1_800_000_000.0]
    assert device.signer is not None
    device.signer.wall = lambda: now[0]
    start = round(device.model.export_wh)  # its lifetime counter at power-on (peergrid_sim.lifetime), not 0
    seen = []
    for _ in range(5):
        device.model.update(10.0, [3600.0])  # 3.6 kW exported for 10 s: 10 Wh a step
        device.mark_stale()
        now[0] += 10.0
        signed = meter_signed({"64204": decode_model(64204, block(device))})
        assert isinstance(signed, SignedReading) and verify_reading(device.signer.public_key, signed)
        seen.append((signed.at_ms, signed.export_wh))
    assert seen == [(1_800_000_010_000 + 10_000 * i, start + 10 * (i + 1)) for i in range(5)]


def test_a_meter_without_a_key_keeps_todays_image_and_signs_nothing() -> None:
    plain, signing = meter(None), meter()
    assert sorted(models(plain)) == [1, 203] and sorted(models(signing)) == [1, 203, 64204]
    assert models(plain)[203] == models(signing)[203]
    assert plain.signer is None and meter_signed({"203": {}}) is None
    with pytest.raises(TypeError, match="only a PCC meter signs"):
        SunSpecDevice.create("pv1", "mg1", "pv", 1, {"rating_w": 5_000.0, "key_seed": 1.0})


def test_a_malformed_signed_block_is_an_unsigned_reading_with_the_reason() -> None:
    device = meter()
    good = decode_model(64204, block(device))
    device.image.force("64204.Sig", "abc")  # the meter's signature register garbled
    bad = meter_signed({"64204": decode_model(64204, block(device))})
    assert bad == Unsigned("the meter's signature is not 128 hex characters")
    for change, why in (
        ({"Sig": good["Sig"] + "00"}, "not 128 hex"),  # wrong length
        ({"Sig": str(good["Sig"]).upper()}, "not 128 hex"),
        ({"Sig": None}, "not 128 hex"),
        ({"Tms": None}, "at_ms is not implemented"),  # SunSpec's not-implemented marker
        ({"TotWhExp": 1.5}, "export_wh is not implemented"),
        ({"MtrId": ""}, "meter id"),
    ):
        found = meter_signed({"64204": {**good, **change}})
        assert isinstance(found, Unsigned) and why in found.why, (change, found)
    # not implemented at the register level: 0xFFFF... decodes to None (SunSpec's uint64 marker)
    regs = block(device)
    regs[2:6] = [0xFFFF] * 4
    assert decode_model(64204, regs)["Tms"] is None


def test_the_leaf_carries_the_signed_reading_and_an_unsigned_one_says_why() -> None:
    device = meter()
    signed = meter_signed({"64204": decode_model(64204, block(device))})
    assert isinstance(signed, SignedReading)
    reading = {"power_w": 0.0, "energy_wh": 0.0, "import_wh": 0.0}
    plain = reading_leaf("pcc", "meter", 12.5, reading)
    leaf = reading_leaf("pcc", "meter", 12.5, reading, signed)
    assert plain == reading_leaf("pcc", "meter", 12.5, reading, None)  # no signed reading: today's bytes
    fields = decode(leaf)
    assert {k: v for k, v in fields.items() if k != "signed"} == decode(plain)
    assert fields["signed"]["sig"] == signed.signature and leaf_record(leaf)["signed"]["meter"] == "mg1-pcc"
    unsigned = reading_leaf("pcc", "meter", 12.5, reading, Unsigned("the meter's signature is not 128 hex"))
    assert leaf_record(unsigned)["unsigned"] == "the meter's signature is not 128 hex"
    assert device.signer is not None
    counted = counted_leaves([unsigned], device.signer.public_key, 10**13)  # left out, saying why
    assert (
        counted.leaves == []
        and 'the MGMC says "the meter\'s signature is not 128 hex"' in counted.why_unsigned()
    )


def test_a_meter_can_fail_its_signed_block_alone() -> None:
    device = meter()
    device.faults.exception_model = 64204
    at = device.image.by_key["64204.ID"].address
    assert device.read_registers(READ_HOLDING, at, 110) == DEVICE_FAILURE  # the block, as the edge reads it
    assert device.read_registers(READ_HOLDING, at + 109, 1) == DEVICE_FAILURE  # its last register
    assert device.read_registers(READ_HOLDING, at, 2) == [64204, 108]  # its header: discovery still lists it
    assert isinstance(device.read_registers(READ_HOLDING, device.image.by_key["203.ID"].address, 10), list)
    assert isinstance(device.read_registers(READ_HOLDING, at + 110, 2), list)  # the end model after it


def test_the_scenario_gives_a_meter_and_only_a_meter_a_whole_key_seed() -> None:
    def scenario(kind: str, seed: float) -> Scenario:
        device = {"name": "d", "kind": kind, "params": {"key_seed": seed}}
        return Scenario.model_validate(
            {"name": "s", "microgrids": [{"name": "mg1", "bus": 2, "devices": [device]}]}
        )

    assert scenario("meter", 3).microgrids[0].devices[0].params["key_seed"] == 3
    for kind, seed, why in (
        ("pv", 3, "a PCC meter's"),
        ("meter", 1.5, "whole number"),
        ("meter", -1, "whole"),
    ):
        with pytest.raises((ConfigError, ValueError), match=why):
            scenario(kind, seed)


@pytest.mark.parametrize("forced", [-5.0, float("nan"), float("inf"), 2.0**65])
def test_a_counter_the_meter_cannot_sign_leaves_the_block_unsigned_not_clipped(forced: float) -> None:
    """A fault forcing a counter out of what a meter can sign (firmware-sim `faults` "value"): the read goes
    on, the 64204 block shows nothing signed, and the edge's reading is Unsigned (the DSO: not signed)."""
    device = meter()
    device.forced["export_wh"] = forced
    device.refresh()
    found = meter_signed({"64204": decode_model(64204, block(device))})
    assert isinstance(found, Unsigned) and "signature" in found.why
    device.forced.clear()
    device.refresh()
    assert isinstance(meter_signed({"64204": decode_model(64204, block(device))}), SignedReading)
