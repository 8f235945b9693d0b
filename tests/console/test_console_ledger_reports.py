"""The console's ledger view (GET /console/api/ledger) reads every node's health report: one node's malformed
`ledger` entry is shown as nothing, never a 500 for every operator (review21 F8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.lab_client import lab_client
from console.test_console_api import login


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    with lab_client(users_file) as c:
        yield c


def report(c: TestClient, node: str, ledger: Any) -> None:
    board = c.app.state.board  # type: ignore[attr-defined]
    body = {"node": node, "devices": [], "ledger": ledger}
    assert board.ingest(f"peergrid/feeder1/health/{node}", json.dumps(body).encode())


def test_malformed_ledger_entries_leave_the_view_200(client: TestClient) -> None:
    login(client, "vera")
    ours = client.get("/console/api/ledger").json()["chains"]["dso"]
    report(client, "mgmc-mg1", {ours["chain"]: {"height": ours["height"], "head": ours["head"]}})
    report(client, "mgmc-mg2", {"mgmc-feeder1": {"height": 7, "head": "aa" * 32}})
    for bad in [
        {"x": "?"},  # a chain named with no readable head (review21 F8)
        {"mgmc": {"height": "7"}},
        {"y": {"height": True}, "z": -3, "w": 2.5, "v": {"head": "bb" * 32}},
        [1, 2],  # not a map at all
        "dso",
        {ours["chain"]: {"height": -1, "head": "cc" * 32}},  # the held chain, unreadable
    ]:
        report(client, "mgmc-mg9", bad)
        r = client.get("/console/api/ledger")
        assert r.status_code == 200, (bad, r.text)
        chains = r.json()["chains"]
        assert set(chains) == {"dso", "mgmc-feeder1"}, bad  # a chain with no readable head is not listed
        assert [x["node"] for x in chains["dso"]["replicas"]] == ["dso (this server)", "mgmc-mg1"]
        assert chains["dso"]["agree"] and chains["mgmc-feeder1"]["height"] == 7


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**20) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.dictionaries(st.sampled_from(["dso", "mgmc-feeder1", "x", ""]), JSONISH, max_size=4) | JSONISH)
def test_any_reported_ledger_renders(client: TestClient, ledger: Any) -> None:
    login(client, "vera")
    report(client, "mgmc-mg7", ledger)
    r = client.get("/console/api/ledger")
    assert r.status_code == 200, (ledger, r.text)
    for chain in r.json()["chains"].values():
        assert chain["replicas"] and all(x["behind"] >= 0 for x in chain["replicas"])
