"""The DSO's node board takes well-formed health reports and drops anything else without raising."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_dso.services.health import MAX_HEALTH_BYTES, MAX_HEALTH_DEPTH, NodeBoard

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


def nested(depth: int) -> dict[str, object]:
    """A good report whose first device carries `depth` levels in all (the report itself is level 1)."""
    value: object = 1.0
    for _ in range(depth - 3):  # report -> devices -> device, then the rest in one field
        value = [value]
    return {**GOOD, "devices": [{"name": "pv1", "extra": value}]}


def test_nesting_that_exhausts_the_decoder_is_dropped_and_counted() -> None:
    board = NodeBoard("f1")
    board.ingest("peergrid/f1/health/mgmc-1", json.dumps(GOOD).encode())
    attacks = [
        b"[" * 60_000,  # under MAX_HEALTH_BYTES: RecursionError inside json.loads (review21 F2)
        b'{"node": "mgmc-1", "devices": [], "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        b'{"node": "mgmc-1", "devices": [], "at": ' + b"9" * 5_000 + b"}",  # past int's 4,300-digit limit
    ]
    for payload in attacks:
        assert len(payload) <= MAX_HEALTH_BYTES
        assert not board.ingest("peergrid/f1/health/mgmc-1", payload)
    assert board.snapshot()["dropped"] == len(attacks)
    assert board.snapshot()["nodes"]["mgmc-1"]["report"] == GOOD  # the last good report stands


def test_a_report_deeper_than_the_bound_is_dropped_even_when_json_decodes_it() -> None:
    # 500 levels decode fine, but every view that re-encodes the stored report would then recurse as deep.
    board = NodeBoard("f1")
    assert board.ingest("peergrid/f1/health/mgmc-1", json.dumps(nested(MAX_HEALTH_DEPTH)).encode())
    assert not board.ingest("peergrid/f1/health/mgmc-1", json.dumps(nested(MAX_HEALTH_DEPTH + 1)).encode())
    assert not board.ingest("peergrid/f1/health/mgmc-1", json.dumps(nested(500)).encode())
    snap = board.snapshot()
    assert snap["dropped"] == 2 and snap["nodes"]["mgmc-1"]["report"] == nested(MAX_HEALTH_DEPTH)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=40,
)


@settings(deadline=None)  # no timing threshold in a unit test: a loaded CI box is slow, not wrong
@given(JSON, st.integers(0, 2_000))
def test_fuzzed_reports_and_deep_prefixes_never_raise(body: object, depth: int) -> None:
    board = NodeBoard("f1")
    for payload in (json.dumps({**GOOD, "extra": body}).encode(), b"[" * depth + json.dumps(body).encode()):
        if not board.ingest("peergrid/f1/health/mgmc-1", payload):
            continue
        stored = board.snapshot()["nodes"]["mgmc-1"]["report"]
        json.dumps(stored)  # whatever was kept can be rendered again
