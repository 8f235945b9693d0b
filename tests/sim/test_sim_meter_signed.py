"""External validation of the meter's signed reading: the firmware-sim app (its own listeners, on loopback)
serves a PCC meter with a scenario `key_seed`, and SunSpec's own client (pysunspec2, with our vendor model
definitions) scans it, finds models 1, 203 and 64204, and reads a signed reading that verifies under the key
the DSO is given for that meter (`meter_signing.meter_keypair(seed, mg, device)`), over the counters model 203
shows and the meter's (wall) clock."""

from __future__ import annotations

import time

import pytest
import sunspec2.modbus.client as sunspec_client
from sunspec2 import device as sunspec_device

from peergrid_ledger.meter_signing import SignedReading, meter_keypair, verify_reading
from peergrid_sim.sunspec import STANDARD_MODELS_DIR, VENDOR_MODELS_DIR

SCENARIO = {
    "name": "signed-meter",
    "start": "2026-06-21T12:00:00Z",
    "microgrids": [
        {
            "name": "mg1",
            "bus": 18,
            "devices": [
                {"name": "load1", "kind": "load", "params": {"critical_w": 4000, "sheddable_w": 0}},
                {"name": "meter", "kind": "meter", "params": {"key_seed": 42}},
            ],
        }
    ],
}


@pytest.fixture(autouse=True)
def _vendor_models_known():
    saved = sunspec_device.get_model_defs_path()
    sunspec_device.set_model_defs_path([str(VENDOR_MODELS_DIR), str(STANDARD_MODELS_DIR.parent)])
    yield
    sunspec_device.set_model_defs_path(saved)


def test_pysunspec2_reads_a_signed_reading_that_verifies_under_the_meters_enrolled_key(run_sim) -> None:
    sim = run_sim(SCENARIO, speed=0.0)  # physics frozen: both blocks show the same counters
    [e] = [e for e in sim.endpoints if e["device"] == "meter"]

    def counters() -> None:
        meter = sim.app.sim.device("mg1/meter")
        meter.model.import_wh, meter.model.export_wh = 1234.4, 56.6
        meter.mark_stale()

    sim.call(counters)
    dev = sunspec_client.SunSpecModbusClientDeviceTCP(
        slave_id=e["unit_id"], ipaddr=e["host"], ipport=e["port"], timeout=2
    )
    try:
        dev.scan()
        assert [k for k in dev.models if isinstance(k, int)] == [1, 203, 64204]
        before = time.time()
        signed_block, meter_block = dev.models[64204][0], dev.models[203][0]
        signed_block.read()
        meter_block.read()
        reading = SignedReading(
            signed_block.MtrId.cvalue,
            signed_block.Tms.cvalue,
            signed_block.TotWhExp.cvalue,
            signed_block.TotWhImp.cvalue,
            bytes.fromhex(signed_block.Sig.cvalue),
        )
    finally:
        dev.close()
    assert (reading.meter, reading.export_wh, reading.import_wh) == ("mg1-meter", 57, 1234)
    assert (meter_block.TotWhExp.cvalue, meter_block.TotWhImp.cvalue) == (
        57,
        1234,
    )  # model 203's, same render
    assert verify_reading(meter_keypair(42, "mg1", "meter").public, reading)
    assert not verify_reading(meter_keypair(43, "mg1", "meter").public, reading)
    assert abs(reading.at_ms / 1000 - before) < 5  # the meter's clock is the wall clock, not the physics one
    assert (
        meter_block.TotWhImp.cvalue in (None, reading.import_wh)
        or reading.import_wh >= meter_block.TotWhImp.cvalue - 1
    )


def test_a_silent_model_leaves_its_body_unanswered_and_its_header_and_the_other_models_answer(
    run_sim, modbus_call
) -> None:
    """`Faults.silent_model = 64204`: reads touching the signed block's points get no answer (the client
    times out), its ID and L header still answer (discovery lists it), model 203 answers; with
    `silent_model_late_s` the answer comes that late instead of never; cleared, the block answers again."""
    import struct

    sim = run_sim(SCENARIO, speed=0.0)
    [e] = [e for e in sim.endpoints if e["device"] == "meter"]
    meter = sim.app.sim.device("mg1/meter")
    header = meter.image.by_key["64204.ID"].address
    counters = meter.image.by_key["203.TotWhExp"].address

    def read(address: int, count: int, timeout: float = 0.3) -> bytes | None:
        return modbus_call(
            e["host"], e["port"], e["unit_id"], struct.pack(">BHH", 3, address, count), timeout
        )

    def fault(model: int | None, late_s: float = 0.0) -> None:
        meter.faults.silent_model, meter.faults.silent_model_late_s = model, late_s

    body = read(header + 2, 20, timeout=5)
    assert body is not None and body[:2] == bytes([3, 40])  # answering before the fault
    sim.call(lambda: fault(64204))
    assert read(header, 2, timeout=5) == bytes([3, 4]) + struct.pack(">HH", 64204, 108)  # the header answers
    assert read(header + 2, 20) is None  # the body does not
    assert read(header, 3) is None  # nor a read that reaches into it
    assert read(counters, 2, timeout=5) is not None  # model 203 answers
    sim.call(lambda: fault(64204, late_s=0.3))
    began = time.monotonic()
    late = read(header + 2, 20, timeout=30)  # late, but an answer (its block signs a fresh wall clock)
    assert late is not None and late[:2] == body[:2] and time.monotonic() - began >= 0.3
    sim.call(lambda: fault(None))
    again = read(header + 2, 20, timeout=5)
    assert again is not None and again[:2] == body[:2]
    assert meter.faults.describe() == {}  # cleared
