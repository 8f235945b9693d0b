"""The DSO's node board takes well-formed health reports and drops anything else without raising."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from peergrid_dso.services.health import MAX_HEALTH_BYTES, NodeBoard

GOOD = {"node": "mgmc-1", "mg": "1", "at": 1.0, "devices": [{"name": "pv1", "power_w": 10.0}]}


def test_good_report_is_kept() -> None:
    board = NodeBoard("f1")
    assert board.ingest("peergrid/f1/health/mgmc-1", json.dumps(GOOD).encode())
    assert board.snapshot()["nodes"]["mgmc-1"]["report"]["devices"][0]["power_w"] == 10.0


def test_malformed_reports_are_counted_and_dropped() -> None:
    board = NodeBoard("f1")
    cases = [
        ("peergrid/f1/health/mgmc-1", b"\xff\xfe not json"),
        ("peergrid/f1/health/mgmc-1", b"[1, 2]"),
        ("peergrid/f1/health/mgmc-2", json.dumps(GOOD).encode()),  # body names another node
        ("peergrid/f2/health/mgmc-1", json.dumps(GOOD).encode()),  # another feeder
        ("peergrid/f1/health/mgmc-1", b" " * (MAX_HEALTH_BYTES + 1)),
        ("peergrid/f1/health/mgmc-1", json.dumps({**GOOD, "devices": "x"}).encode()),
    ]
    for topic, payload in cases:
        assert not board.ingest(topic, payload)
    assert board.snapshot() == {"nodes": {}, "dropped": len(cases)}


@given(st.text(max_size=40), st.binary(max_size=200))
def test_fuzzed_input_never_raises(topic: str, payload: bytes) -> None:
    NodeBoard("f1").ingest(topic, payload)
