"""A dispute's readings reach the DSO at edge/README.md's deployment settings (review21 F6): the readings route
takes bodies up to its own bound (MAX_LEAVES leaves of MAX_LEAF_HEX hex digits), not the 16 KiB every other
route keeps, so a commitment interval of 60 one-second polls of six devices (360 leaves, ~75 KB) is the
route's to judge - it used to be 413 before the route ran, and the edge retried it forever."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from peergrid_dso.auth.body_limit import MAX_BODY, READINGS_MAX_BODY
from peergrid_dso.routes.disputes import MAX_LEAF_HEX, MAX_LEAVES
from peergrid_edge.commitments import reading_leaf
from peergrid_edge.dispute_readings import readings_bodies
from peergrid_ledger.meter_signing import SignedReading

from .test_request_errors import _app

# edge/README.md's example MG: six devices, one of them the signing PCC meter
DEVICES = [
    ("pv1", "pv", {"power_w": 5234.5, "energy_wh": 1234567.0, "limit_pct": 100.0, "rating_w": 10000.0}),
    ("bess1", "battery", {"power_w": -1200.0, "soc_pct": 55.5, "capacity_wh": 10000.0, "rating_w": 5000.0}),
    ("gen1", "genset", {"power_w": 0.0, "rating_w": 8000.0}),
    ("load1", "load", {"power_w": 3000.0}),
    ("pcc", "meter", {"power_w": -1234.0, "energy_wh": 99999.0}),
    ("pv-roof", "pv", {"power_w": 800.0}),
]


def readme_leaves(commit_interval_s: int = 60, poll_interval_s: int = 1) -> list[bytes]:
    leaves = []
    for k in range(commit_interval_s // poll_interval_s):
        at = 1_800_000_000 + k * poll_interval_s
        for name, nature, reading in DEVICES:
            signed = (
                SignedReading("pcc-1", at * 1000, 123_456, 654, b"\x01" * 64) if nature == "meter" else None
            )
            leaves.append(reading_leaf(name, nature, at, reading, signed))
    return leaves


class TakingSettler:
    """Stands in for the DSO's dispute settler: takes whatever the route hands it."""

    def __init__(self) -> None:
        self.offered: list[tuple[bytes, int, list[bytes]]] = []

    def offer_readings_threadsafe(self, node: bytes, interval: int, leaves: list[bytes]) -> int:
        self.offered.append((node, interval, leaves))
        return len(leaves)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, TakingSettler]]:
    """The whole DSO app (security middleware, body limits, request-error guards) with a settler that takes."""
    with TestClient(
        _app(tmp_path), base_url="http://127.0.0.1:8080", raise_server_exceptions=False
    ) as client:
        settler = TakingSettler()
        client.app.state.dso.disputes = settler  # type: ignore[attr-defined]
        yield client, settler


def post(client: TestClient, body: dict[str, Any]) -> Any:
    raw = json.dumps(body).encode()  # as the edge sends it (dispute_readings._request)
    return client.post(
        "/api/dso/disputes/readings", content=raw, headers={"content-type": "application/json"}
    )


def test_a_commitment_interval_at_the_readme_settings_reaches_the_route(served) -> None:
    client, settler = served
    leaves = readme_leaves()
    [body] = readings_bodies(b"\x02" * 32, [(7, leaves)])
    assert len(leaves) == 360 and len(json.dumps(body)) > 4 * MAX_BODY  # ~75 KB: 413 before
    r = post(client, body)
    assert r.status_code == 201 and r.json()["accepted"] == 360, r.text[:300]
    assert settler.offered == [(b"\x02" * 32, 7, leaves)]


def test_the_largest_body_the_route_itself_accepts_fits_and_one_byte_more_is_413(served) -> None:
    client, settler = served
    body = {"node": "ab" * 32, "interval": 2**63 - 1, "leaves": ["cd" * (MAX_LEAF_HEX // 2)] * MAX_LEAVES}
    r = post(client, body)
    assert r.status_code == 201 and r.json()["accepted"] == MAX_LEAVES, r.text[:300]
    assert len(settler.offered) == 1
    over = b"{" + b" " * READINGS_MAX_BODY + b"}"
    r = client.post("/api/dso/disputes/readings", content=over, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json() == {"detail": f"request body over {READINGS_MAX_BODY} bytes"}
    assert len(settler.offered) == 1
    # every other route keeps the global limit
    [small] = readings_bodies(b"\x02" * 32, [(7, readme_leaves())])
    r = client.post(
        "/api/dso/injections", content=json.dumps(small), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
