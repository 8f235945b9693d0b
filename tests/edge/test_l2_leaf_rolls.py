"""L2: the edge's reading leaf says whether its device's counters can roll over, from the device's driver: an MQTT
device's leaf carries `rolls: false` (telemetry's counters are JSON numbers, which never roll), a Modbus device's
nothing (SunSpec acc32 registers may roll), so a Modbus leaf, and every leaf sealed before L2, is byte for byte
what it was and decodes as rolling. The leaf codec round-trips either way (hypothesis)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_edge import commitments
from peergrid_edge.config import EdgeSettings
from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.drivers import Snapshot
from peergrid_edge.meter_signed import Unsigned
from peergrid_ledger import merkle
from peergrid_ledger.codec import decode, encode
from peergrid_ledger.counter_roll import ROLLS, leaf_rolls

READING = st.dictionaries(
    st.sampled_from(["power_w", "energy_wh", "import_wh", "soc_pct", "voltage_v"]),
    st.none() | st.floats(-1e9, 1e9, allow_nan=False),
    max_size=5,
)
AT_S = st.floats(0, 4e9, allow_nan=False)


def old_leaf(
    device: str, nature: str, at_s: float, reading: dict[str, float | None], why: str | None
) -> bytes:
    """A reading leaf as the edge encoded it before L2 (commitments.reading_leaf at 6449efb), written out."""
    milli = {q: round(v * 1000) for q, v in sorted(reading.items()) if v is not None}
    fields: dict[str, Any] = {"at_ms": round(at_s * 1000), "device": device, "milli": milli, "nature": nature}
    if why is not None:
        fields["unsigned"] = why[:200]
    return encode(fields)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=12), st.sampled_from(["meter", "pv", "battery"]), AT_S, READING,
       st.none() | st.text(max_size=30), st.booleans())  # fmt: skip
def test_a_leaf_round_trips_and_one_that_may_roll_is_the_old_leaf_byte_for_byte(
    device: str, nature: str, at_s: float, reading: dict[str, float | None], why: str | None, rolls: bool
) -> None:
    signed = None if why is None else Unsigned(why)
    made = commitments.reading_leaf(device, nature, at_s, reading, signed, rolls=rolls)
    fields = decode(made)
    assert isinstance(fields, dict) and encode(fields) == made  # canonical: decoding and encoding again
    assert leaf_rolls(fields) is rolls
    old = old_leaf(device, nature, at_s, reading, why)
    if rolls:
        assert made == old and ROLLS not in fields  # a Modbus device's leaf: what it always was
        assert ROLLS not in commitments.leaf_record(made)
    else:
        old_fields = decode(old)
        assert isinstance(old_fields, dict)
        assert fields == {**old_fields, ROLLS: False}  # the old leaf's fields, and the flag
        assert commitments.leaf_record(made) == {**commitments.leaf_record(old), ROLLS: False}
    assert commitments.reading_leaf(device, nature, at_s, reading, signed) == old  # the default: may roll


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(AT_S, READING), min_size=1, max_size=8))
def test_old_leaves_decode_as_rolling_and_keep_their_root(readings: list[tuple[float, Any]]) -> None:
    """Every leaf sealed before L2 (no `rolls`) reads as one whose counters may roll, and the Merkle root of
    such leaves made today is the root they had: no commitment on any chain changes meaning or hash."""
    old = [old_leaf("pcc", "meter", at, r, None) for at, r in readings]
    assert all(leaf_rolls(decode(one)) for one in old)  # type: ignore[arg-type]
    today = [commitments.reading_leaf("pcc", "meter", at, r) for at, r in readings]
    assert merkle.root(today) == merkle.root(old)


def test_whether_counters_roll_is_the_drivers() -> None:
    assert commitments.counters_roll("modbus-tcp") and commitments.counters_roll("modbus-rtu")
    assert not commitments.counters_roll("mqtt")
    with pytest.raises(ValueError, match="no driver reads protocol 'bacnet'"):
        commitments.counters_roll("bacnet")


def test_the_daemon_seals_an_mqtt_meters_leaf_as_never_rolling_and_a_modbus_meters_as_before(
    tmp_path: Path,
) -> None:
    """The daemon's poll callback writes each good reading's leaf with its driver's answer: the MQTT meter's
    with `rolls: false`, the Modbus meter's without the field (the very bytes `reading_leaf` gave before)."""
    s = EdgeSettings.model_validate({
        "node_id": "mgmc-l2", "mg": "mg1", "data_dir": str(tmp_path / "data"),
        "broker": {"host": "127.0.0.1", "port": 9}, "dispatch": {"enabled": False},
        "devices": [{"name": "mqttpcc", "nature": "meter", "protocol": "mqtt"},
                    {"name": "tcppcc", "nature": "meter", "protocol": "modbus-tcp", "port": 9}],
    })  # fmt: skip
    reading = {"power_w": 1_000.0, "energy_wh": 4_294_967.0}

    async def main() -> dict[str, bytes]:
        daemon = EdgeDaemon(s)
        try:
            for name, state in daemon.states.items():
                state.last = Snapshot(name, "meter", True, 1_000.5, {}, reading=dict(reading))
                daemon._on_poll(state)
            interval = commitments.interval_of(1_000.5, s.ledger.commit_interval_s)
            leaves = daemon.store.leaves(interval)
            return {str(decode(one)["device"]): one for one in leaves}  # type: ignore[index]
        finally:
            daemon.store.close()

    sealed = asyncio.run(main())
    assert decode(sealed["mqttpcc"]) == {**decode(old_leaf("mqttpcc", "meter", 1_000.5, reading, None)),  # type: ignore[dict-item]
                                         ROLLS: False}  # fmt: skip
    assert sealed["tcppcc"] == old_leaf("tcppcc", "meter", 1_000.5, reading, None)
