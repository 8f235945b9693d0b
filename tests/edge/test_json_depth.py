"""A JSON ingress of the edge nested deeper than json reads is malformed input, a ValueError its callers catch
(`telemetry.loads_finite`), not the RecursionError json raises: a schedule, a telemetry message or a DSO verdict
of 100,000 "[" would otherwise raise out of the MQTT callback."""

from __future__ import annotations

import json

import pytest

from peergrid_edge.dispatch import ScheduleError, parse_schedule
from peergrid_edge.telemetry import loads_finite, parse_telemetry
from peergrid_edge.trader import parse_verdict

DEEP = [b"[" * 100_000, b'{"a":' * 100_000]


@pytest.mark.parametrize("payload", DEEP, ids=["arrays", "objects"])
def test_every_json_ingress_refuses_a_document_nested_too_deeply(payload: bytes) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        loads_finite(payload)
    with pytest.raises(ValueError, match="telemetry is not JSON: nested too deeply"):
        parse_telemetry(payload)
    with pytest.raises(ValueError, match="verdict is not JSON: nested too deeply"):
        parse_verdict(payload)
    with pytest.raises(ScheduleError, match="schedule is not JSON"):
        parse_schedule(payload)


def test_nesting_json_reads_is_read_as_before() -> None:
    nested = b"[" * 50 + b"]" * 50
    assert loads_finite(nested) == json.loads(nested)
